"""The image experiments' protocol, model and training side (issue 12): the reference code's
choices are the paper presets' defaults. Every expected number is written here from the paper
and the reference code (ParthaEth/Regularized_autoencoders-RAE-), never read back from raekit."""

import numpy as np
import pytest
import torch
from ports import keras_plateau
from torch import nn

from raekit.models.nets import build_networks
from raekit.training.config import build_config

# ------------------------------------------------------------ the presets against the paper


# (dataset, model): (β, λ, lr, batch, epochs) — paper appendix / configurations/config.py
RAE_FAMILY = {
    ("mnist", "rae-gp"): (1e-4, 5e-8, 5e-4, 100, 100),
    ("mnist", "rae-l2"): (1e-4, 1e-7, 5e-4, 100, 100),
    ("mnist", "rae-sn"): (9e-3, 0.0, 5e-4, 100, 100),
    ("mnist", "rae"): (5e-4, 0.0, 5e-4, 100, 100),
    ("mnist", "ae"): (0.0, 0.0, 5e-4, 100, 100),
    # CIFAR RAE-GP: the reference's run is broken (weight 0); RAE-L2's weights, its 70 epochs
    ("cifar10", "rae-gp"): (1e-3, 1e-6, 5e-4, 100, 70),
    ("cifar10", "rae-l2"): (1e-3, 1e-6, 5e-4, 100, 100),
    ("cifar10", "rae-sn"): (0.03, 0.0, 5e-4, 100, 100),
    ("cifar10", "rae"): (0.01, 0.0, 5e-4, 100, 100),
    ("cifar10", "ae"): (0.0, 0.0, 5e-4, 100, 100),
    ("celeba", "rae-gp"): (1e-4, 1e-7, 1e-3, 100, 70),
    ("celeba", "rae-l2"): (1e-4, 1e-7, 1e-3, 100, 70),
    ("celeba", "rae-sn"): (2.4e-3, 0.0, 1e-3, 100, 70),
    ("celeba", "rae"): (1e-4, 0.0, 1e-3, 100, 70),
    ("celeba", "ae"): (0.0, 0.0, 1e-3, 100, 70),
}


@pytest.mark.parametrize("dataset,model", sorted(RAE_FAMILY))
def test_rae_family_presets_are_the_published_table(dataset, model):
    beta, lam, lr, batch, epochs = RAE_FAMILY[dataset, model]
    cfg = build_config(None, {"dataset": dataset, "model": model})
    assert cfg.beta == pytest.approx(beta, rel=1e-12, abs=0)
    assert cfg.reg_weight == pytest.approx(lam, rel=1e-12, abs=0)
    assert (cfg.lr, cfg.batch_size, cfg.epochs) == (pytest.approx(lr, rel=1e-12), batch, epochs)
    assert cfg.latent_dim == {"mnist": 16, "cifar10": 128, "celeba": 64}[dataset]
    assert cfg.val_size == 10_000


# CIFAR WAE, CV-VAE, RAE-GP: 70 epochs (config.py runs 8, 10, 11); CelebA CV-VAE: 64 filters (18)
@pytest.mark.parametrize("dataset,model,epochs,filters", [
    ("cifar10", "wae", 70, None), ("cifar10", "cv-vae", 70, None), ("cifar10", "rae-gp", 70, None),
    ("cifar10", "vae", 100, None), ("cifar10", "rae-l2", 100, None),
    ("celeba", "cv-vae", 70, 64), ("celeba", "vae", 70, None), ("celeba", "wae", 70, None),
])
def test_reference_epochs_and_base_filters(dataset, model, epochs, filters):
    cfg = build_config(None, {"dataset": dataset, "model": model})
    assert (cfg.epochs, cfg.filters) == (epochs, filters)


PAPER = [(d, m) for d in ("mnist", "cifar10", "celeba")
         for m in ("ae", "rae", "rae-l2", "rae-gp", "rae-sn", "vae", "cv-vae", "wae", "2s-vae")]


@pytest.mark.parametrize("dataset,model", PAPER)
def test_paper_presets_schedule_is_keras_reduce_on_plateau(dataset, model):
    # train_raes_vaes.py: ReduceLROnPlateau(monitor='val_loss', factor=0.5, patience=5), Keras'
    # default min_delta=1e-4 (absolute)
    cfg = build_config(None, {"dataset": dataset, "model": model})
    assert (cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_min_delta, cfg.plateau_mode) \
        == (0.5, 5, 1e-4, "keras")


def test_the_trainers_scheduler_has_the_presets_settings():
    from raekit.training.trainer import AutoencoderModule

    cfg = build_config(None, {"dataset": "mnist", "model": "rae"})
    module = AutoencoderModule(nn.Linear(2, 2), lr=cfg.lr, plateau_factor=cfg.plateau_factor,
                               plateau_patience=cfg.plateau_patience,
                               plateau_min_delta=cfg.plateau_min_delta,
                               plateau_mode=cfg.plateau_mode)
    opt = module.configure_optimizers()
    assert opt.param_groups[0]["lr"] == 5e-4 and isinstance(opt, torch.optim.Adam)
    # five epochs without an absolute improvement of 1e-4 halve the rate, not four
    lrs = []
    for loss in [1.0, 0.99995, 0.9999, 0.99991, 0.99992, 0.99993, 0.99994]:
        module.plateau.step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [5e-4] * 5 + [2.5e-4] * 2


# ------------------------------------------------------------ the networks


def reference_celeba_parameters(f: int, d: int, channels: int = 3, encoder_out: int | None = None):
    """Trainable parameters of rae_celeba.get_vae_cleba (not fully convolutional, batch norm):
    5×5 kernels; encoder Conv f, 2f, 4f, 8f (stride 2) + BN, Dense(d) on the 4×4×8f map;
    decoder Dense(8·8·1024), ConvT 4f, 2f, f (stride 2) + BN, ConvT channels. Keras' BN has
    2 trainable numbers per channel (γ, β) and 2 running statistics."""
    encoder_out = encoder_out or d
    k = 5 * 5
    enc, c_in = 0, channels
    for c in (f, 2 * f, 4 * f, 8 * f):
        enc += k * c_in * c + c + 2 * c
        c_in = c
    enc += 4 * 4 * 8 * f * encoder_out + encoder_out
    dec = d * 8 * 8 * 1024 + 8 * 8 * 1024
    c_in = 1024
    for c in (4 * f, 2 * f, f):
        dec += k * c_in * c + c + 2 * c
        c_in = c
    dec += k * c_in * channels + channels
    return enc, dec


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_full_width_celeba_network_is_the_reference_one():
    enc, dec = build_networks("conv64", channels=3, latent_dim=64)
    assert (count(enc), count(dec)) == reference_celeba_parameters(128, 64)
    # the layers: kernels, strides and channels, in order
    convs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in enc.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(3, 128, (5, 5), (2, 2)), (128, 256, (5, 5), (2, 2)),
                     (256, 512, (5, 5), (2, 2)), (512, 1024, (5, 5), (2, 2))]
    assert (enc.fc.in_features, enc.fc.out_features) == (4 * 4 * 1024, 64)
    assert (dec.fc.in_features, dec.fc.out_features) == (64, 8 * 8 * 1024)
    convts = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in dec.modules()
              if isinstance(m, nn.ConvTranspose2d)]
    assert convts == [(1024, 512, (5, 5), (2, 2)), (512, 256, (5, 5), (2, 2)),
                      (256, 128, (5, 5), (2, 2)), (128, 3, (5, 5), (1, 1))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in dec.modules()) == 3
    assert isinstance(dec.blocks[-1], nn.Sigmoid)


def test_celeba_cv_vae_has_64_base_filters_and_full_size_dense_layers():
    # reference config.py run 18: num_filters 64 — convolutions 64…512, Dense(8·8·1024) kept
    enc, dec = build_networks("conv64", channels=3, latent_dim=64, filters=64)
    assert (count(enc), count(dec)) == reference_celeba_parameters(64, 64)
    assert [m.out_channels for m in enc.modules() if isinstance(m, nn.Conv2d)] == [64, 128, 256,
                                                                                 512]
    assert dec.fc.out_features == 8 * 8 * 1024
    assert [m.out_channels for m in dec.modules() if isinstance(m, nn.ConvTranspose2d)] == [
        256, 128, 64, 3]
    x = torch.rand(2, 3, 64, 64)
    assert dec(enc(x)).shape == x.shape


def test_the_preset_builds_the_64_filter_celeba_cv_vae():
    from raekit.models.registry import build_model

    cfg = build_config(None, {"dataset": "celeba", "model": "cv-vae"})
    model = build_model(cfg, (3, 64, 64))
    assert (count(model.encoder), count(model.decoder)) == reference_celeba_parameters(64, 64)


def _features_then_dense(enc, x):
    return enc.fc(enc.features(x).flatten(1))


def test_celeba_encoder_takes_x_as_it_is_mnist_cifar_encoder_takes_2x_minus_1():
    torch.manual_seed(0)
    enc64, _ = build_networks("conv64", channels=3, latent_dim=4, width=32)
    enc32, _ = build_networks("conv32", channels=3, latent_dim=4, width=32)
    enc64.eval(), enc32.eval()
    x64, x32 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(enc64(x64), _features_then_dense(enc64, x64))
        assert not torch.allclose(enc64(x64), _features_then_dense(enc64, 2 * x64 - 1))
        assert torch.allclose(enc32(x32), _features_then_dense(enc32, 2 * x32 - 1))
    # raekit's earlier choice, centring every encoder, is the option center_input=true
    enc64c, _ = build_networks("conv64", channels=3, latent_dim=4, width=32, center=True)
    enc64c.load_state_dict(enc64.state_dict())
    enc64c.eval()
    with torch.no_grad():
        assert torch.allclose(enc64c(x64), _features_then_dense(enc64, 2 * x64 - 1))


def test_center_input_config_key_reaches_the_encoder():
    from raekit.models.registry import build_model

    cfg = build_config(None, {"dataset": "celeba", "model": "rae", "width": 32})
    assert build_model(cfg, (3, 64, 64)).encoder.center is False
    cfg = build_config(None, {"dataset": "celeba", "model": "rae", "width": 32,
                              "center_input": "true"})
    assert build_model(cfg, (3, 64, 64)).encoder.center is True
    cfg = build_config(None, {"dataset": "mnist", "model": "rae", "width": 32})
    assert build_model(cfg, (1, 32, 32)).encoder.center is True



# ------------------------------------------------------------ 2-stage VAE: the second stage


def test_second_stage_presets_are_the_reference_vae_model_wrapper():
    from raekit.densities import DENSITIES

    # VaeModelWrapper.fit: get_vae(..., mean_squared_error) compiled with Adam(lr=1e-4);
    # fit(batch_size=64, epochs=100, validation_split=0.1) with
    # ReduceLROnPlateau(factor=0.5, patience=3, min_delta=0.0001)
    for dataset, w in (("mnist", 1.5e-3), ("cifar10", 1e-3), ("celeba", 2e-3)):
        cfg = build_config(None, {"dataset": dataset, "model": "2s-vae"})
        d = DENSITIES["two-stage"].from_config(cfg)
        assert (d.hidden, d.depth, d.kl_weight, d.batch_size, d.epochs) == (1024, 2, w, 64, 100)
        assert (d.lr, d.reconstruction, d.val_fraction) == (1e-4, "mean", 0.1)
        assert (d.plateau_patience, d.plateau_factor, d.plateau_min_delta) == (3, 0.5, 1e-4)
    # raekit's own second stage stays a named option (and the default outside the presets)
    cfg = build_config(None, {"dataset": "mnist", "model": "2s-vae", "stage2_lr": "1e-3",
                              "stage2_reconstruction": "sum", "stage2_val_fraction": "0",
                              "stage2_plateau_patience": "none"})
    d = DENSITIES["two-stage"].from_config(cfg)
    assert (d.lr, d.reconstruction, d.val_fraction, d.plateau_patience) == (1e-3, "sum", 0.0, None)


@pytest.mark.parametrize("reconstruction", ["mean", "sum"])
def test_second_stage_loss_is_keras_mse_over_code_dimensions_plus_weighted_kl(reconstruction):
    from raekit.densities import TwoStageVAEDensity

    w, dim = 2e-3, 6
    vae = TwoStageVAEDensity(hidden=8, kl_weight=w, reconstruction=reconstruction)._build(dim)
    u = torch.randn(5, dim, dtype=torch.float64)
    vae = vae.double()
    torch.manual_seed(1)
    out = vae(u)
    # the reference, by hand: log σ = 5·tanh(dense), z = μ + σ·ε, Keras mse(y_true, y_pred) is
    # mean over the last axis; per sample mse + w·½Σ(σ² + μ² − 1 − 2 log σ), mean over the batch
    h = vae.encoder(u)
    mu, log_sigma = h[:, :dim], 5 * torch.tanh(h[:, dim:])
    torch.manual_seed(1)
    eps = torch.randn(mu.shape, dtype=torch.float64)
    u_hat = vae.decoder(mu + log_sigma.exp() * eps)
    per_dim = (u - u_hat) ** 2
    rec = per_dim.mean(axis=1) if reconstruction == "mean" else per_dim.sum(axis=1)
    kl = 0.5 * (torch.exp(2 * log_sigma) + mu**2 - 1 - 2 * log_sigma).sum(axis=1)
    expected = (rec + w * kl).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-10)


def test_second_stage_never_trains_on_the_last_tenth_of_the_codes():
    from raekit.densities import TwoStageVAEDensity

    # Keras' validation_split: split_at = int(n·(1 − 0.1)), x[:split_at] trains, x[split_at:]
    # validates, before any shuffling
    for n, n_train in ((1000, 900), (1005, 904), (11, 9), (64, 57)):
        assert TwoStageVAEDensity(val_fraction=0.1).split(n) == n_train
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 3))
    params = dict(hidden=8, epochs=2, batch_size=16, device="cpu", val_fraction=0.1)

    def weights(codes):
        d = TwoStageVAEDensity(**params).fit(codes)
        return np.concatenate([v.ravel() for v in d.state_dict_.values()])

    base = weights(z)
    held_out_shuffled = np.concatenate([z[:45], z[45:][::-1]])  # same standardisation
    assert np.array_equal(weights(held_out_shuffled), base)
    trained_shuffled = np.concatenate([z[:45][::-1], z[45:]])
    assert not np.allclose(weights(trained_shuffled), base)


def test_second_stage_rate_follows_keras_reduce_lr_on_plateau(one_thread):
    from raekit.densities import TwoStageVAEDensity

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2)) @ np.array([[1.0, 0.5], [0.0, 0.3]])
    d = TwoStageVAEDensity(hidden=8, epochs=25, batch_size=64, lr=1e-4, reconstruction="mean",
                           val_fraction=0.1, plateau_patience=3, device="cpu").fit(z)
    val = d.history_["val_loss"]
    assert len(val) == 25 and len(d.history_["lr"]) == 25
    expected = keras_plateau(val, 1e-4, 0.5, 3, 1e-4)
    assert d.history_["lr"] == pytest.approx(expected, rel=1e-12)
    assert min(expected) < 1e-4  # the plateau is reached in this run


def test_second_stage_plateau_needs_a_validation_split():
    from raekit.densities import TwoStageVAEDensity
    from raekit.errors import RaekitError

    with pytest.raises(RaekitError, match="val_fraction"):
        TwoStageVAEDensity(plateau_patience=3, device="cpu").fit(np.random.randn(20, 2))
    with pytest.raises(RaekitError, match="stage2_plateau_patience"):
        build_config(None, {"model": "2s-vae", "stage2_plateau_patience": "3"})


# ------------------------------------------------------------ spectral norm of transposed convs


def keras_kernel_matrix(w_torch_transposed_conv):
    """The reference's ConvSN2DTranspose matrix: the Keras kernel (kh, kw, out, in) reshaped to
    (kh·kw·out, in). PyTorch stores a transposed convolution's weight as (in, out, kh, kw)."""
    return w_torch_transposed_conv.permute(2, 3, 1, 0).reshape(-1, w_torch_transposed_conv.shape[0])


def keras_power_iteration(m, u):
    """One step of the reference's power_iteration on matrix m (rows, cols), u of shape (1, cols):
    _v = l2n(u·mᵀ), _u = l2n(_v·m), σ = _v·m·_uᵀ, l2n(x) = x / (√Σx² + 1e-12)."""
    def l2n(x):
        return x / ((x ** 2).sum() ** 0.5 + 1e-12)
    v = l2n(u @ m.T)
    u = l2n(v @ m)
    return u, (v @ m @ u.T).squeeze()


def glorot_transposed_conv():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(256, 128, 4, stride=2)
    nn.init.xavier_uniform_(layer.weight)
    return layer


def test_transposed_conv_spectral_norm_is_the_reference_kernel_matrix():
    from raekit.models.regularizers import SpectralNorm

    layer = glorot_transposed_conv()
    w = layer.weight.detach().clone()  # (in 256, out 128, 4, 4)
    sigma_ref = torch.linalg.svdvals(keras_kernel_matrix(w))[0]
    sigma_torch = torch.linalg.svdvals(w.transpose(0, 1).reshape(128, -1))[0]
    assert abs(sigma_ref / sigma_torch - 1) > 0.1  # the two conventions differ on this layer

    model = nn.Sequential(layer)
    SpectralNorm("all", "keras").attach(model)
    with torch.no_grad():
        for _ in range(150):  # one power iteration per training-mode read of the weight
            _ = layer.weight
    model.eval()
    w_bar = layer.weight.detach()
    assert torch.linalg.svdvals(keras_kernel_matrix(w_bar))[0] == pytest.approx(1, abs=1e-3)
    assert torch.allclose(w_bar, w / sigma_ref, rtol=1e-3)

    other = glorot_transposed_conv()
    SpectralNorm("all", "torch").attach(nn.Sequential(other))
    with torch.no_grad():
        for _ in range(30):
            _ = other.weight
    other.eval()
    top = torch.linalg.svdvals(keras_kernel_matrix(other.weight.detach()))[0]
    assert abs(top - 1) > 0.1  # torch's convention leaves the reference's matrix unnormalised


def test_one_step_of_the_reference_power_iteration_with_its_u_vector():
    from raekit.models.regularizers import SpectralNorm

    layer = glorot_transposed_conv()
    w = layer.weight.detach().clone().double()
    SpectralNorm("all", "keras").attach(nn.Sequential(layer))
    layer.double()
    p = layer.parametrizations.weight[0]
    u0 = p.u.clone()
    assert u0.shape == (256,)  # the reference's u: (1, in), the kernel's last axis
    w_bar = layer.weight  # training mode: one step, u stored
    u1, sigma = keras_power_iteration(keras_kernel_matrix(w), u0[None, :])
    assert torch.allclose(w_bar.detach(), w / sigma, rtol=1e-10)
    assert torch.allclose(p.u, u1[0], rtol=1e-10)
    # the gradient goes through the iteration too (no stop_gradient in the reference)
    g = torch.randn_like(w)
    (grad,) = torch.autograd.grad((w_bar * g).sum(), layer.parametrizations.weight.original)
    w_req = w.clone().requires_grad_(True)
    _, s = keras_power_iteration(keras_kernel_matrix(w_req), u0[None, :])
    (expected,) = torch.autograd.grad((w_req / s * g).sum(), w_req)
    assert torch.allclose(grad, expected, rtol=1e-8, atol=1e-12)
    # evaluation reads the weight without moving u
    layer.eval()
    u_before = p.u.clone()
    _ = layer.weight
    assert torch.equal(p.u, u_before)


@pytest.mark.parametrize("module,keras_matrix", [
    (nn.Conv2d(3, 5, 4), lambda w: w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])),
    (nn.Linear(7, 4), lambda w: w.t()),
])
def test_conv_and_dense_take_the_reference_matrix_too(module, keras_matrix):
    from raekit.models.regularizers import SpectralNorm

    w = module.weight.detach().clone().double()
    SpectralNorm("all", "keras").attach(nn.Sequential(module))
    module.double()
    u0 = module.parametrizations.weight[0].u.clone()
    _, sigma = keras_power_iteration(keras_matrix(w), u0[None, :])
    assert torch.allclose(module.weight.detach(), w / sigma, rtol=1e-10)


def test_rae_sn_presets_use_the_reference_convention():
    from raekit.models.regularizers import KerasSpectralNorm

    for dataset in ("mnist", "cifar10", "celeba"):
        assert build_config(None, {"dataset": dataset, "model": "rae-sn"}).sn_convention == "keras"
    from raekit.models.registry import build_model

    model = build_model(build_config(None, {"dataset": "mnist", "model": "rae-sn", "width": 32}),
                        (1, 32, 32))
    sn = [m for m in model.modules() if isinstance(m, KerasSpectralNorm)]
    assert len(sn) == 4 + 1 + 1 + 3  # conv ×4, dense ×2, transposed conv ×3


def test_network_keys_are_refused_for_a_users_network(tmp_path):
    from raekit.errors import RaekitError
    from raekit.models.registry import networks

    f = tmp_path / "nets.py"
    f.write_text("from torch import nn\n"
                 "def make(*, channels, image_size, latent_dim, encoder_out):\n"
                 "    n = channels * image_size * image_size\n"
                 "    return (nn.Sequential(nn.Flatten(), nn.Linear(n, encoder_out)),\n"
                 "            nn.Sequential(nn.Linear(latent_dim, n), nn.Sigmoid(),\n"
                 "                nn.Unflatten(1, (channels, image_size, image_size))))\n")
    cfg = build_config(None, {"network": f"{f}:make", "filters": "64"})
    with pytest.raises(RaekitError, match="filters"):
        networks(cfg, (1, 8, 8))
    cfg = build_config(None, {"network": f"{f}:make"})
    assert networks(cfg, (1, 8, 8))[0](torch.rand(2, 1, 8, 8)).shape == (2, 8)

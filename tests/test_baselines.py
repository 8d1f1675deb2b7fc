"""The baselines (VAE, CV-VAE, WAE-MMD, 2-stage VAE) equal their definitions (paper-facts §3)."""

import csv
import math

import pytest
import torch
from torch import nn

from raekit.errors import RaekitError
from raekit.models.vae import VAE, kl_to_standard_normal, reparameterize, summed_squared_error
from raekit.models.wae import WAE, mmd_imq
from raekit.training.config import build_config

BASELINES = ("vae", "cv-vae", "wae", "2s-vae")


# ---------------------------------------------------------------- VAE: KL and reparameterisation

def test_kl_equals_the_closed_form_on_known_mu_and_sigma():
    mu = torch.tensor([[1.0, 0.0], [0.0, -2.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    kl = kl_to_standard_normal(mu, sigma.log())
    # ½ Σ (σ² + μ² − 1 − 2 log σ), by hand
    expected = [0.5 * (1 + 1 - 1 - 0) + 0.5 * (0.25 - 1 - 2 * math.log(0.5)),
                0.5 * (4 - 1 - 2 * math.log(2)) + 0.5 * (1 + 4 - 1)]
    assert torch.allclose(kl, torch.tensor(expected), atol=1e-6)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, sigma),
                                            torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl, ref, atol=1e-6)
    assert kl_to_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max() == 0


def identity_vae(d=3, kl_weight=0.5, sigma=None):
    """Encoder = identity on (B, 2d) inputs [μ, raw], so μ and σ are known exactly."""
    torch.manual_seed(0)
    return VAE(nn.Identity(), nn.Linear(d, 2 * d if sigma is None else d), kl_weight=kl_weight,
               sigma=sigma)


def test_vae_loss_uses_log_sigma_5_tanh_and_the_closed_form_kl():
    model = identity_vae()
    mu, raw = torch.randn(6, 3), torch.randn(6, 3)
    out = model(torch.cat([mu, raw], 1))
    log_sigma = 5 * torch.tanh(raw)
    expected = 0.5 * (torch.exp(2 * log_sigma) + mu**2 - 1 - 2 * log_sigma).sum(1).mean()
    assert torch.allclose(out["kl"], expected, atol=1e-5)
    assert torch.allclose(out["loss"], out["rec"] + 0.5 * out["kl"])
    assert torch.equal(model.encode(torch.cat([mu, raw], 1)), mu)  # encode = the mean


def test_vae_loss_stays_finite_on_extreme_encoder_outputs():
    model = identity_vae()
    h = torch.tensor([[1e4, -1e4, 0.0, 1e6, -1e6, 0.0]], requires_grad=True).repeat(4, 1)
    out = model(h)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(torch.isfinite(p.grad).all()
                                               for p in model.parameters())
    # log σ saturates at ±5: KL of the σ = e⁵ coordinate is ½(e¹⁰ − 1 − 10)
    assert out["kl"].item() == pytest.approx(
        0.5 * (1e8 + 1e8 + math.exp(10) - 1 - 10 + math.exp(-10) - 1 + 10 + 0 - 0), rel=1e-5)


def test_reparameterised_samples_have_the_right_mean_and_variance():
    mu = torch.tensor([1.0, -2.0, 0.0])
    sigma = torch.tensor([0.5, 3.0, 1e-3])
    n = 200_000
    z = reparameterize(mu.expand(n, 3), sigma.log().expand(n, 3),
                       generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu, atol=5 * sigma.max().item() / math.sqrt(n))
    assert torch.allclose(z.var(0), sigma**2, rtol=0.02)
    # differentiable: ∂z/∂μ = 1, ∂z/∂log σ = σ·ε = z − μ
    m = mu.clone().requires_grad_(True)
    s = sigma.log().clone().requires_grad_(True)
    zz = reparameterize(m.expand(5, 3), s.expand(5, 3))
    zz.sum().backward()
    assert torch.allclose(m.grad, torch.full((3,), 5.0))
    assert torch.allclose(s.grad, (zz - mu).sum(0).detach(), atol=1e-6)


def test_summed_squared_error_sums_pixels_and_averages_channels():
    x, x_hat = torch.zeros(2, 3, 4, 5), torch.ones(2, 3, 4, 5)
    x_hat[1] = 2
    # per image: Σ over 20 pixels of mean over channels → 20 and 80; batch mean 50
    assert summed_squared_error(x_hat, x).item() == pytest.approx(50.0)


def test_cv_vae_sigma_is_a_fixed_buffer_that_training_does_not_move():
    model = identity_vae(sigma=0.7)
    assert "constant_log_sigma" not in dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        model(torch.randn(8, 3))["loss"].backward()
        opt.step()
    mu, log_sigma = model.posterior(torch.randn(5, 3))
    assert torch.allclose(log_sigma, torch.full((5, 3), math.log(0.7)))
    assert model.constant_log_sigma.item() == pytest.approx(math.log(0.7))
    # the paper's "N" column fits a Gaussian to CV-VAE codes
    assert model.default_density == "gaussian"


def test_vae_errors_are_one_line_raekit_errors():
    with pytest.raises(RaekitError, match="KL weight"):
        VAE(nn.Identity(), nn.Identity(), kl_weight=-1)
    with pytest.raises(RaekitError, match="σ"):
        VAE(nn.Identity(), nn.Identity(), sigma=0)
    with pytest.raises(RaekitError, match="2·latent_dim"):
        VAE(nn.Identity(), nn.Identity())(torch.randn(4, 3))


# ---------------------------------------------------------------- WAE: the MMD

def test_mmd_is_about_zero_for_one_distribution_and_large_for_different_ones():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 4, generator=g), torch.randn(500, 4, generator=g)
    same = mmd_imq(a, b).item()
    assert abs(same) < 0.03
    assert mmd_imq(a + 1, b).item() > 0.5  # shifted by 1 in every coordinate
    assert mmd_imq(a + 3, b).item() > 3.0
    assert mmd_imq(0.3 * a, b).item() > 0.5  # too narrow


def test_mmd_estimate_is_unbiased_so_it_can_be_negative():
    g = torch.Generator().manual_seed(1)
    vals = torch.stack([mmd_imq(torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g))
                        for _ in range(500)])
    # the biased (V-statistic) estimate would average ≈ +0.5 here
    assert abs(vals.mean().item()) < 0.06
    assert (vals < 0).any()


def test_mmd_equals_a_double_loop_computation():
    g = torch.Generator().manual_seed(2)
    z, p = (torch.randn(4, 3, generator=g, dtype=torch.float64),
            torch.randn(5, 3, generator=g, dtype=torch.float64))
    n, m, d = 4, 5, 3

    def k(a, b):
        dist = float(((a - b) ** 2).sum())
        return sum(2 * d * s / (2 * d * s + dist) for s in (0.1, 0.2, 0.5, 1, 2, 5, 10))

    zz = sum(k(z[i], z[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    pp = sum(k(p[i], p[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    zp = sum(k(z[i], p[j]) for i in range(n) for j in range(m)) / (n * m)
    assert mmd_imq(z, p).item() == pytest.approx(zz + pp - 2 * zp, abs=1e-12)


def test_wae_loss_and_gradients_are_finite_even_for_identical_codes():
    torch.manual_seed(0)
    model = WAE(nn.Linear(6, 2), nn.Linear(2, 6), mmd_weight=3.0)
    x = torch.ones(5, 6)  # every code identical: distance 0 on and off the diagonal
    out = model(x)
    out["loss"].backward()
    assert torch.allclose(out["loss"], out["rec"] + 3.0 * out["mmd"])
    assert all(torch.isfinite(q.grad).all() for q in model.parameters())
    assert model.default_density == "prior"
    with pytest.raises(RaekitError, match="at least 2"):
        model(torch.ones(1, 6))


# ---------------------------------------------------------------- presets and the zoo

@pytest.mark.parametrize("dataset,model,weight,lr,batch", [
    ("mnist", "vae", 0.312, 1e-4, 100), ("cifar10", "cv-vae", 9e-4, 1e-4, 100),
    ("celeba", "vae", 0.09024, 1e-4, 1000), ("celeba", "wae", 100.0, 1e-3, 100),
    ("mnist", "2s-vae", 0.312, 1e-4, 100), ("digits", "wae", 0.03, 1e-3, 100)])
def test_presets_carry_the_published_values(dataset, model, weight, lr, batch):
    cfg = build_config(None, dict(dataset=dataset, model=model))
    own = cfg.mmd_weight if model == "wae" else cfg.kl_weight
    assert (own, cfg.lr, cfg.batch_size) == (weight, lr, batch)
    assert cfg.beta == 0.0  # the baselines' weights have their own names
    if model == "cv-vae":
        assert cfg.sigma == 0.7
    if model == "2s-vae":
        assert ((cfg.stage2_kl_weight, cfg.stage2_hidden, cfg.stage2_batch_size)
                == (1.5e-3, 1024, 64))


@pytest.mark.parametrize("model,hint", [("vae", "kl_weight"), ("2s-vae", "kl_weight"),
                                        ("wae", "mmd_weight")])
def test_old_weight_name_is_refused_with_a_hint(model, hint):
    with pytest.raises(RaekitError, match=f"does not use beta.*{hint}"):
        build_config(None, dict(dataset="digits", model=model, beta=0.3))


# ---------------------------------------------------------------- 2-stage VAE: the second stage

def test_second_stage_samples_codes_with_the_mean_and_covariance_of_its_training_codes():
    import numpy as np

    from raekit.densities import TwoStageVAEDensity

    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([2.0, -1.0], [[2.0, 1.2], [1.2, 1.0]], 1000)
    w = 0.3  # a CPU-sized fit; the paper's 1.5e-3 needs far more steps to converge
    density = TwoStageVAEDensity(hidden=32, epochs=60, batch_size=100, kl_weight=w,
                                 device="cpu").fit(z)
    s = density.sample(20_000, seed=0).numpy().astype(np.float64)
    # The loss is a Gaussian decoder's ELBO with noise σ² = w/2 on the standardised codes, so the
    # decoded prior samples have the codes' covariance less that noise (probabilistic PCA):
    # Σ − (w/2)·diag(Σ); the mean is the codes' mean.
    cov = np.cov(z, rowvar=False, bias=True)
    expected = cov - (w / 2) * np.diag(np.diag(cov))
    assert np.allclose(s.mean(0), z.mean(0), atol=0.08)
    assert np.allclose(np.cov(s, rowvar=False), expected, atol=0.08)


# ---------------------------------------------------------------- training on digits

def val_losses(run_dir):
    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    return [float(r["val_loss"]) for r in rows if r.get("val_loss")]


@pytest.mark.parametrize("model", BASELINES)
def test_each_baseline_trains_on_digits_and_lowers_its_loss(tiny_cfg, model):
    from raekit.data import first_images
    from raekit.models.registry import build_model
    from raekit.training.run import load_run
    from raekit.training.trainer import evaluate_loss, train

    cfg = tiny_cfg(model=model, width=8, epochs=2, lr=1e-3)
    run = load_run(train(cfg))
    torch.manual_seed(cfg.seed)
    untrained = build_model(cfg, run.splits.shape)
    trained = run.load_model()
    torch.manual_seed(0)
    before = evaluate_loss(untrained, run.splits.val)["loss"]
    torch.manual_seed(0)
    after = evaluate_loss(trained, run.splits.val)["loss"]
    print(f"{model}: held-out loss untrained {before:.4g} → trained {after:.4g}")
    assert math.isfinite(after) and after < 0.9 * before
    assert len(val_losses(run.path)) == 2
    assert trained.default_density == {"vae": "prior", "cv-vae": "gaussian", "wae": "prior",
                                       "2s-vae": "two-stage"}[model]
    if model == "cv-vae":  # σ is still the configured constant after training and reloading
        _, log_sigma = trained.posterior(first_images(run.splits.val, 4))
        assert torch.allclose(log_sigma, torch.tensor(math.log(cfg.sigma)))
    if model == "2s-vae":  # the second stage, as the end of a run fits it: on the training codes
        from raekit.densities import DENSITIES

        cfg2 = tiny_cfg(model=model, stage2_hidden=16, stage2_epochs=2)
        second = DENSITIES[trained.default_density].from_config(cfg2)
        with torch.no_grad():
            codes = trained.encode(first_images(run.splits.train, 200))
        second.fit(codes)
        with torch.no_grad():
            images = trained.decode(second.sample(8, seed=0))
        assert (second.hidden, second.epochs, second.kl_weight) == (16, 2, cfg2.stage2_kl_weight)
        assert images.shape == (8, *run.splits.shape) and torch.isfinite(images).all()


def test_reconstruction_key_selects_the_reference_celeba_wae_cost():
    import torch

    from raekit.models.registry import build_model
    from raekit.training.config import build_config

    cfg = build_config("celeba/wae", {"width": 32})
    assert cfg.reconstruction == "wae-celeba" and cfg.mmd_weight == 100.0
    model = build_model(cfg, (3, 64, 64))
    x = torch.rand(2, 3, 64, 64)
    out = model(x)
    x_hat = model.decode(model.encode(x))
    assert torch.allclose(out["rec"], 0.05 * (x_hat - x).pow(2).flatten(1).sum(1).mean(), rtol=1e-5)

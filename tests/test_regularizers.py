"""The decoder regularizers equal their definitions (paper-facts §1)."""

import pytest
import torch
from torch import nn

from raekit.models import Autoencoder
from raekit.models.nets import build_networks
from raekit.models.regularizers import GradientPenalty, L2Penalty, SpectralNorm, decoder_kernels


def linear_ae(d=3, n_out=5, gp_every=1):
    torch.manual_seed(0)
    enc, dec = nn.Linear(n_out, d), nn.Linear(d, n_out)
    return Autoencoder(enc, dec, beta=0.1, regularizer=GradientPenalty(2.0, every=gp_every))


def analytic_gp(model, z):
    # D(z) = A z + b  ⇒  ∂ Σ D(z)² / ∂z = 2 Aᵀ (A z + b)
    A, b = model.decoder.weight, model.decoder.bias
    grad = 2 * (z @ A.T + b) @ A
    return grad.pow(2).mean()


def test_gradient_penalty_equals_analytic_value_for_a_linear_decoder():
    model = linear_ae()
    x = torch.randn(7, 5)
    z = model.encode(x)
    expected = analytic_gp(model, z).item()
    out = model(x)
    assert abs(out["reg"].item() - expected) < 1e-5 * max(1, expected)
    # total = rec + β·L_Z + λ·L_REG
    total = out["rec"] + 0.1 * out["latent"] + 2.0 * out["reg"]
    assert torch.allclose(out["loss"], total)
    # under no_grad (validation) the same value, from one decoder pass, and nothing to train
    model.eval()
    calls = []
    model.decoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        out = model(x)
    assert abs(out["reg"].item() - expected) < 1e-5 * max(1, expected)
    assert len(calls) == 1 and not out["loss"].requires_grad
    # the penalty of codes without a graph (called on its own): the decoder is run again
    assert model.regularizer.penalty(model, z.detach(), model.decode(z).detach()).item() == \
        pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_reaches_decoder_and_is_wrt_z():
    model = linear_ae()
    x = torch.randn(4, 5)
    model(x)["reg"].backward()
    assert model.decoder.weight.grad.abs().sum() > 0


def test_lazy_gradient_penalty_every_k_steps_scaled_by_k():
    model = linear_ae(gp_every=4)
    x = torch.randn(6, 5)
    exact = analytic_gp(model, model.encode(x)).item()
    regs = [model(x)["reg"].item() for _ in range(8)]
    assert [r != 0 for r in regs] == [True, False, False, False] * 2
    assert abs(regs[0] - 4 * exact) < 1e-4 * max(1, exact)


def test_l2_penalty_covers_exactly_the_reference_kernels():
    for network, includes_dense in (("conv32", False), ("conv64", True)):
        enc, dec = build_networks(network, channels=1, latent_dim=4, width=32)
        model = Autoencoder(enc, dec, regularizer=L2Penalty(1e-3))
        expected = sum(m.weight.pow(2).sum() for m in dec.modules()
                       if isinstance(m, nn.ConvTranspose2d))
        if includes_dense:
            expected = expected + dec.fc.weight.pow(2).sum()
        x = (torch.rand(2, 1, dec.start * 4, dec.start * 4) if network == "conv32"
             else torch.rand(2, 1, 64, 64))
        out = model(x)
        assert torch.allclose(out["reg"], expected)
        # no bias, no batch-norm parameter and nothing from the encoder
        ids = {id(p) for p in decoder_kernels(dec)}
        assert all(p.ndim == 4 or p is dec.fc.weight for p in decoder_kernels(dec))
        assert not any(id(p) in ids for p in enc.parameters())
        assert len(ids) == 3 + includes_dense + (network == "conv64")


def test_l2_penalty_default_kernels_of_a_custom_decoder():
    dec = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model = Autoencoder(nn.Linear(3, 2), dec, regularizer=L2Penalty(0.5))
    out = model(torch.randn(5, 3))
    expected = dec[0].weight.pow(2).sum() + dec[3].weight.pow(2).sum()
    assert torch.allclose(out["reg"], expected)
    assert torch.allclose(out["loss"], out["rec"] + 0.5 * expected)


def _matrix(module, convention):
    w = module.weight.detach()
    if isinstance(module, nn.ConvTranspose2d) and convention == "torch":
        w = w.transpose(0, 1)  # torch's spectral_norm normalises along the output channels (dim 1)
    # the reference (keras) reshapes the Keras kernel to (…, last axis): the torch weight's dim 0
    return w.flatten(1)


@pytest.mark.parametrize("convention", ["keras", "torch"])
def test_spectral_norm_makes_every_weight_unit_spectral_norm(convention):
    torch.manual_seed(0)
    for scope in ("all", "decoder"):
        enc, dec = build_networks("conv32", channels=1, latent_dim=4, width=16)
        model = Autoencoder(enc, dec, regularizer=SpectralNorm(scope, convention))
        x = torch.rand(4, 1, 32, 32)
        for _ in range(3):  # power iterations run in training-mode forwards
            model(x)
        layers = [m for m in model.modules() if isinstance(m, SpectralNorm.LAYERS)]
        normalised = [m for m in layers if hasattr(m, "parametrizations")]
        with torch.no_grad():  # each read of a weight in training mode is one more iteration
            for _ in range(30 if convention == "torch" else 300):
                for m in normalised:
                    _ = m.weight
        model.eval()
        expected = layers if scope == "all" else [m for m in dec.modules()
                                                  if isinstance(m, SpectralNorm.LAYERS)]
        assert len(normalised) == len(expected) > 0
        for m in normalised:
            sigma = torch.linalg.matrix_norm(_matrix(m, convention), ord=2).item()
            assert abs(sigma - 1) < 1e-2, (m, sigma)
        assert model(x)["reg"].item() == 0

"""The VAE baselines of Ghosh et al. 2020 (§5, Table 1): VAE, CV-VAE, 2-stage VAE.

One class, :class:`VAE`, with a Gaussian encoder q(z|x) = N(μ(x), diag σ(x)²) and the prior
N(0, I)::

    L = L_REC + w·KL(q(z|x) ‖ N(0, I))

* **VAE** (``sigma=None``): the encoder outputs 2·d numbers, μ and a raw scale ``r``;
  ``log σ = 5·tanh(r)`` (the reference code's), so σ ∈ [e⁻⁵, e⁵] and nothing can overflow.
* **CV-VAE** (``sigma=0.7``): constant variance — the encoder outputs only μ and σ is a fixed
  buffer, never trained.
* **2-stage VAE** (Dai & Wipf 2019): this VAE as the first stage; the second stage is the
  ``"two-stage"`` ex-post density (:mod:`raekit.densities`), named by ``default_density``.

``L_REC`` is the reference code's: squared error summed over pixels, averaged over channels,
averaged over the batch (the published KL weights belong to this normalisation, not to the
RAE's per-pixel mean). ``forward`` samples z by reparameterisation in training *and* evaluation,
so the validation loss is the same (negative-ELBO-like) objective; ``encode`` returns the mean
μ — the code ex-post densities are fitted on — and ``encode_sample`` a draw z = μ + σ·ε, the code
the reference code's reconstructions decode (``auto_encoder.predict``; ``reconstruct(x,
sample=True)``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import RaekitError
from .base import BaseAutoencoder, LossFn

LOG_SIGMA_BOUND = 5.0  # log σ = 5·tanh(raw) (reference code)


def summed_squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels and averaged over channels, then over the batch.

    For images (B, C, H, W): ``mean_b Σ_hw mean_c (x̂ − x)²`` (Keras' ``mse`` over the channel
    axis, summed over the rest — the reference code's VAE loss). Other shapes (B, …): summed
    over every non-batch axis.
    """
    err = (x_hat - x).pow(2)
    if err.ndim == 4:
        err = err.mean(dim=1)  # (B, H, W)
    return err.flatten(1).sum(dim=1).mean()


def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (σ_j² + μ_j² − 1 − 2 log σ_j)`` per sample.

    Computed from log σ (σ² = exp(2 log σ)), so there is no log(0); keep log σ bounded (the
    VAE's 5·tanh does) so that exp cannot overflow. ``mu``, ``log_sigma``: (B, d) → (B,).
    """
    log_sigma = log_sigma.expand_as(mu)
    return 0.5 * (torch.exp(2 * log_sigma) + mu.pow(2) - 1 - 2 * log_sigma).sum(dim=1)


def reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample ``z = μ + σ·ε``, ε ~ N(0, I), differentiable in μ and log σ. (B, d) → (B, d)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(log_sigma) * eps


class VAE(BaseAutoencoder):
    """A VAE with a Gaussian encoder, or a constant-variance one (CV-VAE).

    Args:
        encoder: x (B, …) → (B, 2·d) [μ, raw log σ] when ``sigma`` is None, else (B, d) = μ.
        decoder: z (B, d) → x̂ with x's shape.
        kl_weight: weight w of the KL term (the published "KL weight").
        sigma: None to learn σ(x) (VAE); a number > 0 for a fixed σ (CV-VAE; the paper uses 0.7).
        reconstruction_loss: ``(x_hat, x) → scalar``; :func:`summed_squared_error` by default.
        default_density: the ex-post density (a name in ``raekit.densities.DENSITIES``) behind
            the model's plain samples — the "N" column of the paper's Table 1: the prior for the
            VAE, a fitted Gaussian for the CV-VAE, ``"two-stage"`` for the 2-stage VAE.
    """

    default_reconstruction_loss = staticmethod(summed_squared_error)

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, kl_weight: float = 1.0,
                 sigma: float | None = None, reconstruction_loss: LossFn | None = None,
                 default_density: str | None = None):
        super().__init__(encoder, decoder, reconstruction_loss=reconstruction_loss,
                         default_density=default_density or ("prior" if sigma is None
                                                             else "gaussian"))
        if not kl_weight >= 0:
            raise RaekitError(f"the KL weight must be ≥ 0, got {kl_weight}")
        if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
            raise RaekitError(f"the constant σ of a CV-VAE must be a finite number > 0, "
                              f"got {sigma}")
        self.kl_weight = float(kl_weight)
        self.sigma = None if sigma is None else float(sigma)
        # A buffer, not a parameter: saved with the weights, never touched by the optimizer.
        self.register_buffer("constant_log_sigma",
                             torch.tensor(math.log(sigma) if sigma is not None else 0.0))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ (B, d) and log σ (B, d) of q(z|x)."""
        h = self.encoder(x)
        if self.sigma is not None:  # CV-VAE: the encoder gives μ only
            return h, self.constant_log_sigma.expand_as(h)
        if h.ndim != 2 or h.shape[1] % 2:
            raise RaekitError(f"a VAE's encoder must output (batch, 2·latent_dim) numbers "
                              f"(μ and log σ), got shape {tuple(h.shape)}")
        mu, raw = h.chunk(2, dim=1)
        return mu, LOG_SIGMA_BOUND * torch.tanh(raw)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean μ (B, d)."""
        return self.posterior(x)[0]

    def encode_sample(self, x: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw z = μ + σ·ε (B, d) of q(z|x) (``generator`` on the model's device)."""
        return reparameterize(*self.posterior(x), generator=generator)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, log_sigma = self.posterior(x)  # (B, d) each
        z = reparameterize(mu, log_sigma)  # (B, d)
        x_hat = self.decode(z)  # (B, …) like x
        rec = self.reconstruction_loss(x_hat, x)
        kl = kl_to_standard_normal(mu, log_sigma).mean()
        return {"loss": rec + self.kl_weight * kl, "rec": rec, "kl": kl}

    def extra_repr(self) -> str:
        sigma = "learned" if self.sigma is None else f"{self.sigma:g}"
        return (f"kl_weight={self.kl_weight:g}, sigma={sigma}, "
                f"default_density={self.default_density!r}")

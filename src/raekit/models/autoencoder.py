"""The deterministic autoencoder of Ghosh et al. 2020 (§3, eq. 11)::

    L = L_REC + β·L_Z + λ·L_REG

``Autoencoder`` takes any encoder and decoder (``nn.Module``s) and a :mod:`regularizer
<raekit.models.regularizers>`; AE, RAE, RAE-L2, RAE-GP and RAE-SN are this one class with
different β and regularizer. ``L_REC`` and ``L_Z`` default to the reference code's
normalisations (``models/rae/loss_functions.py``: means over pixels and over code dimensions), to
which the published β and λ belong.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..errors import RaekitError
from .base import BaseAutoencoder, LossFn
from .regularizers import Regularizer


def mean_squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over pixels, channels and the batch (the reference code's REC)."""
    return (x_hat - x).pow(2).mean()


def latent_mean_square(z: torch.Tensor) -> torch.Tensor:
    """``mean_j z_j²`` per sample, averaged over the batch (the reference code's L_Z)."""
    return z.pow(2).mean()


def latent_half_squared_norm(z: torch.Tensor) -> torch.Tensor:
    """``½‖z‖²`` per sample, averaged over the batch (the paper's L_Z)."""
    return 0.5 * z.pow(2).sum(dim=1).mean()


LATENT_PENALTIES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean": latent_mean_square,
    "half_sum": latent_half_squared_norm,
}


class Autoencoder(BaseAutoencoder):
    """A deterministic autoencoder with a code penalty and a decoder regularizer.

    Args:
        encoder: x (B, …) → z (B, d).
        decoder: z (B, d) → x̂ with x's shape.
        beta: weight β of ``L_Z`` (0 gives a plain autoencoder).
        regularizer: the decoder regularizer; its ``weight`` is λ.
        latent_penalty: ``"mean"`` (mean of z², the reference code's, so the published β apply)
            or ``"half_sum"`` (½‖z‖², the paper's formula).
        reconstruction_loss: ``(x_hat, x) → scalar``; mean squared error by default.
    """

    default_reconstruction_loss = staticmethod(mean_squared_error)

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *, beta: float = 0.0,
                 regularizer: Regularizer | None = None, latent_penalty: str = "mean",
                 reconstruction_loss: LossFn | None = None):
        super().__init__(encoder, decoder, reconstruction_loss=reconstruction_loss)
        if not beta >= 0:
            raise RaekitError(f"beta must be ≥ 0, got {beta}")
        if latent_penalty not in LATENT_PENALTIES:
            raise RaekitError(f"latent_penalty must be one of {sorted(LATENT_PENALTIES)}, "
                              f"got {latent_penalty!r}")
        self.beta = float(beta)
        self.latent_penalty = latent_penalty
        self.regularizer = regularizer if regularizer is not None else Regularizer()
        self.regularizer.attach(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)  # (B, d)
        if self.regularizer.needs_code_graph and not torch.is_grad_enabled():
            # evaluation of a penalty on ∂D/∂z: one decoder pass that records its graph
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                x_hat = self.decode(z)
        else:
            x_hat = self.decode(z)  # (B, …) like x
        rec = self.reconstruction_loss(x_hat, x)
        latent = LATENT_PENALTIES[self.latent_penalty](z)
        reg = self.regularizer.penalty(self, z, x_hat)
        loss = rec + self.beta * latent + self.regularizer.weight * reg
        return {"loss": loss, "rec": rec, "latent": latent, "reg": reg}

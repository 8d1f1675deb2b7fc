"""Decoder regularizers of the RAE (Ghosh et al. 2020, §3; reference code
``models/rae/``).

A regularizer owns its whole effect on a model: :meth:`Regularizer.attach` may change the model
once (spectral normalisation re-parametrises its weights) and :meth:`Regularizer.penalty` returns
the unweighted term ``L_REG`` that the model adds to its loss as ``weight · L_REG``. The training
code never asks which regularizer a model has.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from ..errors import RaekitError


class Regularizer(nn.Module):
    """No regularization: the base of the others (``AE`` and plain ``RAE`` use it)."""

    def __init__(self, weight: float = 0.0):
        super().__init__()
        if not weight >= 0:
            raise RaekitError(f"a regularizer's weight must be ≥ 0, got {weight}")
        self.weight = float(weight)

    def attach(self, model: nn.Module) -> None:
        """Change ``model`` once, when it is built (default: nothing)."""

    def penalty(self, model: nn.Module, z: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Unweighted ``L_REG`` for a batch with codes ``z`` (B, d) and outputs ``x_hat``."""
        return z.new_zeros(())

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"


def decoder_kernels(decoder: nn.Module) -> list[torch.Tensor]:
    """The kernels an L2 penalty covers: ``decoder.regularized_kernels()`` if the decoder says,
    otherwise every parameter with two or more dimensions (conv, dense and recurrent kernels; no
    biases, no batch-norm scales)."""
    if hasattr(decoder, "regularized_kernels"):
        return list(decoder.regularized_kernels())
    return [p for p in decoder.parameters() if p.ndim >= 2]


class L2Penalty(Regularizer):
    """``L_REG = Σ W²`` over the decoder's kernels — in the loss, not optimizer weight decay."""

    def penalty(self, model, z, x_hat):
        kernels = decoder_kernels(model.decoder)
        if not kernels:
            return z.new_zeros(())
        return torch.stack([w.pow(2).sum() for w in kernels]).sum()


class GradientPenalty(Regularizer):
    """``L_REG = mean((∂ Σ_pixels D(z)² / ∂z)²)``: the gradient with respect to the codes, through
    the decoder only (the reference code's definition).

    The penalty reuses the decoder's forward pass of the reconstruction: only a double backward
    through the decoder is added. ``every=k`` makes it lazy, as StyleGAN2 does for its R1 penalty:
    computed on every k-th training step and multiplied by k there, so its expected gradient is
    unchanged while it costs 1/k as much. Validation always computes it.
    """

    def __init__(self, weight: float = 0.0, every: int = 1):
        super().__init__(weight)
        if every < 1:
            raise RaekitError(f"gp_every must be ≥ 1, got {every}")
        self.every = int(every)
        self._calls = 0

    def penalty(self, model, z, x_hat):
        if model.training and self.every > 1:
            self._calls += 1
            if (self._calls - 1) % self.every:
                return z.new_zeros(())
            scale = float(self.every)
        else:
            scale = 1.0
        if not (torch.is_grad_enabled() and z.requires_grad):
            # Evaluation under no_grad: recompute the decoder on codes that track gradients.
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                x_hat = model.decode(z)
                (grad,) = torch.autograd.grad(x_hat.pow(2).sum(), z)
            return scale * grad.pow(2).mean()
        (grad,) = torch.autograd.grad(x_hat.pow(2).sum(), z, create_graph=True)
        return scale * grad.pow(2).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, every={self.every}"


class SpectralNorm(Regularizer):
    """Spectral normalisation of every conv, dense and transposed-conv layer (one power
    iteration a step, persistent vectors), via ``torch.nn.utils.parametrizations.spectral_norm``.

    ``scope="all"`` (the reference code) normalises encoder and decoder; ``"decoder"`` only the
    decoder. It adds no loss term.
    """

    LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

    def __init__(self, scope: str = "all"):
        super().__init__(0.0)
        if scope not in ("all", "decoder"):
            raise RaekitError(f"sn_scope must be 'all' or 'decoder', got {scope!r}")
        self.scope = scope

    def attach(self, model: nn.Module) -> None:
        root = model if self.scope == "all" else model.decoder
        for m in list(root.modules()):
            if isinstance(m, self.LAYERS) and not parametrize.is_parametrized(m, "weight"):
                parametrizations.spectral_norm(m)

    def extra_repr(self) -> str:
        return f"scope={self.scope}"

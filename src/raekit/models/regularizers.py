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

    #: the penalty differentiates the decoder's output with respect to the codes: a model
    #: evaluating without gradients decodes once with its graph recorded (not twice)
    needs_code_graph = False

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

    needs_code_graph = True

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
        training = torch.is_grad_enabled()
        with torch.enable_grad():
            if not (z.requires_grad and x_hat.requires_grad):
                # codes without a graph to the output: decode them again, recording it
                z = z.detach().requires_grad_(True)
                x_hat = model.decode(z)
            # with the graph of this gradient kept only when the loss is differentiated
            (grad,) = torch.autograd.grad(x_hat.pow(2).sum(), z, create_graph=training)
        return scale * grad.pow(2).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, every={self.every}"


class KerasSpectralNorm(nn.Module):
    """The reference code's spectral normalisation of one weight (``DenseSN``, ``ConvSN2D``,
    ``ConvSN2DTranspose`` in ``models/my_layers/spectral_normalized_dense_conv.py``), as a
    ``torch.nn.utils.parametrize`` parametrization: ``W / σ̂``.

    The reference reshapes its Keras kernel to a matrix whose columns are the kernel's *last*
    axis: (kh·kw·in, out) for a convolution, (in, out) for a dense layer and (kh·kw·out, in) for
    a transposed convolution. That last axis is dimension 0 of the PyTorch weight in every case
    (conv (out, in, kh, kw), linear (out, in), transposed conv (in, out, kh, kw)), so
    ``B = W.reshape(W.shape[0], -1)`` is the transpose of the reference's matrix up to the order
    of its columns, which changes neither σ nor the iteration. For a transposed convolution
    this is not PyTorch's convention (``spectral_norm`` takes dim 1 there: the (out, in·kh·kw)
    matrix, whose largest singular value differs).

    One power iteration per call, as the reference's ``power_iteration``: with the stored
    vector u (shape (W.shape[0],), drawn from N(0, 1), not normalised, no warm-up)::

        v = Bᵀu / (‖Bᵀu‖ + ε),  u' = Bv / (‖Bv‖ + ε),  σ̂ = u'ᵀ B v,  ε = 1e-12

    The gradient flows through v, u' and σ̂ (the reference computes them in the graph without
    ``stop_gradient``; PyTorch's ``spectral_norm`` treats u and v as constants). u' is stored
    after each call in training mode. The reference stores it on every call, in prediction
    too; here evaluation leaves the model unchanged (the same σ̂ from the stored u each time).
    """

    EPS = 1e-12

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("u", torch.randn(weight.shape[0], dtype=weight.dtype,
                                              device=weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        b = weight.reshape(weight.shape[0], -1)  # (n0, m)
        u = self.u.clone()  # (n0,); a copy: the stored one is overwritten below
        v = b.t() @ u
        v = v / (v.norm() + self.EPS)  # (m,)
        u = b @ v
        u = u / (u.norm() + self.EPS)  # (n0,)
        sigma = u @ (b @ v)
        if self.training:
            with torch.no_grad():
                self.u.copy_(u)
        return weight / sigma


#: ``sn_convention=`` choices: how a weight is spectrally normalised
SN_CONVENTIONS = ("keras", "torch")


class SpectralNorm(Regularizer):
    """Spectral normalisation of every conv, dense and transposed-conv layer (one power
    iteration a step, persistent vectors). It adds no loss term.

    ``scope="all"`` (the reference code) normalises encoder and decoder; ``"decoder"`` only the
    decoder. ``convention="keras"`` (the reference code): :class:`KerasSpectralNorm` on every
    layer; ``"torch"``: ``torch.nn.utils.parametrizations.spectral_norm`` (the same matrix for
    conv and dense layers, the (out, in·kh·kw) matrix for transposed convolutions, u and v held
    constant in the gradient, 15 warm-up iterations).
    """

    LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)

    def __init__(self, scope: str = "all", convention: str = "keras"):
        super().__init__(0.0)
        if scope not in ("all", "decoder"):
            raise RaekitError(f"sn_scope must be 'all' or 'decoder', got {scope!r}")
        if convention not in SN_CONVENTIONS:
            raise RaekitError(f"sn_convention must be one of {', '.join(SN_CONVENTIONS)}, "
                              f"got {convention!r}")
        self.scope = scope
        self.convention = convention

    def attach(self, model: nn.Module) -> None:
        root = model if self.scope == "all" else model.decoder
        for m in list(root.modules()):
            if isinstance(m, self.LAYERS) and not parametrize.is_parametrized(m, "weight"):
                if self.convention == "keras":
                    parametrize.register_parametrization(m, "weight", KerasSpectralNorm(m.weight))
                else:
                    parametrizations.spectral_norm(m)

    def extra_repr(self) -> str:
        return f"scope={self.scope}, convention={self.convention}"

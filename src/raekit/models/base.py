"""What every raekit model shares: an encoder, a decoder and three verbs.

``encode(x)`` gives the code that ex-post densities are fitted on, ``decode(z)`` gives images (or
logits, for the grammar models), ``reconstruct(x)`` is what the model returns for an input.
``encode_sample(x)`` draws a code from the encoder's distribution q(z|x): the code itself for a
deterministic encoder, z = μ + σ·ε for a VAE's — each model owns what a sampled code is, so
``reconstruct(x, sample=True)`` is the reference code's ``auto_encoder.predict`` for every model. A
trainable model adds ``forward(x)``, which returns a dict with the total ``"loss"`` and each
unweighted term; the training loop reads nothing else.

:class:`BaseAutoencoder` on its own wraps a user's pair of modules for generation only::

    model = BaseAutoencoder(my_encoder, my_decoder)
    images = decode(model, density.sample(64))

The helpers :func:`evaluating`, :func:`model_device` and :func:`resolve_device` are the one place
that puts a model in evaluation mode and that turns a device name into a device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import RaekitError

#: ``(x_hat, x) → scalar``: a reconstruction cost
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


#: the ex-post density of models without a density of their own (the paper's best: GMM)
EX_POST_DEFAULT = "gmm"


def sampling_density(model: nn.Module) -> str:
    """The density a model's plain samples come from: its own, else :data:`EX_POST_DEFAULT`."""
    return getattr(model, "default_density", None) or EX_POST_DEFAULT


class BaseAutoencoder(nn.Module):
    """An encoder x (B, …) → z (B, d) and a decoder z → x̂, with the verbs every model has.

    Args:
        encoder: x (B, …) → (B, d) (a VAE's encoder gives (B, 2·d): μ and a raw log σ).
        decoder: z (B, d) → x̂ with x's shape.
        reconstruction_loss: ``(x_hat, x) → scalar``; models that train set their own default.
        default_density: the density the model samples through by design (a name in
            :data:`raekit.densities.DENSITIES`): its prior, or its second stage. None for models
            without one (the RAE family), whose samples come from an ex-post density of the
            user's choice — :data:`EX_POST_DEFAULT` unless told otherwise.
    """

    default_reconstruction_loss: LossFn | None = None

    def __init__(self, encoder: nn.Module, decoder: nn.Module, *,
                 reconstruction_loss: LossFn | None = None, default_density: str | None = None):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.reconstruction_loss = reconstruction_loss or type(self).default_reconstruction_loss
        self.default_density = default_density

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def encode_sample(self, x: torch.Tensor, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """A code drawn from q(z|x): for a deterministic encoder, the code itself."""
        return self.encode(x)

    def reconstruct(self, x: torch.Tensor, *, sample: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """``decode(encode(x))``; with ``sample``, the decoded draw of q(z|x)."""
        z = self.encode_sample(x, generator=generator) if sample else self.encode(x)
        return self.decode(z)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise RaekitError(f"{type(self).__name__} has no training objective; train an "
                          "Autoencoder, VAE or WAE")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (a GPU if there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, … as a device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RaekitError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RaekitError(f"device {name!r} was asked for but no GPU is available")
    return device


@contextmanager
def evaluating(model: nn.Module, *, grad: bool = False) -> Iterator[nn.Module]:
    """Eval mode inside (and no gradients unless ``grad``); the training mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(grad):
            yield model
    finally:
        model.train(was_training)

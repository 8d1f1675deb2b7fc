"""Generation with any trained autoencoder (Ghosh et al. 2020, §4; paper-facts §2): encode a
dataset in batches, fit an ex-post density, sample it and decode::

    codes = encode_dataset(model, train_loader)            # (N, d), no gradients, eval mode
    density = DENSITIES["gmm"]().fit(codes)
    images = decode(model, density.sample(64, seed=0))     # (64, C, H, W)

``model`` is anything with ``encode(x)`` and ``decode(z)`` (every raekit model: the RAE family,
and the VAEs, whose ``encode`` returns the posterior mean), or a user's own pair of modules via
:class:`EncoderDecoder`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import images_of
from .errors import RaekitError


class EncoderDecoder(nn.Module):
    """A user's own encoder and decoder with the ``encode``/``decode`` verbs."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if it has none)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients inside; the model's training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _check_verbs(model: nn.Module, *verbs: str) -> None:
    for verb in verbs:
        if not callable(getattr(model, verb, None)):
            raise RaekitError(f"{type(model).__name__} has no {verb}() method; wrap your networks "
                              f"as raekit.generate.EncoderDecoder(encoder, decoder)")


def encode_dataset(model: nn.Module, loader: Iterable | Dataset, *, progress: bool = True,
                   batch_size: int = 256) -> torch.Tensor:
    """Codes of every image in ``loader``: float32 (N, d) on the CPU.

    ``loader`` yields batches that are image tensors or ``(x, y, …)`` tuples (a ``Dataset`` is
    wrapped in a ``DataLoader`` of ``batch_size``). Runs without gradients, in eval mode, on the
    model's device, with a tqdm progress bar; the model's training mode is restored afterwards.
    """
    from tqdm.auto import tqdm

    _check_verbs(model, "encode")
    if isinstance(loader, Dataset):
        loader = DataLoader(loader, batch_size=batch_size)
    device = model_device(model)
    codes = []
    with evaluating(model):
        total = len(loader) if hasattr(loader, "__len__") else None
        for batch in tqdm(loader, total=total, desc="encoding", unit="batch", disable=not progress,
                          leave=False):
            x = images_of(batch).to(device, non_blocking=True)
            z = model.encode(x)  # (B, d)
            codes.append(z.float().cpu())
    if not codes:
        raise RaekitError("the data loader yielded no batches: nothing to encode")
    return torch.cat(codes)


def decode(model: nn.Module, z: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Images of the codes ``z`` (N, d): (N, C, H, W) on the CPU, decoded in batches without
    gradients, in eval mode, on the model's device."""
    _check_verbs(model, "decode")
    device = model_device(model)
    with evaluating(model):
        return torch.cat([model.decode(zb.to(device)).cpu() for zb in torch.as_tensor(z).split(batch_size)])


def reconstruct(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """``decode(encode(x))`` in batches, without gradients, in eval mode: (N, C, H, W) on the CPU."""
    _check_verbs(model, "encode", "decode")
    device = model_device(model)
    with evaluating(model):
        return torch.cat([model.decode(model.encode(xb.to(device))).cpu()
                          for xb in torch.as_tensor(x).split(batch_size)])


def sample_images(model: nn.Module, density, n: int, *, seed: int | None = None,
                  batch_size: int = 256) -> torch.Tensor:
    """``n`` images: codes drawn from a fitted ``density`` and decoded; (n, C, H, W) on the CPU."""
    return decode(model, density.sample(n, seed=seed), batch_size=batch_size)

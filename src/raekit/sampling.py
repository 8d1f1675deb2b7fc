"""Generation and interpolation with any trained autoencoder (Ghosh et al. 2020, §4 and §6).

Encode a dataset in batches, fit an ex-post density, sample it and decode::

    codes = encode_dataset(model, train_loader)            # (N, d), no gradients, eval mode
    density = DENSITIES["gmm"]().fit(codes)
    images = decode(model, density.sample(64, seed=0))     # (64, C, H, W)

``model`` is anything with ``encode(x)`` and ``decode(z)``: every raekit model, or a user's own
pair of modules as :class:`raekit.models.BaseAutoencoder` ``(encoder, decoder)``.

Interpolation between codes (§6 "Interpolation"): the paper decodes midpoints of random pairs of
validation codes; besides straight lines it uses spherical (slerp) and norm-rescaled midpoints,
which keep the interpolant away from the low-norm middle of the code space that a straight line
crosses. Each interpolation takes codes ``z0``, ``z1`` of shape (..., d) and a position ``t`` — a
number, or a 1-D tensor of T positions — and returns (..., d), or (T, ..., d) for a tensor ``t``;
``t = 0`` gives ``z0`` and ``t = 1`` gives ``z1``:

* :func:`linear` — ``(1 − t)·z0 + t·z1``.
* :func:`slerp` — Shoemake's formula on the raw codes, as the reference code
  (``my_utility/interpolations.py``): ``sin((1 − t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1`` with Ω the
  angle between ``z0`` and ``z1``. Between codes of different norms the path is not an arc of one
  circle and its norm is not the endpoints' mean.
* :func:`slerp_norm` (``"slerp-norm"``) — the direction moves along the great circle between
  ``z0/‖z0‖`` and ``z1/‖z1‖`` and the norm moves linearly from ``‖z0‖`` to ``‖z1‖``, so
  ``‖slerp_norm(t)‖ = (1 − t)‖z0‖ + t‖z1‖`` exactly (raekit's variant).
* :func:`norm_rescaled` — the straight line, each point rescaled to the norm
  ``(1 − t)‖z0‖ + t‖z1‖`` (the midpoint gets the endpoints' mean norm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import images_of
from .errors import RaekitError
from .models.base import evaluating, model_device


def _check_verbs(model: nn.Module, *verbs: str) -> None:
    for verb in verbs:
        if not callable(getattr(model, verb, None)):
            raise RaekitError(f"{type(model).__name__} has no {verb}() method; wrap your networks "
                              f"as raekit.BaseAutoencoder(encoder, decoder)")


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
        return torch.cat([model.decode(zb.to(device)).cpu()
                          for zb in torch.as_tensor(z).split(batch_size)])


def reconstruct(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256, sample: bool = False,
                through=None, seed: int | None = None) -> torch.Tensor:
    """Reconstructions of ``x`` in batches, without gradients, in eval mode: (N, C, H, W) on the
    CPU.

    * default: ``decode(encode(x))`` — a VAE decodes its posterior mean μ;
    * ``sample=True``: the decoded draw of q(z|x) (``model.encode_sample``: z = μ + σ·ε for a
      VAE, the code itself for a deterministic encoder) — the reference code's
      ``auto_encoder.predict``;
    * ``through=density`` (one whose ``reconstructs`` is true, e.g. a 2-stage VAE's second stage)
      with ``sample=True``: μ passed through the density's own sampled reconstruction, then
      decoded — the reference code's ``predict_2stage``.

    ``seed`` fixes the draws (a generator on the model's device).
    """
    _check_verbs(model, "encode", "decode")
    device = model_device(model)
    if through is not None and not getattr(through, "reconstructs", False):
        raise RaekitError(f"the {getattr(through, 'name', type(through).__name__)} density "
                          "does not reconstruct codes")
    g = torch.Generator(device=device) if sample else None
    if g is not None:
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
    out = []
    with evaluating(model):
        for i, xb in enumerate(torch.as_tensor(x).split(batch_size)):
            xb = xb.to(device)
            if not sample:
                z = model.encode(xb)
            elif through is not None:
                z = through.reconstruct(model.encode(xb).cpu(),
                                        seed=None if seed is None else seed + i).to(device)
            elif callable(getattr(model, "encode_sample", None)):
                z = model.encode_sample(xb, generator=g)
            else:  # a user's model without a sampler: a deterministic encoder
                z = model.encode(xb)
            out.append(model.decode(z).cpu())
    return torch.cat(out)


def sample_images(model: nn.Module, density, n: int, *, seed: int | None = None,
                  batch_size: int = 256) -> torch.Tensor:
    """``n`` images: codes drawn from a fitted ``density`` and decoded; (n, C, H, W) on the CPU."""
    return decode(model, density.sample(n, seed=seed), batch_size=batch_size)


# ----------------------------------------------------------------------------- interpolation

EPS = 1e-7


def _prepare(z0: torch.Tensor, z1: torch.Tensor,
             t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z0, z1 = torch.as_tensor(z0), torch.as_tensor(z1)
    if z0.shape != z1.shape or z0.ndim < 1:
        raise RaekitError(f"interpolation needs two codes of the same shape (..., d), got "
                          f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    dtype = z0.dtype if z0.is_floating_point() else torch.get_default_dtype()
    z0, z1 = z0.to(dtype), z1.to(dtype)
    t = torch.as_tensor(t, dtype=dtype, device=z0.device)
    if t.ndim > 1:
        raise RaekitError(f"t must be a number or a 1-D tensor of positions, "
                          f"got shape {tuple(t.shape)}")
    if t.ndim == 1:  # (T,) → (T, 1, …, 1) to broadcast against (..., d)
        t = t.view(-1, *([1] * z0.ndim))
    return z0, z1, t


def linear(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Straight line ``(1 − t)·z0 + t·z1``."""
    z0, z1, t = _prepare(z0, z1, t)
    return torch.lerp(z0, z1, t)


def _norm_path(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(1 − t)‖z0‖ + t‖z1‖`` with a trailing unit dimension."""
    return torch.lerp(z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True), t)


def _angle(z0: torch.Tensor, z1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The angle Ω (..., 1) between the directions of ``z0`` and ``z1``, and where sin Ω is large
    enough to divide by (elsewhere the directions are (anti)parallel or a code is zero)."""
    u0 = z0 / z0.norm(dim=-1, keepdim=True).clamp_min(EPS)
    u1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(EPS)
    omega = torch.arccos((u0 * u1).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0))
    return omega, torch.sin(omega) > 1e-4


def slerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Shoemake's slerp on the raw codes (the reference code's):
    ``sin((1 − t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1``.

    Where the two directions are (anti)parallel sin Ω vanishes and the straight line is used
    (the reference does so only at sin Ω = 0 exactly).
    """
    z0, z1, t = _prepare(z0, z1, t)
    omega, ok = _angle(z0, z1)
    sin = torch.where(ok, torch.sin(omega), torch.ones_like(omega))
    out = (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / sin
    return torch.where(ok, out, torch.lerp(z0, z1, t))


def slerp_norm(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation of the direction with a linearly interpolated norm (raekit's
    variant): ``‖slerp_norm(t)‖ = (1 − t)‖z0‖ + t‖z1‖``.

    Where the two directions are (anti)parallel the great circle is undefined or degenerate
    and the straight line is used.
    """
    z0, z1, t = _prepare(z0, z1, t)
    omega, ok = _angle(z0, z1)
    u0 = z0 / z0.norm(dim=-1, keepdim=True).clamp_min(EPS)
    u1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(EPS)
    sin = torch.where(ok, torch.sin(omega), torch.ones_like(omega))
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / sin
    out = direction * _norm_path(z0, z1, t)
    return torch.where(ok, out, torch.lerp(z0, z1, t))


def norm_rescaled(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """The straight line rescaled to the norm ``(1 − t)‖z0‖ + t‖z1‖``."""
    z0, z1, t = _prepare(z0, z1, t)
    line = torch.lerp(z0, z1, t)
    return line / line.norm(dim=-1, keepdim=True).clamp_min(EPS) * _norm_path(z0, z1, t)


#: every interpolation by name
INTERPOLATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": linear,
    "slerp": slerp,
    "slerp-norm": slerp_norm,
    "norm-rescaled": norm_rescaled,
}
#: the interpolations a picture shows by default, in its order
STRIP_METHODS = ("linear", "slerp", "norm-rescaled")


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int = 8, *,
                method: str = "linear") -> torch.Tensor:
    """``steps`` evenly spaced codes from ``z0`` to ``z1`` (both included): (steps, ..., d)."""
    if method not in INTERPOLATIONS:
        raise RaekitError(f"unknown interpolation {method!r}; choose one of {list(INTERPOLATIONS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise RaekitError(f"steps must be an integer ≥ 2 (the two endpoints included), "
                          f"got {steps!r}")
    return INTERPOLATIONS[method](z0, z1, torch.linspace(0, 1, steps))


def midpoints(z0: torch.Tensor, z1: torch.Tensor, *, method: str = "linear") -> torch.Tensor:
    """The midpoints (t = ½) of pairs of codes: (..., d) → (..., d)."""
    if method not in INTERPOLATIONS:
        raise RaekitError(f"unknown interpolation {method!r}; choose one of {list(INTERPOLATIONS)}")
    return INTERPOLATIONS[method](z0, z1, 0.5)


def interpolation_strips(model: nn.Module, x0: torch.Tensor, x1: torch.Tensor, steps: int = 8, *,
                         methods=None, batch_size: int = 256
                         ) -> tuple[list[torch.Tensor], list[str]]:
    """Decoded interpolations between the codes of image pairs, for a picture.

    ``x0``, ``x1``: (P, C, H, W). For each pair and each method (default
    :data:`STRIP_METHODS`), a strip (steps + 2, C, H, W): the first image, the ``steps`` decoded
    codes from its code to the other's (both ends included), the second image. Returns the strips
    grouped by pair and their labels.
    """
    methods = list(methods or STRIP_METHODS)
    unknown = [m for m in methods if m not in INTERPOLATIONS]
    if unknown:
        raise RaekitError(f"unknown interpolation {unknown[0]!r}; "
                          f"choose from {list(INTERPOLATIONS)}")
    pairs = len(x0)
    with evaluating(model):
        device = model_device(model)
        z0, z1 = model.encode(x0.to(device)).cpu(), model.encode(x1.to(device)).cpu()  # (P, d)
    t = torch.linspace(0, 1, steps)
    strips: dict[tuple[int, str], torch.Tensor] = {}
    for method in methods:
        path = INTERPOLATIONS[method](z0, z1, t)  # (steps, P, d)
        decoded = decode(model, path.transpose(0, 1).reshape(-1, z0.shape[1]),
                         batch_size=batch_size)  # (P·steps, C, H, W)
        for i, strip in enumerate(decoded.view(pairs, steps, *decoded.shape[1:])):
            strips[i, method] = torch.cat([x0[i:i + 1], strip, x1[i:i + 1]])
    keys = sorted(strips, key=lambda k: (k[0], methods.index(k[1])))
    return [strips[k] for k in keys], [f"pair {i + 1} {m}" for i, m in keys]

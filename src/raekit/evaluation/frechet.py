"""The Fréchet distance between Gaussians fitted to features (FID; Heusel et al. 2017).

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

Numerics. Σ₁Σ₂ is not symmetric, and with fewer samples than feature dimensions (or features that
are constant, as some Inception features are on digits) it is singular; ``scipy.linalg.sqrtm`` of
it can return complex values or NaN, and the reference code then adds 1e-6 to the diagonals. Here
the trace of the square root is computed as

    Tr (Σ₁ Σ₂)^½ = Tr (√Σ₁ Σ₂ √Σ₁)^½ = Σᵢ √λᵢ,   λ = eigenvalues of the symmetric PSD √Σ₁ Σ₂ √Σ₁

with symmetric eigen-decompositions in float64 (the eigenvalues of AB equal those of BA). This is
exact for singular covariances; rounding leaves eigenvalues like −1e-13, which are set to 0.
Only when an input is not positive semi-definite beyond rounding, or an eigen-decomposition fails,
is the distance *regularised* (negative eigenvalues clipped, or ``eps·I`` added and
``scipy.linalg.sqrtm`` used); a :class:`RegularisationWarning` says so and the result records it.
The distance is clamped at 0 (it can come out as −1e-12 for identical statistics).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import RaekitError


class RegularisationWarning(UserWarning):
    """The Fréchet distance had to regularise a covariance to be computed."""


@dataclass(eq=False)
class GaussianStats:
    """Mean (D,) and covariance (D, D) of n feature vectors, in float64."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    _sqrt: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.mu = np.asarray(self.mu, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        if self.mu.ndim != 1 or self.sigma.shape != (len(self.mu), len(self.mu)):
            raise RaekitError(f"Gaussian statistics need mu (D,) and sigma (D, D), got "
                              f"{self.mu.shape} and {self.sigma.shape}")
        if not (np.isfinite(self.mu).all() and np.isfinite(self.sigma).all()):
            raise RaekitError("Gaussian statistics hold NaN or infinite values "
                              "(non-finite features or images?)")

    @classmethod
    def from_features(cls, features) -> GaussianStats:
        """Sample mean and unbiased covariance (``np.cov(rowvar=False)``) of (N, D) features."""
        f = _as_float64(features)
        if f.ndim != 2:
            raise RaekitError(f"features must be (N, D), got shape {tuple(f.shape)}")
        if len(f) < 2:
            raise RaekitError(f"need at least 2 feature vectors for a covariance, got {len(f)}")
        if not np.isfinite(f).all():
            raise RaekitError("features hold NaN or infinite values")
        mu = f.mean(axis=0)
        c = f - mu
        sigma = (c.T @ c) / (len(f) - 1)
        return cls(mu, (sigma + sigma.T) / 2, len(f))

    def sqrt_sigma(self) -> tuple[np.ndarray, bool]:
        """√Σ (symmetric PSD) and whether negative eigenvalues beyond rounding were clipped."""
        if self._sqrt is None:
            w, v = _eigh(self.sigma)
            w, clipped = _clip_eigenvalues(w)
            self._sqrt = ((v * np.sqrt(w)) @ v.T, clipped)
        return self._sqrt

    def to_dict(self) -> dict:
        """Tensors and numbers only (saved with :func:`raekit.io.save_torch`)."""
        return {"mu": torch.from_numpy(self.mu), "sigma": torch.from_numpy(self.sigma), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict) -> GaussianStats:
        try:
            return cls(d["mu"].numpy(), d["sigma"].numpy(), int(d["n"]))
        except (KeyError, AttributeError, TypeError) as e:
            raise RaekitError(f"not a file of Gaussian feature statistics ({e})") from None


@dataclass
class FrechetResult:
    distance: float  # d², what FID reports
    mean_term: float  # ‖μ₁ − μ₂‖²
    trace_term: float  # Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)
    regularised: bool  # a covariance had to be regularised (see module docstring)

    def to_dict(self) -> dict:
        return {"distance": self.distance, "mean_term": self.mean_term,
                "trace_term": self.trace_term, "regularised": self.regularised}


def _as_float64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.eigh((a + a.T) / 2)


def _clip_eigenvalues(w: np.ndarray) -> tuple[np.ndarray, bool]:
    """Zero the negative eigenvalues; report whether any was beyond rounding error."""
    scale = max(float(np.abs(w).max(initial=0.0)), np.finfo(np.float64).tiny)
    tol = len(w) * np.finfo(np.float64).eps * scale * 10
    beyond = bool((w < -tol).any())
    return np.clip(w, 0, None), beyond


def frechet(stats1: GaussianStats, stats2: GaussianStats, *, eps: float = 1e-6) -> FrechetResult:
    """Fréchet distance between two Gaussians; put the one reused across calls first.

    ``stats1``'s √Σ is computed once and kept on the object, so comparing one set of real-data
    statistics with many generated sets costs one eigen-decomposition per generated set.
    """
    if stats1.mu.shape != stats2.mu.shape:
        raise RaekitError(f"feature dimensions differ: {stats1.mu.shape[0]} vs "
                          f"{stats2.mu.shape[0]}")
    diff = stats1.mu - stats2.mu
    mean_term = float(diff @ diff)
    regularised = False
    try:
        root1, clipped = stats1.sqrt_sigma()
        m = root1 @ stats2.sigma @ root1  # symmetric PSD; its eigenvalues are those of Σ₁Σ₂
        lam, clipped2 = _clip_eigenvalues(np.linalg.eigvalsh((m + m.T) / 2))
        regularised = clipped or clipped2
        tr_sqrt = float(np.sqrt(lam).sum())
    except np.linalg.LinAlgError:
        tr_sqrt, regularised = _trace_sqrt_offset(stats1.sigma, stats2.sigma, eps), True
    trace_term = float(np.trace(stats1.sigma) + np.trace(stats2.sigma) - 2 * tr_sqrt)
    if regularised:
        warnings.warn("Fréchet distance: a covariance was not positive semi-definite or its "
                      "eigen-decomposition failed; the result was regularised",
                      RegularisationWarning, stacklevel=2)
    return FrechetResult(max(mean_term + trace_term, 0.0), mean_term, trace_term, regularised)


def _trace_sqrt_offset(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """Tr sqrtm((Σ₁ + εI)(Σ₂ + εI)) with scipy, the reference code's fallback."""
    import scipy.linalg

    off = eps * np.eye(len(s1))
    root = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    if not np.isfinite(root).all():
        raise RaekitError("Fréchet distance: the covariance product has no finite square root "
                          "even after regularisation")
    return float(np.real(np.trace(root)))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6) -> float:
    """d² between N(mu1, sigma1) and N(mu2, sigma2) (numpy arrays or tensors)."""
    return frechet(GaussianStats(_as_float64(mu1), _as_float64(sigma1), 0),
                   GaussianStats(_as_float64(mu2), _as_float64(sigma2), 0), eps=eps).distance


def frechet_distance_of_features(features1, features2) -> float:
    """d² between Gaussians fitted to two sets of (N, D) features."""
    return frechet(GaussianStats.from_features(features1),
                   GaussianStats.from_features(features2)).distance


def save_stats(stats: GaussianStats, path: str | os.PathLike, **meta) -> None:
    from ..files import save_torch

    save_torch({**stats.to_dict(), "meta": meta}, path)


def load_stats(path: str | os.PathLike) -> GaussianStats:
    from ..files import load_torch

    return GaussianStats.from_dict(load_torch(path))

"""Precision and recall of generated samples (Ghosh et al. 2020, §6 and appendix).

* **PRD** (Sajjadi et al., NeurIPS 2018), the paper's measure: the union of generated and reference
  features is clustered with k-means (20 clusters); each set becomes a histogram over the clusters,
  P (reference) and Q (generated); for 1001 slopes λ = tan θ, θ ∈ (0, π/2),
  α(λ) = Σᵢ min(λ Pᵢ, Qᵢ) (precision) and β(λ) = α(λ)/λ (recall); the curve is averaged over 10
  clusterings. Summaries F₈ (≈ recall: how much of the data the model covers) and F₁/₈ (≈ precision:
  how much of the samples look like data) are the maxima of F_β over the curve. This follows the
  authors' code (``compare_gan/prd_score.py``), with scikit-learn's ``MiniBatchKMeans``.
* **Improved precision and recall** (Kynkäänniemi et al., NeurIPS 2019): each sample gets a
  hypersphere reaching its k-th nearest neighbour (k = 3) in its own set; precision is the fraction
  of generated samples inside some reference sphere, recall the fraction of reference samples
  inside some generated sphere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RaekitError


@dataclass
class PRDCurve:
    precision: np.ndarray  # (num_angles,)
    recall: np.ndarray  # (num_angles,)

    @property
    def f_beta(self) -> tuple[float, float]:
        """(F₈, F₁/₈): the recall-weighted and the precision-weighted summary."""
        return prd_to_max_f_beta_pair(self.precision, self.recall, beta=8)

    def to_dict(self) -> dict:
        f8, f18 = self.f_beta
        return {"f_8": f8, "f_1_8": f18, "precision": self.precision.tolist(),
                "recall": self.recall.tolist()}


def _features(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 2 or len(a) < 1:
        raise RaekitError(f"{name} features must be a non-empty (N, D) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise RaekitError(f"{name} features hold NaN or infinite values")
    return a


def compute_prd(eval_dist: np.ndarray, ref_dist: np.ndarray, num_angles: int = 1001,
                epsilon: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """PRD curve of two histograms over the same bins (each summing to 1)."""
    if not 3 <= num_angles <= 1e6:
        raise RaekitError(f"num_angles must be in [3, 1e6], got {num_angles}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles))  # (A,)
    precision = np.minimum(ref_dist[None, :] * slopes[:, None], eval_dist[None, :]).sum(axis=1)
    recall = precision / slopes
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def _cluster_into_bins(eval_data, ref_data, num_clusters: int, seed: int):
    from sklearn.cluster import MiniBatchKMeans

    data = np.vstack([eval_data, ref_data])
    labels = MiniBatchKMeans(n_clusters=num_clusters, n_init=10,
                             random_state=seed).fit(data).labels_
    hist = lambda lab: np.bincount(lab, minlength=num_clusters) / len(lab)  # noqa: E731
    return hist(labels[:len(eval_data)]), hist(labels[len(eval_data):])


def prd(eval_features, ref_features, *, num_clusters: int = 20, num_angles: int = 1001,
        num_runs: int = 10, seed: int = 0, enforce_balance: bool = True) -> PRDCurve:
    """PRD curve of generated (``eval``) against reference features, averaged over ``num_runs``."""
    ev, ref = _features(eval_features, "generated"), _features(ref_features, "reference")
    if ev.shape[1] != ref.shape[1]:
        raise RaekitError(f"feature dimensions differ: {ev.shape[1]} vs {ref.shape[1]}")
    if enforce_balance and len(ev) != len(ref):
        raise RaekitError(f"PRD compares sets of equal size (the authors' rule); got {len(ev)} "
                          f"generated and {len(ref)} reference")
    if num_clusters < 2 or num_clusters > len(ev) + len(ref):
        raise RaekitError(f"num_clusters must be in [2, {len(ev) + len(ref)}], got {num_clusters}")
    curves = [compute_prd(*_cluster_into_bins(ev, ref, num_clusters, seed + r), num_angles)
              for r in range(num_runs)]
    return PRDCurve(np.mean([c[0] for c in curves], axis=0),
                    np.mean([c[1] for c in curves], axis=0))


def _f_beta(precision, recall, beta: float, epsilon: float = 1e-10):
    return (1 + beta ** 2) * (precision * recall) / (beta ** 2 * precision + recall + epsilon)


def prd_to_max_f_beta_pair(precision, recall, beta: float = 8) -> tuple[float, float]:
    """(max F_β, max F_1/β) over the curve."""
    return (float(np.max(_f_beta(precision, recall, beta))),
            float(np.max(_f_beta(precision, recall, 1 / beta))))


# ---------------------------------------------------------------------------- k-NN precision/recall


def _inside_any_sphere(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
                        chunk: int) -> torch.Tensor:
    """For each query: is it within the radius of at least one centre? (N_q,) bool."""
    inside = torch.zeros(len(queries), dtype=torch.bool)
    for i in range(0, len(queries), chunk):
        d = torch.cdist(queries[i:i + chunk], centres)  # (chunk, N_c)
        inside[i:i + chunk] = (d <= radii[None, :]).any(dim=1)
    return inside


def knn_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row. (N,)"""
    if len(features) <= k:
        raise RaekitError(f"k-NN precision/recall needs more than k={k} samples per set, "
                          f"got {len(features)}")
    out = torch.empty(len(features), dtype=features.dtype)
    for i in range(0, len(features), chunk):
        d = torch.cdist(features[i:i + chunk], features)  # (chunk, N); the row itself is at 0
        out[i:i + chunk] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def knn_precision_recall(eval_features, ref_features, *, k: int = 3, chunk: int = 1024,
                         ref_radii: torch.Tensor | None = None) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-th-neighbour spheres.

    ``ref_radii`` (from :func:`knn_radii` of the reference features, float64) saves recomputing
    them when one reference set is compared with several generated sets.
    """
    ev = torch.from_numpy(_features(eval_features, "generated")).double()
    ref = torch.from_numpy(_features(ref_features, "reference")).double()
    if ev.shape[1] != ref.shape[1]:
        raise RaekitError(f"feature dimensions differ: {ev.shape[1]} vs {ref.shape[1]}")
    if k < 1:
        raise RaekitError(f"k must be ≥ 1, got {k}")
    if ref_radii is None:
        ref_radii = knn_radii(ref, k, chunk)
    elif ref_radii.shape != (len(ref),):
        raise RaekitError(f"ref_radii must have shape ({len(ref)},), got {tuple(ref_radii.shape)}")
    precision = _inside_any_sphere(ev, ref, ref_radii.double(), chunk).double().mean()
    recall = _inside_any_sphere(ref, ev, knn_radii(ev, k, chunk), chunk).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


# ----------------------------------------------------------------------------- plot


def plot_prd(curves: dict[str, PRDCurve], path: str | os.PathLike, *,
             title: str | None = None) -> None:
    """PRD curves (recall on x, precision on y), one line per generated set, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import atomic_path

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=150)
    for name, c in curves.items():
        f8, f18 = c.f_beta
        ax.plot(c.recall, c.precision, label=f"{name} (F8 {f8:.2f}, F1/8 {f18:.2f})", lw=1.5)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall β", ylabel="precision α",
           title=title or "PRD")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)

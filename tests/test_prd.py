"""PRD and k-NN precision/recall: 1 for a set against itself, 0 for disjoint sets; the plot."""

import numpy as np
import pytest
import torch

from raekit.errors import RaekitError
from raekit.evaluation.prd import compute_prd, knn_precision_recall, knn_radii, plot_prd, prd


def blobs(rng, n, centres, scale=0.3):
    return np.concatenate([c + scale * rng.standard_normal((n // len(centres), len(c)))
                           for c in centres]).astype(np.float32)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    centres = [np.eye(8)[i] * 10 for i in range(4)]
    real = blobs(rng, 400, centres)
    same_dist = blobs(rng, 400, centres)
    far = blobs(rng, 400, [c + 100 for c in centres])
    half = blobs(rng, 400, centres[:2])  # covers only half of the modes
    return real, same_dist, far, half


def test_compute_prd_on_histograms():
    p = np.array([0.5, 0.5])
    prec, rec = compute_prd(p, p, num_angles=1001)
    assert prec.shape == rec.shape == (1001,)
    assert prec.max() == pytest.approx(1.0, abs=1e-3) and rec.max() == pytest.approx(1.0)
    prec, rec = compute_prd(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert prec.max() == 0 and rec.max() == 0


def test_prd_identical_and_disjoint(data):
    real, same_dist, far, half = data
    f8, f18 = prd(real, real, num_runs=1).f_beta
    assert f8 == pytest.approx(1.0, abs=1e-3) and f18 == pytest.approx(1.0, abs=1e-3)
    f8, f18 = prd(same_dist, real, num_runs=1).f_beta
    assert f8 > 0.9 and f18 > 0.9
    f8, f18 = prd(far, real, num_runs=1).f_beta
    assert f8 < 1e-6 and f18 < 1e-6
    # samples from half the modes: precise (F1/8 high) but low recall (F8 about 0.5)
    curve = prd(half, real, num_runs=2)
    f8, f18 = curve.f_beta
    assert f18 > 0.9 and 0.4 < f8 < 0.6
    d = curve.to_dict()
    assert len(d["precision"]) == 1001 and d["f_8"] == pytest.approx(f8)


def test_knn_precision_recall(data):
    real, same_dist, far, half = data
    r = knn_precision_recall(real, real, k=3)
    assert r["precision"] == 1.0 and r["recall"] == 1.0
    r = knn_precision_recall(same_dist, real, k=3)  # 100 points a mode in 8-d: spheres leave gaps
    assert r["precision"] > 0.8 and r["recall"] > 0.8
    r = knn_precision_recall(far, real, k=3)
    assert r["precision"] == 0.0 and r["recall"] == 0.0
    r = knn_precision_recall(half, real, k=3)
    assert r["precision"] > 0.8 and 0.4 < r["recall"] < 0.6
    radii = knn_radii(torch.from_numpy(real).double(), 3)  # reusable across generated sets
    assert knn_precision_recall(half, real, k=3, ref_radii=radii) == r
    # radius = distance to the 3rd nearest other point
    pts = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]], dtype=torch.float64)
    assert knn_radii(pts, 3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]


def test_errors_and_plot(data, tmp_path):
    real, same_dist, far, half = data
    with pytest.raises(RaekitError, match="equal size"):
        prd(real[:10], real)
    with pytest.raises(RaekitError, match="dimensions"):
        knn_precision_recall(real[:, :4], real)
    with pytest.raises(RaekitError, match="more than k"):
        knn_precision_recall(real[:3], real[:3], k=3)
    curves = {"same": prd(same_dist, real, num_runs=1), "half": prd(half, real, num_runs=1)}
    path = tmp_path / "prd.png"
    plot_prd(curves, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000

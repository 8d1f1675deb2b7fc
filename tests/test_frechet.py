"""Fréchet distance: agrees with the scipy.linalg.sqrtm reference, 0 on itself, safe when
singular."""

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from raekit.errors import RaekitError
from raekit.evaluation.frechet import (
    GaussianStats,
    RegularisationWarning,
    frechet,
    frechet_distance,
    frechet_distance_of_features,
)


def random_cov(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d


def reference_fd(mu1, s1, mu2, s2):
    root = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root)))


@pytest.mark.parametrize("d", [2, 16, 64])
def test_matches_scipy_sqrtm_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_cov(rng, d), random_cov(rng, d)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference_fd(mu1, s1, mu2, s2), rel=1e-8, abs=1e-10)


def test_univariate_closed_form():
    # d² = (m1 − m2)² + (σ1 − σ2)² for 1-D Gaussians
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)


def test_zero_for_identical_statistics_and_from_features():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    s = GaussianStats.from_features(f)
    assert np.allclose(s.sigma, np.cov(f, rowvar=False))
    assert np.allclose(s.mu, f.mean(0))
    r = frechet(s, s)
    assert r.distance == pytest.approx(0.0, abs=1e-9) and r.distance >= 0 and not r.regularised
    assert frechet_distance_of_features(torch.from_numpy(f), f) == pytest.approx(0.0, abs=1e-9)


def test_rank_deficient_covariances_are_finite_and_exact():
    # fewer samples than dimensions (as 64 Inception features of 2048 dims): singular Σ
    rng = np.random.default_rng(1)
    d = 100
    s1, s2 = random_cov(rng, d, rank=10), random_cov(rng, d, rank=7)
    mu = np.zeros(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RegularisationWarning)  # exact route: no regularisation
        r = frechet(GaussianStats(mu, s1, 0), GaussianStats(mu, s2, 0))
    assert np.isfinite(r.distance) and r.distance >= 0 and not r.regularised
    # reference with the eigenvalues of Σ1Σ2 (real, ≥ 0 for PSD matrices)
    lam = np.clip(np.real(np.linalg.eigvals(s1 @ s2)), 0, None)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(lam).sum()
    assert r.distance == pytest.approx(expected, rel=1e-6)
    # identical singular statistics: 0 exactly (clamped), never negative
    assert frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    # a constant feature (zero variance) in both sets
    f = rng.standard_normal((50, 8))
    f[:, 3] = 1.0
    assert frechet_distance_of_features(f, f) == pytest.approx(0.0, abs=1e-10)


def test_not_psd_input_is_regularised_with_a_warning():
    s_bad = np.diag([1.0, -0.5, 2.0])
    with pytest.warns(RegularisationWarning):
        r = frechet(GaussianStats(np.zeros(3), s_bad, 0), GaussianStats(np.zeros(3), np.eye(3), 0))
    assert r.regularised and np.isfinite(r.distance) and r.distance >= 0


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(RaekitError, match="mu"):
        GaussianStats(np.zeros(3), np.eye(4), 0)
    with pytest.raises(RaekitError, match="dimensions differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(RaekitError, match="NaN"):
        GaussianStats.from_features(np.full((4, 2), np.nan))
    with pytest.raises(RaekitError, match="at least 2"):
        GaussianStats.from_features(np.zeros((1, 2)))

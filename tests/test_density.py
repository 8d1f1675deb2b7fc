"""Ex-post densities: known parameters recovered, agreement with scikit-learn, seeds, a
multimodal benchmark, proper normalisation, saving without pickle, and bad input."""

import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture

from raekit.densities import (
    DENSITIES,
    Density,
    DensityWarning,
    GaussianDensity,
    GaussianMixtureDensity,
    KernelDensityEstimate,
    TwoStageVAEDensity,
    load_density,
    make_density,
    save_density,
)
from raekit.errors import RaekitError
from raekit.files import save_torch

CENTERS = np.array([[-6.0, -6.0], [-6.0, 6.0], [6.0, -6.0], [6.0, 6.0]])
# small and quick: the two-stage test must stay well under 20 s on a CPU
TWO_STAGE_SMALL = dict(hidden=64, epochs=30, kl_weight=0.05, n_importance=64, device="cpu")



def blobs(n, seed):
    rng = np.random.default_rng(seed)
    return CENTERS[rng.integers(0, 4, n)] + 0.5 * rng.standard_normal((n, 2))


def small(name):
    return make_density(name, **(TWO_STAGE_SMALL if name == "two-stage" else {}))


@pytest.fixture(scope="module")
def fitted():
    """Every density fitted once on the blobs (module scope: the two-stage VAE is the slow one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {name: small(name).fit(blobs(2000, 0)) for name in DENSITIES}
    torch.set_num_threads(before)
    return out


def test_gaussian_recovers_known_mean_and_covariance():
    rng = np.random.default_rng(0)
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    z = rng.multivariate_normal(mean, cov, 50_000)
    g = GaussianDensity().fit(torch.from_numpy(z).float())  # torch input is accepted
    np.testing.assert_allclose(g.mean_, mean, atol=0.02)
    np.testing.assert_allclose(g.covariance_, cov, atol=0.03)
    assert g.score_samples(z[:5]).shape == (5,)
    # its samples have the fitted moments
    s = g.sample(50_000, seed=1).double().numpy()
    np.testing.assert_allclose(s.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(s, rowvar=False), cov, atol=0.04)


def test_gmm_scores_equal_scikit_learn_on_the_same_fitted_parameters():
    z, test = blobs(3000, 0), blobs(500, 1)
    ours = GaussianMixtureDensity().fit(z)
    ref = GaussianMixture(10, covariance_type="full", max_iter=2000, tol=1e-3,
                          random_state=0).fit(z)
    np.testing.assert_allclose(ours.means_, ref.means_)
    np.testing.assert_allclose(ours.score_samples(test), ref.score_samples(test), rtol=1e-12)
    # and the mixture density written out: log Σ_k w_k N(z; μ_k, Σ_k)
    manual = logsumexp([np.log(w) + multivariate_normal(m, c).logpdf(test)
                        for w, m, c in zip(ours.weights_, ours.means_, ours.covariances_)], axis=0)
    np.testing.assert_allclose(ours.score_samples(test), manual, rtol=1e-9)
    assert ours.converged_ and ours.n_iter_ <= 2000


def test_dpgmm_is_the_reference_codes_dirichlet_process_mixture():
    from sklearn.mixture import BayesianGaussianMixture

    # the reference's GMM_Dirichlet (my_utility/estimate_density_and_sample.py), written out:
    # n_components=10, full covariance, weight_concentration_prior=1/10, scikit-learn's defaults
    z = np.concatenate([blobs(1500, 2), 0.3 * np.random.default_rng(3).standard_normal((500, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 100 iterations may not converge: so did the reference's
        ref = BayesianGaussianMixture(n_components=10, covariance_type="full",
                                      weight_concentration_prior=1.0 / 10,
                                      random_state=0).fit(z)
        ours = make_density("dpgmm").fit(z)
    assert ref.max_iter == 100 and ours.max_iter == 100
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-12)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-12)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-12)
    assert ours.n_iter_ == ref.n_iter_
    # samples come from the mixture at the posterior's expected parameters, as scikit-learn's
    x = ours.sample(20000, seed=0).numpy().astype(np.float64)
    np.testing.assert_allclose(x.mean(0), ref.weights_ @ ref.means_, atol=0.15)


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_samples_repeat_under_a_seed_and_differ_otherwise(fitted, name, one_thread):
    d = fitted[name]
    a, b, c = d.sample(64, seed=3), d.sample(64, seed=3), d.sample(64, seed=4)
    assert a.dtype == torch.float32 and a.shape == (64, 2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.equal(d.sample(64), d.sample(64))  # no seed: fresh randomness


def test_multimodal_densities_beat_one_gaussian_on_held_out_blobs(fitted, one_thread):
    test = blobs(1000, 1)
    ll = {name: d.score(test) for name, d in fitted.items()}
    # The true density's mean log-likelihood: log ¼ + E log N(0.5²I) = −log 4 − log(2π·0.25) − 1
    truth = -np.log(4) - np.log(2 * np.pi * 0.25) - 1
    assert ll["gmm"] == pytest.approx(truth, abs=0.1), ll
    assert ll["dpgmm"] == pytest.approx(truth, abs=0.15), ll
    assert ll["kde"] == pytest.approx(truth, abs=0.25), ll
    for name in ("gmm", "dpgmm", "kde", "two-stage"):
        assert ll[name] > ll["gaussian"] + 1.0, ll  # gaussian ≈ −6.4 nats
    assert ll["prior"] < ll["gaussian"]  # N(0, I) does not know the codes' scale


@pytest.mark.parametrize("name", ["gaussian", "gmm", "dpgmm", "kde", "prior"])
def test_densities_integrate_to_one(name):
    z = np.concatenate([np.random.default_rng(0).normal(-2, 0.5, (400, 1)),
                        np.random.default_rng(1).normal(1.5, 1.0, (600, 1))])
    d = make_density(name).fit(z)
    grid = np.linspace(-12, 12, 20001)[:, None]
    assert np.trapezoid(np.exp(d.score_samples(grid)), grid[:, 0]) == pytest.approx(1.0, abs=1e-3)


def test_kde_bandwidth_chosen_on_held_out_codes_beats_others():
    z, test = blobs(1500, 0), blobs(500, 1)
    chosen = KernelDensityEstimate().fit(z)
    for factor in (0.2, 5.0):
        other = KernelDensityEstimate(bandwidth=chosen.bandwidth_ * factor).fit(z)
        assert chosen.score(test) > other.score(test) + 0.1


def test_two_stage_defaults_are_the_papers_and_config_sets_them():
    d = TwoStageVAEDensity()
    assert (d.hidden, d.depth, d.kl_weight, d.epochs, d.batch_size) == (1024, 2, 1.5e-3, 100, 64)

    class Cfg:
        stage2_hidden, stage2_kl_weight, stage2_epochs, stage2_batch_size, progress = (
            32, 2e-3, 3, 16, False)

    d = DENSITIES["two-stage"].from_config(Cfg)
    assert (d.hidden, d.kl_weight, d.epochs, d.batch_size) == (32, 2e-3, 3, 16)
    assert DENSITIES["gmm"].from_config(Cfg).get_params()["n_components"] == 10


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_save_load_round_trip_gives_identical_scores_and_samples(fitted, name, tmp_path,
                                                                  one_thread):
    path = tmp_path / f"{name}.pt"
    save_density(fitted[name], path)
    blob = torch.load(path, weights_only=True)  # plain tensors and values: no pickled objects
    assert blob["density"]["name"] == name
    back = load_density(path)
    assert type(back) is DENSITIES[name]
    assert back.get_params() == fitted[name].get_params()
    test = blobs(200, 2)
    np.testing.assert_array_equal(back.score_samples(test), fitted[name].score_samples(test))
    assert torch.equal(back.sample(16, seed=5), fitted[name].sample(16, seed=5))


def test_incompatible_or_foreign_files_are_refused(fitted, tmp_path):
    path = tmp_path / "gmm.pt"
    save_density(fitted["gmm"], path)
    blob = torch.load(path, weights_only=True)
    blob["raekit"]["density_format"] = 99
    save_torch(blob, tmp_path / "future.pt")
    with pytest.raises(RaekitError, match="incompatible raekit version"):
        load_density(tmp_path / "future.pt")
    save_torch({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(RaekitError, match="not a raekit density file"):
        load_density(tmp_path / "other.pt")
    torch.save({"x": np.float64(1.0), "obj": GaussianDensity()}, tmp_path / "pickled.pt")
    with pytest.raises(RaekitError, match="refusing to load"):
        load_density(tmp_path / "pickled.pt")
    with pytest.raises(RaekitError, match="no such file"):
        load_density(tmp_path / "missing.pt")
    state = fitted["gmm"].get_state()
    with pytest.raises(RaekitError, match="not 'kde'"):
        KernelDensityEstimate.from_state(state)


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_bad_input_gives_one_line_errors(name):
    d = small(name)
    with pytest.raises(RaekitError, match="not fitted yet"):
        d.sample(4)
    with pytest.raises(RaekitError, match="not fitted yet"):
        d.score_samples(np.zeros((2, 2)))
    bad = blobs(50, 0)
    bad[7, 1] = np.nan
    bad[9, 0] = np.inf
    with pytest.raises(RaekitError, match="NaN or infinite values in 2 of 50 rows"):
        d.fit(bad)
    with pytest.raises(RaekitError, match="shape"):
        d.fit(np.zeros(10))


def test_bad_sample_sizes_and_dimensions(fitted):
    d = fitted["gmm"]
    for n in (0, -3, 2.5, True):
        with pytest.raises(RaekitError, match="positive integer"):
            d.sample(n)
    with pytest.raises(RaekitError, match="seed"):
        d.sample(3, seed=-1)
    with pytest.raises(RaekitError, match="3 dimensions but the gmm density was fitted on 2"):
        d.score_samples(np.zeros((4, 3)))
    with pytest.raises(RaekitError, match="at least as many codes"):
        GaussianMixtureDensity().fit(np.random.default_rng(0).normal(size=(5, 2)))
    with pytest.raises(RaekitError, match="unknown density 'gmmm'"):
        make_density("gmmm")


def test_singular_covariance_is_regularised_with_a_warning():
    rng = np.random.default_rng(0)
    few = rng.normal(size=(5, 10))  # fewer codes than dimensions
    with pytest.warns(DensityWarning,
                      match=r"singular \(5 codes, rank 4 of 10.*adding .* diagonal"):
        g = GaussianDensity().fit(few)
    assert np.linalg.eigvalsh(g.covariance_)[0] > 0
    assert np.isfinite(g.score_samples(few)).all() and torch.isfinite(g.sample(3, seed=0)).all()
    # codes in a 2-D subspace of 4 dimensions (an autoencoder with dead code units)
    flat = np.concatenate([blobs(500, 0), np.zeros((500, 2))], axis=1)
    with pytest.warns(DensityWarning, match="regularised"):
        m = GaussianMixtureDensity(n_components=4).fit(flat)
    assert np.isfinite(m.score_samples(flat)).all()
    with pytest.warns(DensityWarning, match="constant"):
        KernelDensityEstimate(bandwidth=0.3).fit(flat)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-conditioned fit says nothing
        GaussianDensity().fit(blobs(500, 0))


def test_base_class_dispatches_on_the_state_name(fitted):
    back = Density.from_state(fitted["kde"].get_state())
    assert isinstance(back, KernelDensityEstimate) and back.bandwidth_ == fitted["kde"].bandwidth_

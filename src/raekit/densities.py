"""Ex-post density estimation on autoencoder codes (Ghosh et al. 2020, §4 "Ex-post density
estimation").

The paper's generative mechanism: after training, fit a density q(z) to the codes of the
*training* set, sample it, decode::

    density = DENSITIES["gmm"]().fit(encode_dataset(model, train_loader))
    images = model.decode(density.sample(64, seed=0))

Every estimator follows the scikit-learn contract: ``__init__`` only stores hyperparameters;
``fit(z)`` learns the fitted state (attributes ending in ``_``) and returns ``self``;
``score_samples(z)`` gives each code's log-density; ``sample(n, seed=…)`` draws codes.

=========  ====================================================================================
gaussian   one Gaussian with full covariance (the paper's "N" column for RAE, AE, CV-VAE)
gmm        10-component full-covariance Gaussian mixture, ``max_iter=2000``, ``tol=1e-3``
           (scikit-learn's ``GaussianMixture``; the paper's "GMM" column)
dpgmm      Dirichlet-process mixture (``BayesianGaussianMixture``, 10 components,
           ``weight_concentration_prior=1/10``, ``max_iter=100``: the reference code's
           ``GMM_Dirichlet``, behind most published MNIST and CelebA "GMM" numbers)
prior      N(0, I) (the "N" column for VAE and WAE); fitting only learns the dimension
kde        Gaussian kernel density on standardised codes, bandwidth chosen on held-out codes
two-stage  a small VAE fitted on the standardised codes: the second stage of the 2-stage VAE
           (Dai & Wipf 2019), usable on any autoencoder's codes (beyond the paper)
=========  ====================================================================================

Inputs and outputs: ``fit`` and ``score_samples`` accept codes as a numpy array or a torch
tensor of shape (n_codes, dim) (computation is in float64); ``score_samples`` returns a numpy
float64 array (n_codes,) and ``sample`` returns a float32 torch tensor (n, dim) on the CPU —
move it to the decoder's device. The same ``seed`` gives the same samples.

Singular covariance (fewer codes than dimensions, or codes in a subspace): a small multiple of
the identity is added to the covariance and a :class:`DensityWarning` says so.

Saving without pickle: ``get_state()`` returns a dict of tensors and plain values and
``Density.from_state(state)`` rebuilds the fitted estimator; :func:`save_density` and
:func:`load_density` write and read it atomically with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from .errors import RaekitError
from .files import load_torch, save_torch
from .optim import plateau_scheduler

#: version of the saved state; a file with another number is refused with a clear message
FORMAT = 1
#: relative size of the diagonal added to a singular covariance (times its mean variance)
SINGULAR_JITTER = 1e-6


class DensityWarning(UserWarning):
    """Something about the codes changed how a density was fitted (e.g. regularised)."""


# ----------------------------------------------------------------------------- input checks


def as_codes(z: Any, *, what: str = "codes") -> np.ndarray:
    """Codes (numpy array or torch tensor, (n, d)) as a finite float64 numpy array."""
    if isinstance(z, torch.Tensor):
        z = z.detach().to("cpu", torch.float64).numpy()
    try:
        z = np.asarray(z, dtype=np.float64)
    except (TypeError, ValueError):
        raise RaekitError(f"{what} must be a numeric array or tensor of shape "
                          "(n_codes, dim)") from None
    if z.ndim != 2:
        raise RaekitError(f"{what} must have shape (n_codes, dim), got shape {z.shape}")
    if z.shape[0] < 1 or z.shape[1] < 1:
        raise RaekitError(f"{what} are empty (shape {z.shape})")
    bad = ~np.isfinite(z).all(axis=1)
    if bad.any():
        raise RaekitError(f"{what} hold NaN or infinite values in {int(bad.sum())} of {len(z)} "
                          f"rows (first at row {int(np.flatnonzero(bad)[0])}); "
                          "did training diverge?")
    return z


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise RaekitError(f"the number of samples must be a positive integer, got {n!r}")
    return int(n)


def _check_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise RaekitError(f"seed must be a non-negative integer or None, got {seed!r}")
    return None if seed is None else int(seed)


def regularised_covariance(cov: np.ndarray, n: int, what: str) -> np.ndarray:
    """``cov`` itself when it is well conditioned, else ``cov + ε·I`` with a warning.

    ε = :data:`SINGULAR_JITTER` × the mean variance (1e-6 × … ; at least 1e-12).
    """
    d = cov.shape[0]
    eig = np.linalg.eigvalsh(cov)
    if n > d and eig[0] > 1e-10 * max(eig[-1], 1e-300):
        return cov
    eps = max(SINGULAR_JITTER * float(np.trace(cov)) / d, 1e-12)
    rank = int((eig > 1e-10 * max(eig[-1], 1e-300)).sum())
    warnings.warn(f"{what}: the codes' covariance is singular ({n} codes, rank {rank} of {d} "
                  f"dimensions); regularised by adding {eps:.3g} to its diagonal",
                  DensityWarning, stacklevel=3)
    return cov + eps * np.eye(d)


def standardisation(z: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale of codes ``z``; a constant dimension gets a tiny scale
    (and a warning) instead of a division by zero."""
    std = z.std(axis=0)
    tiny = 1e-6 * max(float(std.max()), 1e-12)
    if (std <= tiny).any():
        warnings.warn(f"{what} density: {int((std <= tiny).sum())} of {z.shape[1]} code "
                      f"dimensions are constant; their scale is set to {tiny:.3g}",
                      DensityWarning, stacklevel=4)
    return z.mean(axis=0), np.maximum(std, tiny)


def _to_state_value(v: Any) -> Any:
    """numpy arrays → tensors, numpy scalars → Python numbers (loadable with weights_only)."""
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def _to_numpy(v: Any) -> Any:
    return v.numpy() if isinstance(v, torch.Tensor) else v


# ----------------------------------------------------------------------------- base class


class Density(BaseEstimator):
    """A density on codes with the scikit-learn contract (see the module docstring).

    Subclasses set ``name``, implement ``_fit(z)``, ``score_samples``, ``_sample(n, seed)`` and
    list their fitted attributes in ``_fitted_attributes`` (numpy arrays or plain values).
    """

    name: str = ""
    _fitted_attributes: tuple[str, ...] = ()
    #: True for a density that is itself an autoencoder of codes (the two-stage VAE): it has
    #: ``reconstruct(z, seed=)``, and a model sampling through it reconstructs through it
    reconstructs: bool = False

    # --- the contract

    def fit(self, z: Any, y: Any = None) -> Density:
        """Fit to codes ``z`` (n_codes, dim); returns ``self``."""
        z = as_codes(z)
        self._check_params()
        self._fit(z)
        self.n_features_in_ = z.shape[1]
        return self

    def score_samples(self, z: Any) -> np.ndarray:
        """Log-density of each code: numpy float64 (n_codes,)."""
        return self._score(self._check_input(z))

    def score(self, z: Any, y: Any = None) -> float:
        """Mean log-density of the codes ``z`` (scikit-learn's ``score``)."""
        return float(np.mean(self.score_samples(z)))

    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """``n`` codes drawn from the density: float32 tensor (n, dim) on the CPU. The same
        ``seed`` gives the same codes; ``None`` draws fresh randomness."""
        self._check_fitted()
        x = self._sample(_check_n(n), _check_seed(seed))  # (n, d) float64
        return torch.from_numpy(np.asarray(x, dtype=np.float32))

    # --- state without pickle

    def get_state(self) -> dict[str, Any]:
        """Hyperparameters and fitted state as tensors and plain values."""
        self._check_fitted()
        fitted = {k: _to_state_value(getattr(self, k)) for k in self._fitted_attributes}
        fitted["n_features_in_"] = int(self.n_features_in_)
        return {"format": FORMAT, "name": self.name,
                "params": {k: _to_state_value(v) for k, v in self.get_params().items()},
                "fitted": fitted}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Density:
        """The fitted estimator described by :meth:`get_state`'s dict. Called on
        :class:`Density` itself, it picks the class by the state's name."""
        if not isinstance(state, dict) or "format" not in state:
            raise RaekitError("not a raekit density state (no format number)")
        if state["format"] != FORMAT:
            raise RaekitError(f"density state format {state['format']!r} was written by an "
                              f"incompatible raekit version (this version reads format {FORMAT})")
        name = state.get("name")
        if cls is Density and name not in DENSITIES:
            raise RaekitError(f"density state names an unknown density {name!r} "
                              f"(this version knows {sorted(DENSITIES)})")
        target = DENSITIES[name] if cls is Density else cls
        if target.name != name:
            raise RaekitError(f"density state is for {name!r}, not {target.name!r}")
        try:
            obj = target(**state["params"])
        except TypeError as e:
            raise RaekitError(f"density state for {name!r} has unknown parameters ({e})") from None
        fitted = {k: _to_numpy(v) for k, v in state["fitted"].items()}
        missing = set(target._fitted_attributes) - set(fitted)
        if missing:
            raise RaekitError(f"density state for {name!r} lacks {', '.join(sorted(missing))}")
        for k, v in fitted.items():
            setattr(obj, k, v)
        try:
            obj._restore()
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError) as e:
            raise RaekitError(f"density state for {name!r} is corrupt: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return obj

    # --- helpers for subclasses

    def _check_params(self) -> None:
        """Raise a :class:`RaekitError` for an out-of-range hyperparameter."""

    def _restore(self) -> None:
        """Rebuild derived objects (e.g. a scikit-learn estimator) after ``from_state``."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise RaekitError(f"the {self.name} density is not fitted yet: call fit(codes) first")

    def _check_input(self, z: Any) -> np.ndarray:
        self._check_fitted()
        z = as_codes(z)
        if z.shape[1] != self.n_features_in_:
            raise RaekitError(f"codes have {z.shape[1]} dimensions but the {self.name} density "
                              f"was fitted on {self.n_features_in_}")
        return z

    def _fit(self, z: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _sample(self, n: int, seed: int | None) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Any) -> Density:
        """The estimator with its defaults taken from a run's config where it has any."""
        return cls()


# ----------------------------------------------------------------------------- estimators


class GaussianDensity(Density):
    """One Gaussian with full covariance: ``mean_`` (d,), ``covariance_`` (d, d) (the maximum
    likelihood estimate, divided by n), regularised and warned about when singular."""

    name = "gaussian"
    _fitted_attributes = ("mean_", "covariance_")

    def _fit(self, z):
        self.mean_ = z.mean(axis=0)
        cov = np.atleast_2d(np.cov(z, rowvar=False, bias=True))
        self.covariance_ = regularised_covariance(cov, len(z), "gaussian density")

    def _score(self, z):
        from scipy.stats import multivariate_normal

        return np.atleast_1d(multivariate_normal(self.mean_, self.covariance_).logpdf(z))

    def _sample(self, n, seed):
        return np.random.default_rng(seed).multivariate_normal(self.mean_, self.covariance_, n)


class StandardNormalPrior(Density):
    """The prior N(0, I); ``fit`` only learns the dimension (and checks the codes)."""

    name = "prior"

    def _fit(self, z):
        pass

    def _score(self, z):
        return -0.5 * (z ** 2).sum(axis=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def _sample(self, n, seed):
        return np.random.default_rng(seed).standard_normal((n, self.n_features_in_))


class GaussianMixtureDensity(Density):
    """A Gaussian mixture fitted with scikit-learn's ``GaussianMixture`` (EM).

    Defaults are the paper's: 10 full-covariance components, ``max_iter=2000``, ``tol=1e-3``;
    ``reg_covar`` and the k-means initialisation are scikit-learn's defaults. Fitted state:
    ``weights_`` (K,), ``means_`` (K, d), ``covariances_`` (K, d, d), ``precisions_cholesky_``.
    If EM meets an ill-defined covariance, ``reg_covar`` is raised tenfold (with a warning)
    until it fits.
    """

    name = "gmm"
    _fitted_attributes = ("weights_", "means_", "covariances_", "precisions_cholesky_",
                          "converged_", "n_iter_", "lower_bound_", "reg_covar_")

    def __init__(self, n_components: int = 10, *, covariance_type: str = "full",
                 max_iter: int = 2000, tol: float = 1e-3, reg_covar: float = 1e-6, n_init: int = 1,
                 init_params: str = "kmeans", random_state: int | None = 0):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state

    def _check_params(self):
        if not (isinstance(self.n_components, (int, np.integer)) and self.n_components >= 1):
            raise RaekitError(f"n_components must be a positive integer, got {self.n_components!r}")
        if self.covariance_type != "full":
            # Only "full" is saved and restored; the paper uses full covariances.
            raise RaekitError(f"covariance_type must be 'full', got {self.covariance_type!r}")

    def _estimator(self, reg_covar: float):
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(self.n_components, covariance_type=self.covariance_type,
                               max_iter=self.max_iter, tol=self.tol, reg_covar=reg_covar,
                               n_init=self.n_init, init_params=self.init_params,
                               random_state=self.random_state)

    def _fit(self, z):
        if len(z) < self.n_components:
            raise RaekitError(f"the {self.name} density has {self.n_components} components and "
                              f"needs at least as many codes, got {len(z)}")
        cov = np.atleast_2d(np.cov(z, rowvar=False, bias=True))
        if len(z) <= z.shape[1] or np.linalg.eigvalsh(cov)[0] <= 1e-10 * np.trace(cov):
            warnings.warn(f"{self.name} density: the codes' covariance is singular ({len(z)} codes "
                          f"in {z.shape[1]} dimensions); each component's covariance is "
                          f"regularised by adding reg_covar={self.reg_covar:g} to its diagonal",
                          DensityWarning, stacklevel=3)
        reg = float(self.reg_covar)
        scale = max(float(np.trace(cov)) / z.shape[1], 1e-12)
        while True:
            try:
                est = self._estimator(reg).fit(z)
                break
            except ValueError as e:  # scikit-learn: "ill-defined empirical covariance"
                if "ill-defined" not in str(e) or reg >= 1e-2 * scale:
                    raise RaekitError(f"{self.name} density could not be fitted: "
                                      f"{str(e).splitlines()[0]}") from None
                reg = max(reg * 10, 1e-12)
                warnings.warn(f"{self.name} density: a component's covariance was singular; "
                              f"refitting with reg_covar={reg:g} added to the diagonal",
                              DensityWarning, stacklevel=3)
        self._take_parameters(est)
        self.reg_covar_ = reg

    def _take_parameters(self, est) -> None:
        self.weights_, self.means_ = est.weights_, est.means_
        self.covariances_, self.precisions_cholesky_ = est.covariances_, est.precisions_cholesky_
        self.converged_, self.n_iter_ = bool(est.converged_), int(est.n_iter_)
        self.lower_bound_ = float(est.lower_bound_)
        self._restore()

    def _restore(self):
        from sklearn.mixture import GaussianMixture

        # A plain GaussianMixture holding the fitted parameters does the scoring and sampling.
        est = GaussianMixture(len(self.weights_), covariance_type="full")
        est.weights_, est.means_ = self.weights_, self.means_
        est.covariances_, est.precisions_cholesky_ = self.covariances_, self.precisions_cholesky_
        est.n_features_in_ = self.means_.shape[1]
        est.converged_, est.n_iter_, est.lower_bound_ = (self.converged_, self.n_iter_,
                                                         self.lower_bound_)
        self.mixture_ = est

    def _score(self, z):
        return self.mixture_.score_samples(z)

    def _sample(self, n, seed):
        est = copy.copy(self.mixture_)
        rng = np.random.RandomState(seed)
        est.random_state = rng
        x, _ = est.sample(n)  # grouped by component: shuffle so that a grid shows a mix
        return x[rng.permutation(n)]


class DirichletProcessMixtureDensity(GaussianMixtureDensity):
    """A Dirichlet-process Gaussian mixture (scikit-learn's ``BayesianGaussianMixture``,
    variational inference) with the reference code's settings (``GMM_Dirichlet`` in
    ``my_utility/estimate_density_and_sample.py``): 10 full-covariance components,
    ``weight_concentration_prior = 1/n_components`` (None: that), and scikit-learn's defaults
    otherwise — ``max_iter=100``, ``tol=1e-3``, ``reg_covar=1e-6``, k-means initialisation.
    The published "GMM" FIDs of most MNIST and CelebA models come from this estimator.

    The fitted density is the mixture at the variational posterior's expected weights, means
    and covariances (``weights_``, ``means_``, ``covariances_``): a proper density that
    ``sample`` draws from, as scikit-learn's ``sample`` does. (scikit-learn's own
    ``BayesianGaussianMixture.score_samples`` is an expected log-likelihood under the posterior,
    not the density the samples come from.) ``random_state`` is fixed (0) for repeatable fits;
    the reference left it unset.
    """

    name = "dpgmm"

    def __init__(self, n_components: int = 10, *, weight_concentration_prior: float | None = None,
                 covariance_type: str = "full", max_iter: int = 100, tol: float = 1e-3,
                 reg_covar: float = 1e-6, n_init: int = 1, init_params: str = "kmeans",
                 random_state: int | None = 0):
        super().__init__(n_components, covariance_type=covariance_type, max_iter=max_iter,
                         tol=tol, reg_covar=reg_covar, n_init=n_init, init_params=init_params,
                         random_state=random_state)
        self.weight_concentration_prior = weight_concentration_prior

    def _estimator(self, reg_covar):
        from sklearn.mixture import BayesianGaussianMixture

        return BayesianGaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type,
            weight_concentration_prior_type="dirichlet_process",
            weight_concentration_prior=(1.0 / self.n_components
                                        if self.weight_concentration_prior is None
                                        else self.weight_concentration_prior),
            max_iter=self.max_iter,
            tol=self.tol, reg_covar=reg_covar, n_init=self.n_init, init_params=self.init_params,
            random_state=self.random_state)


class KernelDensityEstimate(Density):
    """A kernel density estimate (scikit-learn's ``KernelDensity``) on standardised codes.

    Codes are standardised per dimension (``mean_``, ``scale_``; the log-density includes the
    Jacobian −Σ log scale) so that one isotropic bandwidth suits codes of any scale. With
    ``bandwidth=None`` it is chosen on held-out codes: a fraction ``holdout`` of (at most
    ``max_selection``) codes is held out and the bandwidth among ``n_bandwidths`` log-spaced
    values around Scott's rule with the best held-out log-likelihood wins (scikit-learn's
    ``GridSearchCV`` with one ``ShuffleSplit``). The KDE then uses all codes.
    """

    name = "kde"
    _fitted_attributes = ("mean_", "scale_", "bandwidth_", "codes_")
    KERNELS = ("gaussian", "tophat")  # the kernels scikit-learn can sample

    def __init__(self, bandwidth: float | None = None, *, kernel: str = "gaussian",
                 n_bandwidths: int = 20, holdout: float = 0.2, max_selection: int = 5000,
                 random_state: int | None = 0):
        self.bandwidth = bandwidth
        self.kernel = kernel
        self.n_bandwidths = n_bandwidths
        self.holdout = holdout
        self.max_selection = max_selection
        self.random_state = random_state

    def _check_params(self):
        if self.kernel not in self.KERNELS:
            raise RaekitError(f"kernel must be one of {self.KERNELS}, got {self.kernel!r}")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise RaekitError(f"bandwidth must be > 0 or None (chosen on held-out codes), "
                              f"got {self.bandwidth!r}")
        if not 0 < self.holdout < 1:
            raise RaekitError(f"holdout must be a fraction in (0, 1), got {self.holdout!r}")

    def _fit(self, z):
        self.mean_, self.scale_ = standardisation(z, "kde")
        u = (z - self.mean_) / self.scale_
        self.bandwidth_ = float(self.bandwidth) if self.bandwidth is not None else self._select(u)
        self.codes_ = u.astype(np.float32)  # stored (and used) in float32: half the file size
        self._restore()

    def _select(self, u: np.ndarray) -> float:
        from sklearn.model_selection import GridSearchCV, ShuffleSplit
        from sklearn.neighbors import KernelDensity

        n, d = u.shape
        if n < 4:
            raise RaekitError(f"kde density needs at least 4 codes to choose a bandwidth on "
                              f"held-out codes, got {n} (or pass bandwidth=…)")
        rng = np.random.RandomState(self.random_state)
        if n > self.max_selection:
            u = u[rng.choice(n, self.max_selection, replace=False)]
        scott = len(u) ** (-1.0 / (d + 4))
        grid = scott * np.logspace(-2, 0.5, self.n_bandwidths)
        search = GridSearchCV(KernelDensity(kernel=self.kernel), {"bandwidth": grid},
                              cv=ShuffleSplit(1, test_size=self.holdout, random_state=rng))
        search.fit(u)
        return float(search.best_params_["bandwidth"])

    def _restore(self):
        from sklearn.neighbors import KernelDensity

        self.kde_ = KernelDensity(bandwidth=self.bandwidth_, kernel=self.kernel).fit(
            self.codes_.astype(np.float64))

    def _score(self, z):
        return self.kde_.score_samples((z - self.mean_) / self.scale_) - np.log(self.scale_).sum()

    def _sample(self, n, seed):
        return self.kde_.sample(n, random_state=seed) * self.scale_ + self.mean_


def _mean_over_dimensions(u_hat: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Keras' ``mse``: the squared error averaged over the code dimensions (and the batch)."""
    return (u_hat - u).pow(2).mean()


def _sum_over_dimensions(u_hat: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The squared error summed over the code dimensions, averaged over the batch."""
    return (u_hat - u).pow(2).sum(dim=1).mean()


#: the second stage's reconstruction term by name: "mean" is the reference code's
SECOND_STAGE_RECONSTRUCTIONS = {"mean": _mean_over_dimensions, "sum": _sum_over_dimensions}


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


class TwoStageVAEDensity(Density):
    """A second VAE fitted on the (standardised) codes — the 2-stage VAE's second stage
    (Dai & Wipf 2019), here usable on any autoencoder's codes.

    Encoder and decoder are MLPs with ``depth`` hidden ReLU layers of ``hidden`` units (default
    1024-1024); the loss is a reconstruction term plus ``kl_weight``·KL (:class:`raekit.vae.VAE`),
    trained with Adam (``lr``) for ``epochs`` in batches of ``batch_size``. Sampling decodes
    u = D(ε), ε ~ N(0, I), and undoes the standardisation.

    The reference code's second stage (``VaeModelWrapper`` in
    ``my_utility/estimate_density_and_sample.py``) is ``reconstruction="mean"`` (Keras' ``mse``:
    the squared error averaged over the code dimensions), ``lr=1e-4``, ``val_fraction=0.1``
    (Keras' ``validation_split``: the *last* 10 % of the codes, in their order, are held out and
    never trained on; the standardisation uses all of them) and ``plateau_patience=3`` (Keras'
    ReduceLROnPlateau on the validation loss: factor 0.5, an absolute ``min_delta`` of 1e-4);
    the last epoch's weights are kept (``history_``, not stored, has each epoch's training and
    validation loss and the rate after it). The paper presets of the 2-stage VAE set exactly
    that. The defaults here are raekit's quicker second stage: the squared error summed over the
    code dimensions, ``lr=1e-3``, every code trained on, a constant rate.

    ``score_samples``: the VAE defines p(u) = ∫ N(u; D(ε), σ²I) N(ε; 0, I) dε. The training
    loss fixes no σ² that the networks were fitted to be good for (it would be kl_weight/2 for
    the summed loss, dim·kl_weight/2 for the mean, far too small for a briefly trained VAE), so
    after training σ² (``noise_var_``) is set to its maximum-ELBO value for the trained
    networks: the mean squared error per dimension of the training codes' reconstructions
    through sampled ε ~ q(ε|u). The log-density is then
    estimated by importance sampling with ``n_importance`` draws from q(ε|u) (a lower bound
    that tightens as it grows), including the standardisation's Jacobian.
    """

    name = "two-stage"
    _fitted_attributes = ("mean_", "scale_", "state_dict_", "loss_", "noise_var_")
    reconstructs = True

    def __init__(self, *, hidden: int = 1024, depth: int = 2, latent_dim: int | None = None,
                 kl_weight: float = 1.5e-3, epochs: int = 100, batch_size: int = 64,
                 lr: float = 1e-3, reconstruction: str = "sum", val_fraction: float = 0.0,
                 plateau_patience: int | None = None, plateau_factor: float = 0.5,
                 plateau_min_delta: float = 1e-4, n_importance: int = 100, device: str = "auto",
                 random_state: int = 0, progress: bool = False):
        self.hidden = hidden
        self.depth = depth
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.reconstruction = reconstruction
        self.val_fraction = val_fraction
        self.plateau_patience = plateau_patience
        self.plateau_factor = plateau_factor
        self.plateau_min_delta = plateau_min_delta
        self.n_importance = n_importance
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @classmethod
    def from_config(cls, config):
        optional = {key: getattr(config, f"stage2_{key}") for key in
                    ("lr", "reconstruction", "val_fraction", "plateau_patience")
                    if hasattr(config, f"stage2_{key}")}
        return cls(hidden=config.stage2_hidden, kl_weight=config.stage2_kl_weight,
                   epochs=config.stage2_epochs, batch_size=config.stage2_batch_size,
                   progress=getattr(config, "progress", False), **optional)

    def _check_params(self):
        for key in ("hidden", "depth", "epochs", "batch_size", "n_importance"):
            v = getattr(self, key)
            if not (isinstance(v, (int, np.integer)) and v >= 1):
                raise RaekitError(f"{key} must be a positive integer, got {v!r}")
        if self.latent_dim is not None and not self.latent_dim >= 1:
            raise RaekitError(f"latent_dim must be ≥ 1 or None, got {self.latent_dim!r}")
        if not (self.kl_weight > 0 and math.isfinite(self.kl_weight)):
            raise RaekitError(f"kl_weight must be a finite number > 0, got {self.kl_weight!r}")
        if not self.lr > 0:
            raise RaekitError(f"lr must be > 0, got {self.lr!r}")
        if self.reconstruction not in SECOND_STAGE_RECONSTRUCTIONS:
            raise RaekitError(f"reconstruction must be one of "
                              f"{', '.join(SECOND_STAGE_RECONSTRUCTIONS)}, "
                              f"got {self.reconstruction!r}")
        if not 0 <= self.val_fraction < 1:
            raise RaekitError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.plateau_patience is not None:
            if not (isinstance(self.plateau_patience, (int, np.integer))
                    and self.plateau_patience >= 1):
                raise RaekitError(f"plateau_patience must be a positive integer or None, "
                                  f"got {self.plateau_patience!r}")
            if not self.val_fraction > 0:
                raise RaekitError("plateau_patience needs a validation loss: set val_fraction "
                                  "> 0 (the reference's is 0.1)")

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except RuntimeError:
            raise RaekitError(f"device must be 'auto', 'cpu', 'cuda' or similar, "
                              f"got {self.device!r}") from None

    def _build(self, dim: int) -> nn.Module:
        from .models.vae import VAE

        k = self.latent_dim or dim
        enc = _mlp([dim] + [self.hidden] * self.depth + [2 * k])
        dec = _mlp([k] + [self.hidden] * self.depth + [dim])
        return VAE(enc, dec, kl_weight=self.kl_weight,
                   reconstruction_loss=SECOND_STAGE_RECONSTRUCTIONS[self.reconstruction])

    def split(self, n: int) -> int:
        """How many of ``n`` codes are trained on; the rest, the last ones, validate (Keras'
        ``validation_split``: ``int(n · (1 − val_fraction))``)."""
        n_train = int(n * (1.0 - self.val_fraction))
        if self.val_fraction > 0 and not 1 <= n_train < n:
            raise RaekitError(f"two-stage density: val_fraction={self.val_fraction} of {n} codes "
                              f"leaves {n_train} to train on and {n - n_train} to validate")
        return n_train

    def _fit(self, z):
        from tqdm.auto import tqdm

        if len(z) < 2:
            raise RaekitError(f"two-stage density needs at least 2 codes, got {len(z)}")
        self.mean_, self.scale_ = standardisation(z, "two-stage")
        device = self._device()
        u_all = torch.as_tensor((z - self.mean_) / self.scale_, dtype=torch.float32,
                                device=device)
        n_train = self.split(len(u_all))
        u, u_val = u_all[:n_train], u_all[n_train:]  # (n_train, dim), (n − n_train, dim)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.random_state)
            vae = self._build(z.shape[1]).to(device)
            opt = torch.optim.Adam(vae.parameters(), lr=self.lr)
            plateau = (plateau_scheduler(opt, factor=self.plateau_factor,
                                         patience=self.plateau_patience,
                                         min_delta=self.plateau_min_delta, mode="keras")
                       if self.plateau_patience is not None else None)
            losses, val_losses, rates = [], [], []
            bar = tqdm(range(self.epochs), desc="two-stage VAE", disable=not self.progress,
                       unit="epoch")
            for _ in bar:
                total = 0.0
                for idx in torch.randperm(len(u), device=device).split(self.batch_size):
                    loss = vae(u[idx])["loss"]  # reconstruction + kl_weight·KL, batch mean
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += loss.item() * len(idx)
                losses.append(total / len(u))
                if len(u_val):
                    with torch.no_grad():  # sampled z, as Keras' val_loss
                        val = sum(vae(ub)["loss"].item() * len(ub)
                                  for ub in u_val.split(self.batch_size)) / len(u_val)
                    val_losses.append(val)
                    if plateau is not None:
                        plateau.step(val)
                rates.append(opt.param_groups[0]["lr"])  # in force for the next epoch
                bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if not math.isfinite(losses[-1]):
                raise RaekitError(f"two-stage density: the VAE's loss became {losses[-1]}; "
                                  "lower lr")
            self._vae = vae.eval()
            self.noise_var_ = self._noise_variance(u)  # seeded too: inside fork_rng
        self.loss_ = float(losses[-1])
        # per epoch: training loss, validation loss, the rate after the epoch (not stored)
        self.history_ = {"loss": losses, "val_loss": val_losses, "lr": rates}
        self.state_dict_ = {k: v.detach().cpu().numpy() for k, v in vae.state_dict().items()}

    @torch.no_grad()
    def _noise_variance(self, u: torch.Tensor) -> float:
        """σ² maximising the ELBO for the trained networks: E_q ‖u − D(ε)‖² / dim."""
        from .models.vae import reparameterize

        sq = sum(float((ub - self._vae.decode(reparameterize(*self._vae.posterior(ub))))
                       .pow(2).sum()) for ub in u.split(4096))
        return max(sq / u.numel(), 1e-8)

    def get_state(self):
        state = super().get_state()
        state["fitted"]["state_dict_"] = {k: torch.from_numpy(np.ascontiguousarray(v))
                                          for k, v in self.state_dict_.items()}
        return state

    def _restore(self):
        self.state_dict_ = {k: _to_numpy(v) for k, v in self.state_dict_.items()}
        vae = self._build(len(self.mean_))
        vae.load_state_dict({k: torch.from_numpy(np.asarray(v))
                             for k, v in self.state_dict_.items()})
        self._vae = vae.to(self._device()).eval()

    @torch.no_grad()
    def _score(self, z):

        vae, device = self._vae, next(self._vae.parameters()).device
        u = torch.as_tensor((z - self.mean_) / self.scale_, dtype=torch.float32, device=device)
        var = self.noise_var_  # decoder noise σ²
        g = torch.Generator(device=device).manual_seed(self.random_state)
        out = []
        k = self.n_importance
        for ub in u.split(max(1, 4096 // k)):
            mu, log_sigma = vae.posterior(ub)  # (B, k_lat) each
            eps = torch.randn((k, *mu.shape), generator=g, device=device)  # (K, B, k_lat)
            e = mu + log_sigma.exp() * eps
            x = vae.decode(e.flatten(0, 1)).view(k, len(ub), -1)  # (K, B, dim)
            log_lik = (-0.5 * (ub - x).pow(2).sum(-1) / var
                       - 0.5 * ub.shape[1] * math.log(2 * math.pi * var))
            log_prior = -0.5 * e.pow(2).sum(-1) - 0.5 * e.shape[-1] * math.log(2 * math.pi)
            log_q = (-0.5 * eps.pow(2).sum(-1) - log_sigma.sum(-1)
                     - 0.5 * e.shape[-1] * math.log(2 * math.pi))
            out.append((log_lik + log_prior - log_q).double().cpu().numpy())
        w = np.concatenate(out, axis=1)  # (K, n)
        return (torch.logsumexp(torch.from_numpy(w), dim=0).numpy() - math.log(k)
                - np.log(self.scale_).sum())

    @torch.no_grad()
    def reconstruct(self, z: Any, *, seed: int | None = None) -> torch.Tensor:
        """Codes passed through the second VAE as the reference code's ``predict_2stage`` does:
        standardised, encoded, a draw u = μ + σ·ε decoded, the standardisation undone.
        ``z`` (n, dim) → float32 tensor (n, dim) on the CPU."""
        from .models.vae import reparameterize

        z = self._check_input(z)
        vae, device = self._vae, next(self._vae.parameters()).device
        g = torch.Generator(device=device).manual_seed(
            seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0]))
        u = torch.as_tensor((z - self.mean_) / self.scale_, dtype=torch.float32, device=device)
        out = torch.cat([vae.decode(reparameterize(*vae.posterior(ub), generator=g))
                         for ub in u.split(4096)])
        return torch.from_numpy((out.double().cpu().numpy() * self.scale_ + self.mean_)
                                .astype(np.float32))

    @torch.no_grad()
    def _sample(self, n, seed):
        vae, device = self._vae, next(self._vae.parameters()).device
        g = torch.Generator().manual_seed(seed if seed is not None else
                                          int(np.random.SeedSequence().generate_state(1)[0]))
        k = vae.decoder[0].in_features
        e = torch.randn((n, k), generator=g).to(device)
        u = vae.decode(e).double().cpu().numpy()
        return u * self.scale_ + self.mean_


#: every density by name (the command line's ``--density`` choices)
DENSITIES: dict[str, type[Density]] = {
    "gaussian": GaussianDensity,
    "gmm": GaussianMixtureDensity,
    "dpgmm": DirichletProcessMixtureDensity,
    "prior": StandardNormalPrior,
    "kde": KernelDensityEstimate,
    "two-stage": TwoStageVAEDensity,
}


def make_density(name: str, **params) -> Density:
    """A new (unfitted) density by name, e.g. ``make_density("gmm", n_components=5)``."""
    if name not in DENSITIES:
        raise RaekitError(f"unknown density {name!r}; choose one of {sorted(DENSITIES)}")
    try:
        return DENSITIES[name](**params)
    except TypeError as e:
        raise RaekitError(f"bad parameters for the {name} density: {e}") from None


# ----------------------------------------------------------------------------- files


def save_density(density: Density, path: str | os.PathLike, **meta: Any) -> None:
    """Write a fitted density to ``path`` (atomically; tensors and plain values only).
    ``meta`` (plain values) is stored beside it, e.g. what codes it was fitted on."""
    from . import __version__

    save_torch({"raekit": {"version": __version__, "density_format": FORMAT},
                "density": density.get_state(), "meta": meta}, path)


def load_density(path: str | os.PathLike, *, return_meta: bool = False):
    """Read a density written by :func:`save_density` (``torch.load(weights_only=True)``);
    with ``return_meta``, return ``(density, meta)``."""
    blob = load_torch(path)
    meta = blob.get("raekit", {}) if isinstance(blob, dict) else {}
    if not isinstance(meta, dict) or "density_format" not in meta or "density" not in blob:
        raise RaekitError(f"{path} is not a raekit density file")
    if meta["density_format"] != FORMAT:
        raise RaekitError(f"{path} was written by an incompatible raekit version "
                          f"(density format {meta['density_format']!r}, written by raekit "
                          f"{meta.get('version', '?')}; this version reads format {FORMAT}); "
                          f"refit it with raekit fit-density --force")
    density = Density.from_state(blob["density"])
    return (density, blob.get("meta", {})) if return_meta else density

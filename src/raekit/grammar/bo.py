"""Bayesian optimisation in a latent space (Kusner et al. 2017 §4.2), as the reference code
(mkusner/grammarVAE, ``*/simulation*/*/run_bo.py``) runs it, with BoTorch's q-LogEI as an option.

Per seed: the codes X (n, d) of *all* strings with their scores y are split at random 90/10
(the 10 % only measure the GP: test RMSE and log-likelihood); each of ``rounds`` rounds fits a GP
on the 90 % plus every point chosen so far, chooses ``batch`` points in the box of those codes,
evaluates them (grammar models: decode each point several times, keep the most frequent valid
result, score it) and adds them. Two acquisitions (:class:`BOConfig` ``acquisition``):

* ``reference`` — the reference's sparse GP (500 inducing points, stochastic EP, Adam lr 5e-4,
  50 epochs, minibatch 5,000) and its batch: the first point maximises analytic EI against the
  minimum of the GP mean over the box, the others keep the mean and shrink the variance
  (Kriging believer); :mod:`raekit.grammar.sparse_gp` says how, and where it differs.
* ``qlogei`` — BoTorch: an exact GP (n ≤ ``exact_limit``) or a variational sparse GP, then the
  batch log-EI ``qLogEI`` optimised greedily (one point at a time, conditioning on the earlier).

Scores are *maximised* here (expressions: −log(1 + MSE)); the reference GP minimises −score.
:func:`report` summarises the seeds as ``get_final_results.py`` does.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from ..errors import RaekitError
from .models import one_thread
from .sparse_gp import SparseGP, batched_greedy_ei

ACQUISITIONS = ("reference", "qlogei")
FEATURES = ("all", "training")


def _botorch():
    """BoTorch and GPyTorch, imported for the ``qlogei`` acquisition only."""
    with warnings.catch_warnings():
        # linear_operator (under gpytorch) applies torch.jit.script at import, which torch now
        # warns about; nothing for a raekit user to act on.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=FutureWarning)
        import botorch.acquisition.logei
        import botorch.fit
        import botorch.models
        import botorch.models.transforms
        import botorch.optim
        import gpytorch.mlls
    return botorch, gpytorch


@dataclass
class BOConfig:
    """Settings of latent BO; defaults are the reference's except ``seeds`` (it runs 1…10)."""
    acquisition: str = "reference"  # "reference" (sparse GP, EI, Kriging believer) or "qlogei"
    rounds: int = 5
    batch: int = 50  # points per round
    seeds: tuple[int, ...] = (0,)
    decodes: Union[int, None] = None  # decodings per point; default 25 expressions, 500 molecules
    features: str = "all"  # "all": every string of the run's data file; "training": codes.pt
    pool: Union[int, None] = None  # use `pool` of those strings (a fixed random subset); None: all
    test_fraction: float = 0.1  # held out of the GP, for its test RMSE / log-likelihood
    invalid_value: Union[float, None] = None  # score of an invalid point; None: the worst in y
    # the reference's sparse GP and batch
    inducing: int = 500
    gp_epochs: int = 50
    gp_minibatch: int = 5000
    gp_lr: float = 5e-4
    grid: int = 10000  # random points in the box; the best one starts L-BFGS-B
    lbfgs_iterations: int = 150
    # qlogei
    exact_limit: int = 2000  # an exact GP up to this many points, else a variational one
    qlogei_epochs: int = 20
    num_restarts: int = 4
    raw_samples: int = 128
    device: str = "cpu"  # where the reference's sparse GP runs ("cuda" on a GPU)

    def validate(self) -> BOConfig:
        checks = [
            ("acquisition", self.acquisition in ACQUISITIONS, f"one of {', '.join(ACQUISITIONS)}"),
            ("features", self.features in FEATURES, f"one of {', '.join(FEATURES)}"),
            ("seeds", len(self.seeds) >= 1, "at least one seed"),
            ("test_fraction", 0 <= self.test_fraction < 1, "in [0, 1)"),
            ("gp_lr", self.gp_lr > 0, "> 0"),
        ] + [(k, getattr(self, k) >= 1, "≥ 1") for k in (
            "rounds", "batch", "inducing", "gp_epochs", "gp_minibatch", "grid",
            "lbfgs_iterations", "exact_limit", "qlogei_epochs", "num_restarts", "raw_samples")
        ] + [(k, getattr(self, k) is None or getattr(self, k) >= 1, "≥ 1 or none")
             for k in ("decodes", "pool")]
        try:
            torch.device(self.device)
        except RuntimeError:
            checks.append(("device", False, "a torch device such as cpu or cuda"))
        for key, ok, expected in checks:
            if not ok:
                raise RaekitError(f"{key} must be {expected}, got {getattr(self, key)!r}")
        return self

# evaluate(points (q, d)) → one (label, score) per point; label None = invalid point
Evaluate = Callable[[torch.Tensor], list[tuple[object, float | None]]]


def fit_gp(X: torch.Tensor, y: torch.Tensor, *, inducing: int = 500, exact_limit: int = 2000,
           epochs: int = 20, seed: int = 0):
    """A GP on (X, y): exact when n ≤ ``exact_limit``, else a sparse variational GP with
    ``inducing`` inducing points, fitted on minibatches. Inputs are normalised to the unit cube
    and y standardised inside the model (BoTorch transforms)."""
    botorch, gpytorch = _botorch()
    SingleTaskGP, SingleTaskVariationalGP = (botorch.models.SingleTaskGP,
                                             botorch.models.SingleTaskVariationalGP)
    Normalize, Standardize = (botorch.models.transforms.Normalize,
                              botorch.models.transforms.Standardize)
    fit_gpytorch_mll = botorch.fit.fit_gpytorch_mll
    torch.manual_seed(seed)
    X, y = X.double(), y.double().reshape(-1, 1)
    d = X.shape[1]
    if len(X) <= exact_limit:
        gp = SingleTaskGP(X, y, input_transform=Normalize(d), outcome_transform=Standardize(1))
        fit_gpytorch_mll(gpytorch.mlls.ExactMarginalLogLikelihood(gp.likelihood, gp))
        return gp
    lo, hi = X.min(0).values, X.max(0).values
    Xn = (X - lo) / (hi - lo).clamp_min(1e-9)
    mean, std = y.mean(), y.std().clamp_min(1e-9)
    gp = SingleTaskVariationalGP(Xn, (y - mean) / std, inducing_points=min(inducing, len(X)))
    mll = gpytorch.mlls.VariationalELBO(gp.likelihood, gp.model, num_data=len(X))
    loader = DataLoader(TensorDataset(Xn, ((y - mean) / std).squeeze(-1)), batch_size=1000,
                        shuffle=True)
    steps = epochs * math.ceil(len(X) / 1000)
    fit_gpytorch_mll(mll, data_loader=loader, optimizer_kwargs={"step_limit": steps})
    return _Rescaled(gp, lo, hi, mean, std)


class _Rescaled(torch.nn.Module):
    """A variational GP fitted on normalised inputs and standardised targets, queried in the
    original units (BoTorch's transforms are not all supported by its variational model)."""

    def __init__(self, gp, lo, hi, mean, std):
        super().__init__()
        self.gp, self.lo, self.hi, self.mean, self.std = gp, lo, hi, mean, std
        self.num_outputs = 1

    def posterior(self, X, **kw):
        from botorch.posteriors.transformed import TransformedPosterior

        post = self.gp.posterior((X - self.lo) / (self.hi - self.lo).clamp_min(1e-9), **kw)
        m, s = self.mean, self.std
        return TransformedPosterior(post, sample_transform=lambda t: t * s + m,
                                    mean_transform=lambda mu, var: mu * s + m,
                                    variance_transform=lambda mu, var: var * s * s)


def propose(model, best_f: float, bounds: torch.Tensor, q: int, *, num_restarts: int = 4,
            raw_samples: int = 128, seed: int = 0) -> torch.Tensor:
    """``q`` points maximising batch (log) expected improvement over ``best_f``, chosen
    greedily one at a time. bounds: (2, d). Returns (q, d)."""
    botorch, _ = _botorch()
    acq = botorch.acquisition.logei.qLogExpectedImprovement(model, best_f=best_f)
    with one_thread():  # many small restarts: threads only add synchronisation
        X, _ = botorch.optim.optimize_acqf(acq, bounds=bounds.double(), q=q,
                                           num_restarts=num_restarts, raw_samples=raw_samples,
                                           sequential=True, options={"seed": seed, "maxiter": 100})
    return X.detach()


@dataclass
class BOResult:
    """Every evaluated point of one seed, round by round. ``scores`` are the values the GP saw
    (an invalid point's is the fill value); ``labels`` None marks an invalid point."""
    labels: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    rounds: list = field(default_factory=list)  # round of each point
    round_seconds: list = field(default_factory=list)
    test_rmse: list = field(default_factory=list)  # of the GP on the held-out 10 %, per round
    test_ll: list = field(default_factory=list)  # mean predictive log-likelihood, per round

    @property
    def valid(self) -> list[bool]:
        return [lab is not None for lab in self.labels]

    def points(self) -> list[tuple[object, float]]:
        return list(zip(self.labels, self.scores))

    def summary(self, top: int = 3) -> dict:
        """This seed's share of valid points, its best, its average (:func:`report`) and its
        ``top`` best distinct valid points."""
        best: dict = {}
        for lab, s in sorted(((lab, s) for lab, s in self.points() if lab is not None),
                             key=lambda p: -p[1]):
            best.setdefault(lab, s)
            if len(best) == top:
                break
        seed = report([self.points()])["seeds"][0]
        return {**seed, "best": [{"label": str(k), "score": v} for k, v in best.items()],
                "round_seconds": self.round_seconds, "test_rmse": self.test_rmse,
                "test_ll": self.test_ll}


def report(runs: Sequence[Sequence[tuple[object, float]]], top: int = 3) -> dict:
    """The reference's ``get_final_results.py``: for each seed (a list of (label, score) of all
    its evaluated points, label None = invalid, scores higher-is-better with invalid points at
    the fill value) the share of valid points, its best score (and label) and its average —
    the mean of the scores better than the seed's worst, which leaves out the invalid points'
    fill value (and, in a seed without invalid points, its worst points); then the means over
    the seeds, their standard errors, and the ``top`` best *distinct* values among the seeds'
    bests."""
    seeds = []
    for points in runs:
        if not points:
            raise RaekitError("a seed without evaluated points cannot be reported")
        scores = np.array([float(s) for _, s in points])
        i = int(scores.argmax())
        kept = scores[scores > scores.min()]
        seeds.append({"points": len(points),
                      "valid_share": sum(lab is not None for lab, _ in points) / len(points),
                      "best_score": float(scores[i]),
                      "best_label": None if points[i][0] is None else str(points[i][0]),
                      "mean_score": float(kept.mean()) if len(kept) else None})
    out: dict = {"seeds": seeds}
    for key in ("valid_share", "best_score", "mean_score"):
        values = np.array([s[key] for s in seeds if s[key] is not None])
        out[key] = float(values.mean()) if len(values) else None
        out[key + "_se"] = float(values.std() / math.sqrt(len(values))) if len(values) else None
    best: dict[float, str | None] = {}
    for s in sorted(seeds, key=lambda s: -s["best_score"]):
        best.setdefault(s["best_score"], s["best_label"])
    out["best"] = [{"score": v, "label": lab} for v, lab in list(best.items())[:top]]
    return out


def optimize(X: torch.Tensor, y: torch.Tensor, evaluate: Evaluate, config: BOConfig | None = None,
             *, seed: int = 0, bounds: torch.Tensor | None = None, progress: bool = True,
             **settings) -> BOResult:
    """One seed of batch BO (module docstring) from codes X (n, d) with scores y (n,);
    ``settings`` override fields of ``config``. ``bounds`` (2, d) fixes the box (default: the box
    of the GP's training codes, each round, as the reference)."""
    cfg = dataclasses.replace(config or BOConfig(), **settings).validate()
    if X.ndim != 2 or len(X) != len(y) or len(X) < 2:
        raise RaekitError(f"BO needs codes (n ≥ 2, d) and n scores, got {tuple(X.shape)} and "
                          f"{tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise RaekitError("BO's initial scores must be finite numbers")
    X, y = X.double(), y.double().flatten()
    fill = float(y.min()) if cfg.invalid_value is None else float(cfg.invalid_value)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_train = max(2, int(np.round((1 - cfg.test_fraction) * len(X))))
    X_train, y_train = X[order[:n_train]], y[order[:n_train]]
    X_test, y_test = X[order[n_train:]], y[order[n_train:]]
    result = BOResult()
    for r in tqdm(range(cfg.rounds), desc="BO rounds", disable=not progress):
        t0 = time.perf_counter()
        round_seed = 1000 * seed + r
        box = (torch.stack([X_train.min(0).values, X_train.max(0).values]) if bounds is None
               else bounds.double())
        if cfg.acquisition == "reference":
            dev = torch.device(cfg.device)
            gp = SparseGP(cfg.inducing).fit(X_train.to(dev), -y_train.to(dev),
                                            epochs=cfg.gp_epochs, minibatch=cfg.gp_minibatch,
                                            lr=cfg.gp_lr, seed=round_seed)
            if len(X_test):
                with torch.no_grad():
                    mean, var = gp.predict(X_test.to(dev))
                err = -y_test.to(dev) - mean
                result.test_rmse.append(float(err.pow(2).mean().sqrt()))
                result.test_ll.append(float((-0.5 * torch.log(2 * math.pi * var)
                                             - 0.5 * err ** 2 / var).mean()))
            points = batched_greedy_ei(gp, cfg.batch, box[0].to(dev), box[1].to(dev),
                                       grid_size=cfg.grid, maxiter=cfg.lbfgs_iterations,
                                       seed=round_seed).cpu()
        else:
            gp = fit_gp(X_train, y_train, inducing=cfg.inducing, exact_limit=cfg.exact_limit,
                        epochs=cfg.qlogei_epochs, seed=round_seed)
            points = propose(gp, float(y_train.max()), box, cfg.batch,
                             num_restarts=cfg.num_restarts, raw_samples=cfg.raw_samples,
                             seed=round_seed)
        evaluated = evaluate(points.float())
        new_y = torch.tensor([fill if s is None or lab is None else float(s)
                              for lab, s in evaluated], dtype=torch.double)
        X_train, y_train = torch.cat([X_train, points.double()]), torch.cat([y_train, new_y])
        for (lab, s), v in zip(evaluated, new_y.tolist()):
            result.labels.append(None if s is None else lab)
            result.scores.append(v)
            result.rounds.append(r)
        result.round_seconds.append(time.perf_counter() - t0)
    return result


def bo_strings(run, features: str = "all", *,
               progress: bool = True) -> tuple[list[str], torch.Tensor]:
    """The strings BO starts from, and their codes (N, d), of a :class:`GrammarRun`: ``all`` —
    every string of the run's data file (its first ``limit``) that the codec can encode, as the
    reference encodes its whole data set, held-out strings included; ``training`` — the training
    strings whose codes ``train`` saved (``code_pool``)."""
    if features == "training":
        return run.training_codes()
    if features != "all":
        raise RaekitError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
    from .data import default_path, encode_all, select_strings
    from .metrics import encode_strings

    cfg = run.config
    strings = select_strings(cfg.data_path or default_path(cfg.data), cfg.limit, cfg.order)
    kept = encode_all(run.codec, strings, progress=progress).strings
    return kept, encode_strings(run.model, run.codec, kept)


def latent_bo(model, codec, data: str, strings: list[str], codes: torch.Tensor,
              config: BOConfig | None = None, *, progress: bool = True, **settings) -> dict:
    """BO in a grammar model's latent space, as in the Grammar VAE paper: the codes of the
    strings (``pool`` of them drawn at random, default all) with their scores start the GP;
    each proposed code is decoded ``decodes`` times (default 25 for expressions, 500 for
    molecules) and its most frequent valid decoding scored. Returns the settings,
    :func:`report` over the seeds, and each seed's :meth:`BOResult.summary`."""
    from .metrics import decode_majority
    from .scores import score

    cfg = dataclasses.replace(config or BOConfig(), **settings).validate()
    decodes = cfg.decodes or (25 if data == "expressions" else 500)
    if cfg.pool is not None and cfg.pool < len(strings):
        # a fixed random subset (the same for every seed): data files may be ordered
        keep = torch.randperm(len(strings), generator=torch.Generator().manual_seed(0))
        keep = keep[:cfg.pool].sort().values
        strings, codes = [strings[i] for i in keep.tolist()], codes[keep]
    scored = [(z, score(s, data)) for z, s in zip(codes, strings)]
    scored = [(z, s) for z, s in scored if s is not None]
    if len(scored) < 2:
        raise RaekitError("fewer than two strings have a score; cannot start BO")
    X = torch.stack([z for z, _ in scored])
    y = torch.tensor([s for _, s in scored])

    results = []
    for seed in cfg.seeds:
        def evaluate(points, seed=seed):
            decoded = decode_majority(model, codec, points, data, decodes=decodes, seed=seed)
            return [(s, score(s, data) if s is not None else None) for s in decoded]

        results.append(optimize(X, y, evaluate, cfg, seed=seed, progress=progress))
    summary = report([r.points() for r in results])
    return {"data": data, "score": ("-log(1+MSE)" if data == "expressions"
                                    else "penalised logP"),
            "settings": {**dataclasses.asdict(cfg), "decodes": decodes}, "strings": len(X),
            **{k: v for k, v in summary.items() if k != "seeds"},
            "runs": [dict(seed=seed, **r.summary()) for seed, r in zip(cfg.seeds, results)]}

"""Bayesian optimisation in a latent space (Kusner et al. 2017 §4.2), with
BoTorch/GPyTorch.

A GP is fitted on codes X (n, d) and their scores y (n,) — an exact GP for small n, a sparse
variational GP with inducing points (500 by default) for large n — then each round proposes a
batch of points by maximising the batch expected improvement (q-LogEI, chosen greedily: one
point at a time, conditioning on the earlier ones), inside the box spanned by the codes. The
points are evaluated (for grammar models: decoded several times, keeping the most frequent valid
result, and scored), added to the data, and the GP is refitted. Scores are *maximised*.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

with warnings.catch_warnings():
    # linear_operator (under gpytorch) applies torch.jit.script at import, which torch now
    # warns about; nothing for a raekit user to act on.
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                            category=FutureWarning)
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP, SingleTaskVariationalGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood, VariationalELBO
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from ..errors import RaekitError
from .models import one_thread

# evaluate(points (q, d)) → one (label, score) per point; label None = invalid point
Evaluate = Callable[[torch.Tensor], list[tuple[object, float | None]]]


def fit_gp(X: torch.Tensor, y: torch.Tensor, *, inducing: int = 500, exact_limit: int = 2000,
           epochs: int = 20, seed: int = 0):
    """A GP on (X, y): exact when n ≤ ``exact_limit``, else a sparse variational GP with
    ``inducing`` inducing points, fitted on minibatches. Inputs are normalised to the unit cube
    and y standardised inside the model (BoTorch transforms)."""
    torch.manual_seed(seed)
    X, y = X.double(), y.double().reshape(-1, 1)
    d = X.shape[1]
    if len(X) <= exact_limit:
        gp = SingleTaskGP(X, y, input_transform=Normalize(d), outcome_transform=Standardize(1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        return gp
    lo, hi = X.min(0).values, X.max(0).values
    Xn = (X - lo) / (hi - lo).clamp_min(1e-9)
    mean, std = y.mean(), y.std().clamp_min(1e-9)
    gp = SingleTaskVariationalGP(Xn, (y - mean) / std, inducing_points=min(inducing, len(X)))
    mll = VariationalELBO(gp.likelihood, gp.model, num_data=len(X))
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
    acq = qLogExpectedImprovement(model, best_f=best_f)
    with one_thread():  # many small restarts: threads only add synchronisation
        X, _ = optimize_acqf(acq, bounds=bounds.double(), q=q, num_restarts=num_restarts,
                             raw_samples=raw_samples, sequential=True,
                             options={"seed": seed, "maxiter": 100})
    return X.detach()


@dataclass
class BOResult:
    """Every evaluated point, round by round, and the summary the papers report."""
    labels: list = field(default_factory=list)
    scores: list = field(default_factory=list)
    rounds: list = field(default_factory=list)  # round of each point
    round_seconds: list = field(default_factory=list)

    @property
    def valid(self) -> list[bool]:
        return [lab is not None and s is not None for lab, s in zip(self.labels, self.scores)]

    def summary(self, top: int = 3) -> dict:
        valid = [(lab, s) for lab, s, ok in zip(self.labels, self.scores, self.valid) if ok]
        best: dict = {}
        for lab, s in sorted(valid, key=lambda p: -p[1]):
            if lab not in best:
                best[lab] = s
            if len(best) == top:
                break
        return {"points": len(self.labels),
                "valid_share": len(valid) / max(1, len(self.labels)),
                "mean_score": (sum(s for _, s in valid) / len(valid)) if valid else None,
                "best": [{"label": str(k), "score": v} for k, v in best.items()],
                "round_seconds": self.round_seconds}


def optimize(X: torch.Tensor, y: torch.Tensor, evaluate: Evaluate, *, rounds: int = 5,
             batch: int = 50, bounds: torch.Tensor | None = None,
             invalid_value: float | None = None, inducing: int = 500, exact_limit: int = 2000,
             num_restarts: int = 4, raw_samples: int = 128, seed: int = 0,
             progress: bool = True) -> BOResult:
    """``rounds`` rounds of batch BO starting from codes X (n, d) with scores y (n,).

    Points whose score is None (invalid) enter the GP with ``invalid_value`` (default: the
    lowest score seen in y)."""
    if X.ndim != 2 or len(X) != len(y) or len(X) < 2:
        raise RaekitError(f"BO needs codes (n ≥ 2, d) and n scores, got {tuple(X.shape)} and "
                          f"{tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise RaekitError("BO's initial scores must be finite numbers")
    X, y = X.double(), y.double().flatten()
    bounds = torch.stack([X.min(0).values, X.max(0).values]) if bounds is None else bounds.double()
    fill = float(y.min()) if invalid_value is None else float(invalid_value)
    result = BOResult()
    for r in tqdm(range(rounds), desc="BO rounds", disable=not progress):
        t0 = time.perf_counter()
        gp = fit_gp(X, y, inducing=inducing, exact_limit=exact_limit, seed=seed + r)
        points = propose(gp, float(y.max()), bounds, batch, num_restarts=num_restarts,
                         raw_samples=raw_samples, seed=seed + r)
        evaluated = evaluate(points.float())
        new_y = torch.tensor([fill if s is None else float(s) for _, s in evaluated],
                             dtype=torch.double)
        X, y = torch.cat([X, points]), torch.cat([y, new_y])
        for lab, s in evaluated:
            result.labels.append(lab)
            result.scores.append(s)
            result.rounds.append(r)
        result.round_seconds.append(time.perf_counter() - t0)
    return result


def latent_bo(model, codec, data: str, strings: list[str], codes: torch.Tensor, *,
              seeds=(0,), rounds: int = 5, batch: int = 50, decodes: int | None = None,
              inducing: int = 500, exact_limit: int = 2000, progress: bool = True) -> dict:
    """BO in a grammar model's latent space, as in the Grammar VAE paper: the codes of training
    strings with their scores start the GP; each proposed code is decoded ``decodes`` times
    (default 25 for expressions, 500 for molecules) and its most frequent valid decoding scored.
    Returns one summary per seed and their average."""
    from .metrics import decode_majority
    from .scores import score

    decodes = decodes or (25 if data == "expressions" else 500)
    scored = [(z, score(s, data)) for z, s in zip(codes, strings)]
    scored = [(z, s) for z, s in scored if s is not None]
    if len(scored) < 2:
        raise RaekitError("fewer than two training strings have a score; cannot start BO")
    X = torch.stack([z for z, _ in scored])
    y = torch.tensor([s for _, s in scored])

    runs = []
    for seed in seeds:
        def evaluate(points, seed=seed):
            decoded = decode_majority(model, codec, points, data, decodes=decodes, seed=seed)
            return [(s, score(s, data) if s is not None else None) for s in decoded]

        res = optimize(X, y, evaluate, rounds=rounds, batch=batch, inducing=inducing,
                       exact_limit=exact_limit, seed=seed, progress=progress)
        runs.append(dict(seed=seed, **res.summary()))
    valid = [r["valid_share"] for r in runs]
    means = [r["mean_score"] for r in runs if r["mean_score"] is not None]
    return {"data": data, "score": ("-log(1+MSE)" if data == "expressions"
                                    else "penalised logP"),
            "seeds": list(seeds), "rounds": rounds, "batch": batch, "decodes": decodes,
            "valid_share": sum(valid) / len(valid),
            "mean_score": (sum(means) / len(means)) if means else None,
            "best": sorted((b for r in runs for b in r["best"]), key=lambda b: -b["score"])[:3],
            "runs": runs}

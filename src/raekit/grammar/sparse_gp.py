"""The Grammar VAE's sparse GP and its batch expected improvement, in PyTorch.

The reference (mkusner/grammarVAE, ``sparse_gp.py`` and ``sparse_gp_theano_internal.py``, Theano)
fits a sparse GP by **stochastic expectation propagation** (SEP; Li, Hernández-Lobato & Turner
2015, in the form of Bui et al. 2016): a Gaussian over the outputs u at M inducing inputs z,
``q(u) ∝ p(u) · t(u)^n`` with one shared site ``t``, parameterised by a matrix L and a vector m:
posterior precision ``Kzz⁻¹ + LLᵀ``, posterior mean ``(Kzz⁻¹ + LLᵀ)⁻¹ m``; the cavity removes
one site (``LLᵀ`` and ``m`` scaled by (n − 1)/n). Each observation's term is the FITC-style
predictive ``N(y; m(x), v(x) + σ²)`` under the cavity, with
``v(x) = k(x, x) − k_xᵀ Kzz⁻¹ k_x + k_xᵀ Kzz⁻¹ Σ Kzz⁻¹ k_x``. The energy (the SEP approximation
of the log marginal likelihood, with minibatches) is maximised by Adam over all of
z, L, m, the kernel's log length-scales and log variance and the log noise.

This module implements the same energy, initialisation and training loop (Adam lr 5e-4, 50
passes over the data in minibatches of 5,000, inducing inputs a random subset of a random
minibatch, squared length-scales set to half the median squared distance, L ~ N(0, 1), m the
targets at the inducing inputs, unit signal and noise variance) in float64 PyTorch, with
Cholesky factors where the reference inverts matrices. The kernel is the ARD squared
exponential ``σ_f² exp(−½ Σ_j (x_j − z_j)² / ℓ_j)`` (ℓ_j squared length-scales), with jitter
``1e-3·σ_f²`` on Kzz. Targets are used as they are (no standardisation) and *minimised*.

Batch selection (``batched_greedy_ei`` in the reference): the incumbent is the minimum of the
GP mean over the box of the data, found from the best of 10,000 uniform random points polished
by L-BFGS-B (scipy, 150 iterations); the first point maximises the analytic log EI against it
(the latent variance, without the noise), from the same grid; each further point keeps the mean
(Kriging believer: the chosen points are "observed" at their predicted mean, which leaves the
mean unchanged) and replaces the variance by ``σ_f² − k_xᵀ K⁻¹ k_x`` over the inducing inputs
*and* the points chosen so far — the reference's formula: it treats the inducing outputs as
known, so it is a smaller variance than the SEP posterior's even before any point is added.
"""

from __future__ import annotations

import math

import numpy as np
import torch

JITTER = 1e-3  # × σ_f², on the diagonal of Kzz (the reference's)


def ard_rbf(log_ls: torch.Tensor, log_sf: torch.Tensor, x: torch.Tensor,
            z: torch.Tensor) -> torch.Tensor:
    """``σ_f² exp(−½ Σ_j (x_j − z_j)² / ℓ_j)`` with ℓ = exp(log_ls) (squared length-scales),
    σ_f² = exp(log_sf). x (n, d), z (m, d) → (n, m)."""
    ls = log_ls.exp()
    r2 = torch.cdist(x / ls.sqrt(), z / ls.sqrt()).pow(2)
    return log_sf.exp() * torch.exp(-0.5 * r2)


def log_expected_improvement(mean: torch.Tensor, var: torch.Tensor,
                             incumbent: float | torch.Tensor) -> torch.Tensor:
    """log EI for *minimisation*: ``log E[max(0, incumbent − f)]``, f ~ N(mean, var), i.e.
    ``log σ + log(s Φ(s) + φ(s))``, s = (incumbent − mean)/σ. For s < 0 the reference's form
    ``log σ + log φ(s) + log(1 + s Φ(s)/φ(s))`` keeps the digits, and far below the incumbent
    the asymptotic series ``1/s² − 3/s⁴ + 15/s⁶`` replaces ``1 + s Φ(s)/φ(s)`` — from s = −100
    here, from s = −10 in the reference, whose series is then off by up to ~1e-4 (relative)."""
    sd = var.clamp_min(1e-300).sqrt()
    s = (incumbent - mean) / sd
    log_pdf = lambda t: -0.5 * math.log(2 * math.pi) - 0.5 * t * t  # noqa: E731
    pos = s.clamp_min(0.0)
    positive = torch.log(pos * torch.special.ndtr(pos) + log_pdf(pos).exp())
    mid = s.clamp(-100.0, 0.0)
    middle = log_pdf(mid) + torch.log1p(mid * torch.exp(torch.special.log_ndtr(mid)
                                                        - log_pdf(mid)))
    low = s.clamp_max(-100.0)
    series = log_pdf(low) + torch.log(1 / low ** 2 - 3 / low ** 4 + 15 / low ** 6)
    return sd.log() + torch.where(s >= 0, positive, torch.where(s >= -100, middle, series))


class SparseGP(torch.nn.Module):
    """The reference's SEP sparse GP (module docstring). ``fit`` then ``predict``; targets are
    minimised by the acquisition functions below."""

    def __init__(self, inducing: int = 500):
        super().__init__()
        self.inducing = inducing

    # -- the approximation -------------------------------------------------------------------
    def _prior(self):
        """Kzz's Cholesky factor and inverse (jitter 1e-3·σ_f² on the diagonal)."""
        eye = torch.eye(len(self.z), dtype=self.z.dtype, device=self.z.device)
        Kzz = ard_rbf(self.log_ls, self.log_sf, self.z, self.z) + eye * JITTER * self.log_sf.exp()
        Lk = torch.linalg.cholesky(Kzz)
        return Lk, torch.cholesky_inverse(Lk)

    def _site(self, Kinv: torch.Tensor, c: float, *, predictive: bool = True):
        """The cavity (c = (n − 1)/n) or the posterior (c = 1): precision Kzz⁻¹ + c·LLᵀ, mean
        Σ·c·m. Returns its log normaliser without the common constant (½ log|Σ| + ½ μᵀΣ⁻¹μ) and,
        for predictions, a = Kzz⁻¹ μ and B = Kzz⁻¹ Σ Kzz⁻¹ − Kzz⁻¹."""
        Lc = torch.linalg.cholesky(Kinv + c * (self.L @ self.L.T))
        cm = c * self.m
        mean = torch.cholesky_solve(cm, Lc)
        log_z = (-torch.log(torch.diagonal(Lc)).sum() + 0.5 * (cm.T @ mean)).squeeze()
        if not predictive:
            return log_z, None, None
        cov = torch.cholesky_inverse(Lc)
        return log_z, Kinv @ mean, Kinv @ cov @ Kinv - Kinv

    def _predict_latent(self, x: torch.Tensor, a: torch.Tensor, B: torch.Tensor, *,
                        detach: bool = False):
        """Mean and latent variance (the reference's ``abs`` guards round-off) at x (n, d)."""
        ls, sf, z = self.log_ls, self.log_sf, self.z
        if detach:
            ls, sf, z = ls.detach(), sf.detach(), z.detach()
        Kxz = ard_rbf(ls, sf, x, z)
        mean = (Kxz @ a).squeeze(-1)
        var = (sf.exp() + ((Kxz @ B) * Kxz).sum(-1)).abs()
        return mean, var

    def energy(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The SEP energy of a minibatch (x (b, d), y (b,)), to be maximised."""
        Lk, Kinv = self._prior()
        log_cav, a, B = self._site(Kinv, (self.n - 1) / self.n)
        log_post, _, _ = self._site(Kinv, 1.0, predictive=False)
        log_prior = torch.log(torch.diagonal(Lk)).sum()  # ½ log|Kzz|
        mean, var = self._predict_latent(x, a, B)
        var = var + self.log_noise.exp()
        log_lik = (-0.5 * torch.log(2 * math.pi * var) - 0.5 * (y - mean) ** 2 / var).sum()
        return (log_cav - log_post + (log_post - log_prior) / self.n) * len(x) + log_lik

    # -- fitting and predicting ---------------------------------------------------------------
    def fit(self, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 50, minibatch: int = 5000,
            lr: float = 5e-4, seed: int = 0) -> SparseGP:
        """Initialise as the reference does, then ``epochs`` passes of Adam over shuffled
        minibatches. X (n, d), y (n,); the GP lives on X's device."""
        g = torch.Generator().manual_seed(seed)
        X, y = X.double(), y.double().flatten()
        n, d = X.shape
        self.n = n
        sub = torch.randperm(n, generator=g)[:min(n, minibatch)].to(X.device)
        M = min(self.inducing, len(sub))
        chosen = sub[torch.randperm(len(sub), generator=g)[:M].to(X.device)]
        sq = torch.pdist(X[sub]).pow(2)
        median = float(sq.median()) if len(sq) else 1.0
        p = torch.nn.Parameter
        self.z = p(X[chosen].clone())
        f64 = dict(dtype=torch.double, device=X.device)
        self.log_ls = p(torch.full((d,), math.log(0.5 * (median + 1e-3)), **f64))
        self.log_sf = p(torch.zeros((), **f64))
        self.log_noise = p(torch.zeros((), **f64))
        self.L = p(torch.randn(M, M, generator=g, dtype=torch.double).to(X.device))
        self.m = p(y[chosen].clone().reshape(-1, 1))
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        for _ in range(epochs):
            order = torch.randperm(n, generator=g).to(X.device)
            for i in range(0, n, minibatch):
                idx = order[i:i + minibatch]
                opt.zero_grad()
                (-self.energy(X[idx], y[idx])).backward()
                opt.step()
        self._cache = None
        return self

    def _cached(self):
        if getattr(self, "_cache", None) is None:
            with torch.no_grad():
                _, a, B = self._site(self._prior()[1], 1.0)
            self._cache = (a, B)
        return self._cache

    def predict(self, X: torch.Tensor, *, noise: bool = True):
        """Posterior mean and variance at X (n, d) (with the noise variance unless
        ``noise=False``); differentiable in X."""
        a, B = self._cached()
        mean, var = self._predict_latent(X.double(), a, B, detach=True)
        return mean, (var + self.log_noise.detach().exp()) if noise else var

    def believer_variance(self, X: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The reference's variance after points ``chosen`` (k, d) were added: ``σ_f² −
        k_xᵀ K⁻¹ k_x`` over the inducing inputs and the chosen points (jitter 1e-3·σ_f²)."""
        return self.believer(chosen)(X)

    def believer(self, chosen: torch.Tensor):
        """:meth:`believer_variance` as a function of X, with K's Cholesky factor computed once."""
        with torch.no_grad():
            ls, sf = self.log_ls.detach(), self.log_sf.detach()
            Z = torch.cat([self.z.detach(), chosen.double()])
            eye = torch.eye(len(Z), dtype=Z.dtype, device=Z.device)
            K = ard_rbf(ls, sf, Z, Z) + eye * JITTER * sf.exp()
            Lk = torch.linalg.cholesky(K)

        def variance(X: torch.Tensor) -> torch.Tensor:
            w = torch.linalg.solve_triangular(Lk, ard_rbf(ls, sf, X.double(), Z).T, upper=False)
            return (sf.exp() - (w * w).sum(0)).clamp_min(1e-12)  # the reference has no floor

        return variance


def minimise_over_box(f, grid: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *,
                      maxiter: int = 150) -> tuple[torch.Tensor, float]:
    """The reference's ``global_optimization``: the best point of ``grid`` (n, d) under
    ``f`` (a batch of points (n, d) → (n,) values, differentiable), then L-BFGS-B (scipy)
    inside the box [lo, hi]. Returns (the point (1, d), its value)."""
    from scipy.optimize import minimize

    with torch.no_grad():
        values = torch.cat([f(grid[i:i + 2000]) for i in range(0, len(grid), 2000)])
    start = grid[int(values.argmin())].double().cpu().numpy()
    device = grid.device

    def objective(v):
        x = torch.tensor(v, dtype=torch.double, device=device).reshape(1, -1).requires_grad_()
        out = f(x).sum()
        (grad,) = torch.autograd.grad(out, x)
        return out.item(), grad.flatten().cpu().numpy().astype(np.float64)

    res = minimize(objective, start, jac=True, method="L-BFGS-B",
                   bounds=list(zip(lo.tolist(), hi.tolist())), options={"maxiter": maxiter})
    x = torch.tensor(res.x, dtype=torch.double, device=device).reshape(1, -1)
    return x, float(res.fun)


def batched_greedy_ei(gp: SparseGP, q: int, lo: torch.Tensor, hi: torch.Tensor, *,
                      grid_size: int = 10000, maxiter: int = 150, seed: int = 0) -> torch.Tensor:
    """``q`` points chosen as the reference does (module docstring); targets minimised.
    lo, hi (d,): the box, on the GP's device. Returns (q, d)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = lo.double(), hi.double()
    grid = lo + torch.rand(grid_size, len(lo), generator=g, dtype=torch.double).to(lo.device) \
        * (hi - lo)
    _, incumbent = minimise_over_box(lambda x: gp.predict(x)[0], grid, lo, hi, maxiter=maxiter)

    def neg_log_ei(x):
        mean, var = gp.predict(x, noise=False)
        return -log_expected_improvement(mean, var, incumbent)

    chosen, _ = minimise_over_box(neg_log_ei, grid, lo, hi, maxiter=maxiter)
    for _ in range(1, q):
        variance = gp.believer(chosen)

        def neg_log_ei_believer(x, variance=variance):
            mean, _ = gp.predict(x, noise=False)
            return -log_expected_improvement(mean, variance(x), incumbent)

        point, _ = minimise_over_box(neg_log_ei_believer, grid, lo, hi, maxiter=maxiter)
        chosen = torch.cat([chosen, point])
    return chosen

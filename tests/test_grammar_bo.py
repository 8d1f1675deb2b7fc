"""Scores as the Grammar VAE's reference computes them, its BO report, and its sparse-GP batch
selection (paper-facts §5; mkusner/grammarVAE run_bo.py, get_final_results.py, sparse_gp*.py)."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("networkx")

from raekit.grammar.scores import ZINC_STATS, expression_score, penalized_logp  # noqa: E402

X = np.linspace(-10, 10, 1000)
Y = 1 / 3 + X + np.sin(X * X)


def reference_expression_score(f: np.ndarray) -> float:
    """run_bo.py: ``log(1 + mean(minimum((f − y)², 1000)))``, ``log(1 + 1000)`` if not finite."""
    with np.errstate(all="ignore"):
        score = np.log(1 + np.mean(np.minimum((np.asarray(f) - Y) ** 2, 1000)))
    return float(score) if np.isfinite(score) else float(np.log(1 + 1000))


def test_a_nan_anywhere_scores_log_1001():
    with np.errstate(all="ignore"):
        f = np.sin(np.exp(np.exp(X)))  # exp(exp(x)) overflows to inf, sin(inf) is NaN
        nan_as_cap = np.log1p(np.where(np.isnan(f), 1000, np.minimum((f - Y) ** 2, 1000)).mean())
    assert np.isnan(f).any() and not np.isnan(f).all()
    assert reference_expression_score(f) == pytest.approx(6.908755, abs=1e-6)
    assert expression_score("sin(exp(exp(x)))") == pytest.approx(math.log(1001), abs=1e-12)
    assert nan_as_cap == pytest.approx(5.29, abs=0.01)  # what counting NaN as the cap gave
    # an infinity (no NaN) is only capped: exp(exp(x)) is not the invalid score
    with np.errstate(all="ignore"):
        inf_score = reference_expression_score(np.exp(np.exp(X)))
    assert inf_score < math.log(1001) - 0.01
    assert expression_score("exp(exp(x))") == pytest.approx(inf_score, abs=1e-12)


def test_ring_penalty_is_the_largest_cycle_of_a_cycle_basis():
    import networkx as nx
    from rdkit import Chem
    from rdkit.Chem import rdmolops

    from raekit.grammar.scores import largest_cycle, ring_penalty

    adamantane = Chem.MolFromSmiles("C1C2CC3CC1CC(C2)C3")
    canonical = Chem.MolFromSmiles(Chem.MolToSmiles(adamantane))
    cycles = nx.cycle_basis(nx.Graph(rdmolops.GetAdjacencyMatrix(canonical)))
    assert sorted(len(c) for c in cycles) == [6, 6, 8]  # 10 atoms, 12 bonds: 3 cycles
    assert max(len(r) for r in adamantane.GetRingInfo().AtomRings()) == 6  # the SSSR's
    assert largest_cycle(adamantane) == 8 and ring_penalty(adamantane) == 2.0
    assert ring_penalty(Chem.MolFromSmiles("C1CCCCCCC1")) == 2.0  # cyclooctane
    assert ring_penalty(Chem.MolFromSmiles("c1ccc2ccccc2c1")) == 0.0  # naphthalene
    assert ring_penalty(Chem.MolFromSmiles("CCO")) == 0.0


def test_penalised_logp_of_a_ring_penalised_molecule():
    import os
    import sys

    import networkx as nx
    from rdkit import Chem, RDConfig
    from rdkit.Chem import Crippen, rdmolops

    sys.path.append(os.path.join(RDConfig.RDContribDir, "SA_Score"))
    import sascorer

    smiles = "OC(=O)C12CC3CC(CC(C3)C1)C2"  # adamantane-1-carboxylic acid
    mol = Chem.MolFromSmiles(Chem.MolToSmiles(Chem.MolFromSmiles(smiles)))
    logp, sa = Crippen.MolLogP(mol), sascorer.calculateScore(mol)
    largest = max(len(c) for c in nx.cycle_basis(nx.Graph(rdmolops.GetAdjacencyMatrix(mol))))
    assert largest == 8
    cycle = largest - 6
    # the reference's signs: SA and cycle scores enter negated, then standardised
    (lm, ls), (sm, ss), (rm, rs) = ZINC_STATS["logp"], ZINC_STATS["sa"], ZINC_STATS["ring"]
    expected = (logp - lm) / ls + (-sa - (-sm)) / ss + (-cycle - (-rm)) / rs
    assert penalized_logp(smiles) == pytest.approx(expected, abs=1e-9)
    # ZINC-250k's ring standardisation of the cycle-basis penalty (recomputed over all 249,456)
    assert ZINC_STATS["ring"] == pytest.approx((0.0490828, 0.2902886), abs=1e-6)


# -- the report (get_final_results.py) ---------------------------------------------------------

def test_report_per_seed_best_then_three_distinct_values():
    from raekit.grammar.bo import report

    bad = -math.log(1001)  # an invalid expression's score
    runs = [
        [("x", -2.0), (None, bad), ("x*x", -1.0), ("1", -3.0)],   # best −1, mean of > worst
        [("sin(x)", -1.0), ("x+1", -1.5), ("x+2", -1.5)],         # best −1 again; worst −1.5
        [("exp(x)", -0.5), (None, bad), (None, bad), ("2", -4.0)],
        [("3", -0.25), ("x/2", -0.75)],
    ]
    out = report(runs)
    seeds = out["seeds"]
    assert [s["best_score"] for s in seeds] == [-1.0, -1.0, -0.5, -0.25]
    assert [s["best_label"] for s in seeds] == ["x*x", "sin(x)", "exp(x)", "3"]
    assert [s["valid_share"] for s in seeds] == [0.75, 1.0, 0.5, 1.0]
    # the average leaves out the points at the seed's worst score (the invalid ones' value)
    assert seeds[0]["mean_score"] == pytest.approx((-2.0 - 1.0 - 3.0) / 3)
    assert seeds[1]["mean_score"] == pytest.approx(-1.0)
    assert seeds[2]["mean_score"] == pytest.approx((-0.5 - 4.0) / 2)
    assert seeds[3]["mean_score"] == pytest.approx(-0.25)
    assert out["valid_share"] == pytest.approx((0.75 + 1.0 + 0.5 + 1.0) / 4)
    assert out["best_score"] == pytest.approx((-1.0 - 1.0 - 0.5 - 0.25) / 4)
    means = np.array([-2.0, -1.0, -2.25, -0.25])
    assert out["mean_score"] == pytest.approx(means.mean())
    assert out["mean_score_se"] == pytest.approx(means.std() / 2)
    # three best *distinct* values among the seeds' bests: −1 counts once
    assert [b["score"] for b in out["best"]] == [-0.25, -0.5, -1.0]
    assert [b["label"] for b in out["best"]] == ["3", "exp(x)", "x*x"]


# -- the reference's sparse GP and batch -------------------------------------------------------

def test_log_ei_matches_the_closed_form():
    from scipy.stats import norm

    from raekit.grammar.sparse_gp import log_expected_improvement

    mean = np.array([-3.0, 0.0, 0.3, 1.0, 2.5, 4.0, 9.0, 20.0])
    var = np.array([1.0, 0.5, 2.0, 0.1, 1.5, 0.09, 0.8, 0.5])
    incumbent = 0.4
    sd = np.sqrt(var)
    s = (incumbent - mean) / sd
    ei = (incumbent - mean) * norm.cdf(s) + sd * norm.pdf(s)  # minimisation
    got = log_expected_improvement(torch.tensor(mean), torch.tensor(var), incumbent).numpy()
    assert np.allclose(got, np.log(ei), rtol=1e-9, atol=1e-10)
    # far below the incumbent: finite, and s ↦ log EI decreasing
    far = log_expected_improvement(torch.tensor([6.0, 40.0, 400.0, 4000.0]).double(),
                                   torch.tensor([0.25] * 4).double(), incumbent)
    assert torch.isfinite(far).all() and (far.diff() < 0).all()
    s = (incumbent - 6.0) / 0.5
    assert float(far[0]) == pytest.approx(np.log(0.5 * (s * norm.cdf(s) + norm.pdf(s))),
                                          rel=1e-9)


@pytest.fixture(scope="module")
def toy_gp():
    from raekit.grammar.models import one_thread
    from raekit.grammar.sparse_gp import SparseGP

    g = torch.Generator().manual_seed(0)
    X = torch.rand(60, 2, generator=g) * 2 - 1
    y = ((X - 0.3) ** 2).sum(-1)
    with one_thread():  # small matrices: threads only add synchronisation
        return SparseGP(inducing=12).fit(X, y, epochs=30, minibatch=30, lr=0.02, seed=0), X, y


def test_kriging_believer_keeps_the_mean_and_shrinks_the_variance(toy_gp):
    from raekit.grammar.models import one_thread
    from raekit.grammar.sparse_gp import JITTER, ard_rbf

    gp, X, _ = toy_gp
    x = torch.tensor([[0.5, -0.2], [0.9, 0.9], [-0.7, 0.1]], dtype=torch.double)
    chosen = torch.tensor([[0.5, -0.2]], dtype=torch.double)
    v1 = gp.believer_variance(x, chosen)
    # by hand: σ_f² − k_xᵀ K⁻¹ k_x over the inducing inputs and the chosen point
    ls, sf = gp.log_ls.detach(), gp.log_sf.detach()
    Z = torch.cat([gp.z.detach(), chosen]).numpy()
    K = ard_rbf(ls, sf, torch.tensor(Z), torch.tensor(Z)).numpy() + np.eye(len(Z)) * JITTER * \
        float(sf.exp())
    k = ard_rbf(ls, sf, x, torch.tensor(Z)).numpy()
    by_hand = float(sf.exp()) - np.einsum("ij,ij->i", k, np.linalg.solve(K, k.T).T)
    assert np.allclose(v1.numpy(), np.maximum(by_hand, 1e-12), rtol=1e-6, atol=1e-9)
    v0 = gp.believer_variance(x, chosen[:0])  # only the inducing inputs
    assert (v1 <= v0 + 1e-12).all()
    assert v1[0] < 0.01 * float(sf.exp())  # at the chosen point: (almost) no variance left
    more = gp.believer_variance(x, torch.cat([chosen, x[1:2]]))
    assert (more <= v1 + 1e-12).all() and more[1] < v1[1]
    # the batch: the mean is the GP's throughout, points are distinct and inside the box
    from raekit.grammar.sparse_gp import batched_greedy_ei

    lo, hi = X.min(0).values, X.max(0).values
    with one_thread():
        P = batched_greedy_ei(gp, 3, lo, hi, grid_size=500, maxiter=50, seed=0)
    assert P.shape == (3, 2) and (P >= lo - 1e-9).all() and (P <= hi + 1e-9).all()
    assert torch.cdist(P, P)[~torch.eye(3, dtype=bool)].min() > 1e-3


def test_sparse_gp_fits_a_smooth_function(toy_gp):
    gp, X, y = toy_gp
    Xt = torch.rand(100, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mean, var = gp.predict(Xt)
    rmse = float(((mean - ((Xt - 0.3) ** 2).sum(-1)) ** 2).mean().sqrt())
    assert rmse < 0.5 * float(y.std()) and (var > 0).all()


def test_a_tiny_bo_run_takes_seconds():
    from raekit.grammar.bo import BOConfig, optimize
    from raekit.grammar.models import one_thread

    def f(X):
        return -((X - 0.3) ** 2).sum(-1)

    X0 = torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = iter(range(1000))

    def evaluate(P):  # every other point "invalid", as a decoder may fail
        return [(next(labels), float(v)) if i % 2 == 0 else (None, None)
                for i, v in enumerate(f(P))]

    cfg = BOConfig(rounds=1, batch=4, inducing=10, gp_epochs=10, gp_minibatch=20, grid=300,
                   lbfgs_iterations=30)
    with one_thread():
        res = optimize(X0, f(X0), evaluate, cfg, seed=3, progress=False)
    assert res.rounds == [0] * 4 and res.valid == [True, False, True, False]
    assert res.scores[1] == pytest.approx(float(f(X0).min()))  # invalid: the worst score
    assert len(res.test_rmse) == 1 and res.test_rmse[0] > 0  # 4 of 40 codes held out
    s = res.summary()
    assert s["points"] == 4 and s["valid_share"] == 0.5 and len(s["best"]) == 2

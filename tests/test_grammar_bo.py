"""Scores as the Grammar VAE's reference computes them, its BO report, and its sparse-GP batch
selection (paper-facts §5; mkusner/grammarVAE run_bo.py, get_final_results.py, sparse_gp*.py)."""

import math

import numpy as np
import pytest

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

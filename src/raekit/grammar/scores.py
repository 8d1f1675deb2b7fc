"""Scores of decoded objects (Kusner et al. 2017 §4), and validity.

* Expressions: ``log(1 + mean_x min((f(x) − y(x))², 1000))`` against the target
  ``y = 1/3 + x + sin(x·x)`` on 1,000 points of linspace(−10, 10); lower is better; an invalid
  expression scores ``log(1001)``. Expressions are evaluated with numpy only after the grammar
  has derived them (so only ``x``, digits, + * / ( ), ``sin(`` and ``exp(`` can occur).
  As in the reference (``np.minimum`` passes NaN on, and a non-finite score becomes
  ``log(1001)``): an infinite squared error counts as the cap 1000, but a NaN at any point —
  ``sin(inf)``, ``inf/inf`` — makes the whole score ``log(1001)``.
* Molecules: penalised logP = logP (RDKit Crippen ``MolLogP``) − SA score (RDKit contrib
  ``sascorer``) − ring penalty (max(0, largest cycle − 6), cycles of ``networkx.cycle_basis``
  on the atom adjacency matrix of the canonical molecule, as the reference), each term
  standardised by its mean and standard deviation over ZINC-250k (:data:`ZINC_STATS`, computed by
  ``scripts/grammar_roundtrip.py``); higher is better; invalid SMILES (RDKit fails) → None.
"""

from __future__ import annotations

import math
import os
import sys
from functools import lru_cache

import numpy as np

from .grammars import expression_grammar

TARGET_POINTS = np.linspace(-10, 10, 1000)
INVALID_EXPRESSION_SCORE = math.log(1001.0)
MSE_CAP = 1000.0


def target_function(x: np.ndarray) -> np.ndarray:
    return 1 / 3 + x + np.sin(x * x)


def evaluate_expression(expr: str, x: np.ndarray = TARGET_POINTS) -> np.ndarray | None:
    """f(x) of a grammar expression, or None if the grammar does not derive it."""
    if expr is None or expression_grammar().try_parse(expr) is None:
        return None
    with np.errstate(all="ignore"):
        value = eval(expr, {"__builtins__": {}}, {"sin": np.sin, "exp": np.exp, "x": x})  # noqa: S307 — grammar-checked
    return np.broadcast_to(np.asarray(value, dtype=float), x.shape)


def expression_score(expr: str | None) -> float:
    """``log(1 + mean(min((f − y)², 1000)))``; ``log(1001)`` for an invalid expression or a NaN
    at any of the 1,000 points."""
    f = evaluate_expression(expr) if expr is not None else None
    if f is None:
        return INVALID_EXPRESSION_SCORE
    with np.errstate(all="ignore"):
        err = (f - target_function(TARGET_POINTS)) ** 2
        value = np.log1p(np.minimum(err, MSE_CAP).mean())  # a NaN anywhere stays NaN
    return float(value) if np.isfinite(value) else INVALID_EXPRESSION_SCORE


# mean and standard deviation (numpy's, ddof 0, as the reference) over the 249,456 molecules of
# ZINC-250k of logP, SA score and ring penalty (the cycle-basis penalty: 9,841 molecules have one;
# RDKit's SSSR would give 0.04857 ± 0.28602); scripts/grammar_roundtrip.py --stats recomputes them
ZINC_STATS = {
    "logp": (2.4570953396190123, 1.434324401111988),
    "sa": (3.0525811293166134, 0.8335207024513095),
    "ring": (0.049082804181899815, 0.2902886264277354),
}


@lru_cache(maxsize=1)
def _sascorer():
    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if path not in sys.path:
        sys.path.append(path)
    import sascorer  # noqa: E402 — shipped in rdkit's Contrib folder

    return sascorer


def _quiet_rdkit():
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def molecule(smiles: str | None):
    """An RDKit molecule, or None when RDKit cannot read the SMILES (never raises)."""
    if not smiles:
        return None
    from rdkit import Chem

    _quiet_rdkit()
    try:
        return Chem.MolFromSmiles(smiles)
    except Exception:  # RDKit raises on a few malformed inputs instead of returning None
        return None


def largest_cycle(mol) -> int:
    """The longest cycle of ``networkx.cycle_basis`` on the atom adjacency matrix of the
    canonical molecule (0 without rings), as the reference computes its ring penalty. A cycle
    basis is not RDKit's smallest set of smallest rings: on cages and some fused systems it
    holds longer cycles (adamantane: 8, where the SSSR's largest ring is 6). The canonical
    atom order makes the basis, hence the score, a function of the molecule alone."""
    import networkx as nx
    from rdkit import Chem
    from rdkit.Chem import rdmolops

    canonical = Chem.MolFromSmiles(Chem.MolToSmiles(mol))
    graph = nx.Graph(rdmolops.GetAdjacencyMatrix(canonical if canonical is not None else mol))
    return max((len(c) for c in nx.cycle_basis(graph)), default=0)


def ring_penalty(mol) -> float:
    """max(0, largest cycle − 6) (:func:`largest_cycle`)."""
    return float(max(0, largest_cycle(mol) - 6))


def molecule_terms(smiles: str | None) -> tuple[float, float, float] | None:
    """(logP, SA score, ring penalty) of a SMILES, or None when RDKit cannot read it."""
    mol = molecule(smiles)
    if mol is None:
        return None
    from rdkit.Chem import Crippen

    try:
        return Crippen.MolLogP(mol), _sascorer().calculateScore(mol), ring_penalty(mol)
    except Exception:  # a molecule RDKit read but cannot featurise: invalid, never a crash
        return None


def penalized_logp(smiles: str | None, stats: dict = ZINC_STATS) -> float | None:
    """Standardised logP − standardised SA − standardised ring penalty; None if invalid."""
    terms = molecule_terms(smiles)
    if terms is None:
        return None
    (lm, ls), (sm, ss), (rm, rs) = stats["logp"], stats["sa"], stats["ring"]
    logp, sa, ring = terms
    return (logp - lm) / ls - (sa - sm) / ss - (ring - rm) / rs


def is_valid(smiles_or_expr: str | None, data: str) -> bool:
    """A decoded string is valid if the expression grammar derives it / RDKit reads the SMILES."""
    if smiles_or_expr is None:
        return False
    if data == "expressions":
        return expression_grammar().try_parse(smiles_or_expr) is not None
    return molecule(smiles_or_expr) is not None


def score(s: str | None, data: str) -> float | None:
    """The data set's score, oriented so that *higher is better* (expressions: −log(1+MSE));
    None for an invalid molecule."""
    if data == "expressions":
        return -expression_score(s)
    return penalized_logp(s)

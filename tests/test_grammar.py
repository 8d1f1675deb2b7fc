"""Grammars, tokenisation, parsing round trips, masked decoding and scores (paper-facts §4)."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("nltk")
pytest.importorskip("rdkit")

from nltk.parse.generate import generate  # noqa: E402

from raekit.errors import RaekitError  # noqa: E402
from raekit.grammar.grammars import expression_grammar, smiles_grammar  # noqa: E402
from raekit.grammar.models import StackDecoder  # noqa: E402

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "CCO", "C#N", "ClCCBr", "FC(F)(F)c1ccc(Cl)cc1Br",
    "C[C@@H](N)C(=O)O", "C[C@H](O)CC", "N[C@@H](Cc1ccccc1)C(=O)O", "c1ccc2[nH]ccc2c1",
    "C[NH+](C)C", "CC(=O)[O-]", "[NH3+]CCC(=O)[O-]", "O=[N+]([O-])c1ccccc1", "[13CH4]",
    "F/C=C/F", "F/C=C\\F", "C/C=C\\C(=O)O", "C1CC2CCC1C2", "C1=CC=CC=C1", "C1CCC2(CC1)CCCC2",
    "c1ccc2c(c1)ccc1ccccc12", "CC1=C(C)C(=O)CC1", "OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O",
    "CS(=O)(=O)N", "CSc1nc(N)ncn1", "O=C1NC(=O)c2ccccc21", "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "CC(C)(C)OC(=O)N1CCC(CC1)C(=O)O", "C1CC1", "c1ccoc1", "c1ccsc1", "CP(=O)(O)O",
    "C[S@@+]([O-])c1ccccc1", "CC[C@@H]1CCC[C@@H](N/C(NCc2ncc(C(C)(C)C)o2)=[NH+]\\C)C1",
    "C=1CCCCC=1", "CC=1CCCC=1C", "C[C@]12CCC1C2",
]


def test_grammar_sizes():
    e, s = expression_grammar(), smiles_grammar()
    assert (e.num_rules, e.num_nonterminals, e.max_length) == (12, 3, 15)
    assert (s.num_rules, s.num_nonterminals, s.max_length) == (76, 23, 277)
    # the two rules that use the undefined non-terminal `class` can never be chosen
    assert s.masks.sum().item() == 76 - 2
    assert s.masks.sum(0).tolist().count(0) == 2
    # every rule is allowed for exactly its own left side
    assert (e.masks.sum(0) == 1).all()


def test_tokens():
    s = smiles_grammar()
    assert s.tokenize("ClC[C@@H](Br)c1ccccc1") == ["Cl", "C", "[", "C", "@@", "H", "]", "(", "Br",
                                                     ")", "c", "1", "c", "c", "c", "c", "c", "1"]
    assert expression_grammar().tokenize("sin( x )+exp(3)") == ["sin(", "x", ")", "+", "exp(",
                                                                "3", ")"]
    with pytest.raises(RaekitError, match="unknown symbol"):
        s.tokenize("CC%10")


def test_expressions_from_grammar_round_trip():
    g = expression_grammar()
    derived = [" ".join(t) for t in generate(g.cfg, depth=5, n=400)]
    assert len(derived) == 400
    ok = 0
    for s in derived:
        canon = s.replace(" ", "")
        rules = g.parse(s)
        onehot = g.to_onehot([rules])  # (1, 15, 12)
        assert onehot.shape == (1, 15, 12) and onehot.sum().item() == 15
        ok += g.from_onehot(onehot)[0] == canon
    assert ok == 400


def test_smiles_round_trip_and_fast_parser_matches_nltk():
    from rdkit import Chem

    g = smiles_grammar()
    assert len(SMILES) >= 30
    for s in SMILES:
        rules = g.parse(s)
        assert rules == g.parse_nltk_tokens(g.tokenize(s), s), s  # the fast parser is exact
        back = g.from_indices(g.to_indices([rules]))[0]
        assert back == s
        assert Chem.MolToSmiles(Chem.MolFromSmiles(back)) == Chem.MolToSmiles(Chem.MolFromSmiles(s))


def test_unparsable_input_is_a_clear_error():
    g, e = smiles_grammar(), expression_grammar()
    for bad in ["C(C", "C)", "[C", "=C", "CC%12", "", "[2H]C"]:
        with pytest.raises(RaekitError):
            g.parse(bad)
    for bad in ["x+", "sin(x", "4", "x x"]:
        with pytest.raises(RaekitError):
            e.parse(bad)
    assert e.try_parse("x+") is None
    with pytest.raises(RaekitError, match="limit of 15"):
        e.parse("+".join(["x"] * 9))


@pytest.mark.parametrize("name", ["expressions", "zinc"])
@pytest.mark.parametrize("sample", [False, True])
def test_masked_decoding_of_random_logits_gives_derivable_strings(name, sample):
    g = expression_grammar() if name == "expressions" else smiles_grammar()
    B = 300 if name == "expressions" else 60
    logits = torch.randn(B, g.max_length, g.num_rules, generator=torch.Generator().manual_seed(1))
    rules, complete = StackDecoder(g)(logits, sample=sample,
                                      generator=torch.Generator().manual_seed(2))
    strings = g.from_indices(rules)
    assert complete.any() and len(strings) == B
    for s, ok, row in zip(strings, complete.tolist(), rules.tolist()):
        assert (s is not None) == ok  # incomplete = hit the length limit = invalid
        if ok:
            parsed = g.parse(s) if name == "zinc" else g.parse_nltk_tokens(g.tokenize(s), s)
            assert row == parsed + [g.pad_rule] * (g.max_length - len(parsed))
    if not sample:  # the batch is decoded row-independently
        one = StackDecoder(g)(logits[3:4])[0]
        assert torch.equal(one[0], rules[3])


def test_decoding_recovers_a_sequence_from_its_one_hot_logits():
    g = smiles_grammar()
    idx = g.to_indices([g.parse(s) for s in SMILES[:10]])
    logits = torch.nn.functional.one_hot(idx, g.num_rules).float() * 10
    rules, complete = StackDecoder(g)(logits)
    assert complete.all() and torch.equal(rules, idx)


def test_expression_scores():
    from raekit.grammar.scores import INVALID_EXPRESSION_SCORE, expression_score

    x = np.linspace(-10, 10, 1000)
    y = 1 / 3 + x + np.sin(x * x)
    expected_x = math.log(1 + np.mean(np.minimum((x - y) ** 2, 1000)))
    assert expression_score("x") == pytest.approx(expected_x, abs=1e-12)
    assert expression_score("1/3+x+sin(x*x)") == pytest.approx(0.0, abs=1e-12)
    assert expression_score("x*x*x") == pytest.approx(
        math.log(1 + np.mean(np.minimum((x ** 3 - y) ** 2, 1000))), abs=1e-12)
    assert INVALID_EXPRESSION_SCORE == pytest.approx(math.log(1001))
    for bad in ["sin(", None, "import os", "1/(x-x)"]:
        assert expression_score(bad) == pytest.approx(math.log(1001))


def test_penalized_logp_matches_rdkit():
    import os
    import sys

    from rdkit import Chem, RDConfig
    from rdkit.Chem import Crippen

    from raekit.grammar.scores import ZINC_STATS, penalized_logp

    sys.path.append(os.path.join(RDConfig.RDContribDir, "SA_Score"))
    import sascorer

    for s in ["CC(=O)Oc1ccccc1C(=O)O", "c1ccccc1", "C1CCCCCCCCC1", "CCN(CC)CC", "O=C(O)c1ccccc1"]:
        mol = Chem.MolFromSmiles(s)
        ring = max([len(r) for r in mol.GetRingInfo().AtomRings()] + [0])
        ring = max(0, ring - 6)
        (lm, ls), (sm, ss), (rm, rs) = ZINC_STATS["logp"], ZINC_STATS["sa"], ZINC_STATS["ring"]
        expected = ((Crippen.MolLogP(mol) - lm) / ls - (sascorer.calculateScore(mol) - sm) / ss
                    - (ring - rm) / rs)
        assert penalized_logp(s) == pytest.approx(expected, abs=1e-9)
    # benzene: logP 1.6866, SA 1.0, no ring penalty
    assert penalized_logp("c1ccccc1") == pytest.approx(
        (1.6866 - 2.4570953396190123) / 1.434324401111988
        - (1.0 - 3.0525811293166134) / 0.8335207024513095
        - (0 - 0.049082804181899815) / 0.2902886264277354, abs=1e-4)
    # RDKit failing is "invalid", never a crash
    for bad in ["c1cccc1", "C1CC", "[Xx]", "", None, "C(C)(C)(C)(C)C"]:
        assert penalized_logp(bad) is None

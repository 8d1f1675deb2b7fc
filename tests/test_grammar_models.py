"""Grammar models: shapes, the masked loss, a tiny GRAE trained end to end, BO on a toy
objective, and bad input (paper-facts §4)."""

import json
import math

import pytest
import torch

pytest.importorskip("nltk")
pytest.importorskip("botorch")

from raekit.errors import RaekitError  # noqa: E402
from raekit.grammar.grammars import expression_grammar, smiles_grammar  # noqa: E402
from raekit.grammar.models import (MODELS, MaskedCrossEntropy, StackDecoder,  # noqa: E402
                                   build_model, one_thread)
from raekit.grammar.config import make_config  # noqa: E402


def random_expressions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct expressions derived by the grammar (random masked decodings)."""
    g = expression_grammar()
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        logits = torch.randn(4 * n, g.max_length, g.num_rules, generator=gen)
        rules, ok = StackDecoder(g)(logits, sample=True, generator=gen)
        for s in g.from_indices(rules):
            if s is not None:
                out[s] = None
    return list(out)[:n]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_shapes_and_loss_terms(name):
    g = expression_grammar()
    cfg = make_config("expressions", name)
    codec = g
    if name == "cvae":
        from raekit.grammar.characters import Characters
        codec = Characters.from_strings("expressions", ["sin(x)+x*2", "exp(1)/3"], 19)
    model = build_model(name, codec, cfg.sizes, **cfg.hyper())
    x = codec.to_onehot([codec.parse("sin(x)+x*2"), codec.parse("exp(1)/3")])
    out = model(x)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert model.encode(x).shape == (2, 25)
    assert model.decode(model.encode(x)).shape == x.shape
    if name == "grae":  # total = rec + β·mean(z²) + λ·ΣW² over the decoder's kernels
        kernels = sum(p.pow(2).sum() for p in model.decoder.parameters() if p.ndim >= 2)
        assert out["reg"].item() == pytest.approx(kernels.item(), rel=1e-5)
        assert out["loss"].item() == pytest.approx(
            (out["rec"] + 1e-2 * out["latent"] + 1e-5 * out["reg"]).item(), rel=1e-5)


def test_masked_cross_entropy_equals_log_softmax_over_allowed_rules():
    g = smiles_grammar()
    idx = g.to_indices([g.parse("CCO")])  # (1, 277)
    x = torch.nn.functional.one_hot(idx, g.num_rules).float()
    logits = torch.randn(1, g.max_length, g.num_rules, generator=torch.Generator().manual_seed(0))
    loss = MaskedCrossEntropy(g)(logits, x)
    expected = 0.0
    for t, r in enumerate(idx[0].tolist()):
        allowed = g.masks[g.lhs[r]]
        expected -= torch.log_softmax(logits[0, t][allowed], 0)[allowed[:r].sum()].item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # padding steps cost nothing: only 15 productions in "CCO" contribute
    assert (idx[0] != g.pad_rule).sum().item() < 20


def test_tiny_grae_learns_to_reconstruct(tmp_path):
    from raekit.grammar.train import load_run, train

    strings = random_expressions(2200, seed=0)
    path = tmp_path / "expr.txt"
    path.write_text("\n".join(["x +", "sin( x"] + [" ".join(s) for s in strings[:10]]
                              + strings[10:]) + "\n")
    cfg = make_config("expressions", "grae", data_path=str(path), limit=None, holdout=200,
                      val_size=200, epochs=10, batch_size=32, lr=3e-3, out=str(tmp_path / "runs"),
                      name="tiny", progress=False, eval_items=200, eval_decodes=1,
                      eval_samples=200, eval_densities=("prior", "gaussian"), accelerator="cpu")
    with one_thread():
        run_dir = train(cfg, trainer_overrides={"enable_model_summary": False})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["skipped"] == 2 and metrics["strings"] == 2202
    assert metrics["train"] == 2202 - 2 - 400
    # chance: one exact string out of the thousands of distinct ones the grammar derives
    assert metrics["reconstruction_accuracy"] > 0.3, metrics
    assert metrics["valid_gaussian"] >= 0.5
    run = load_run(run_dir)
    strings_saved, codes = run.training_codes()
    assert codes.shape == (len(strings_saved), 25)
    from raekit.grammar.metrics import encode_strings
    assert torch.allclose(encode_strings(run.model, run.codec, strings_saved[:5]), codes[:5], atol=1e-5)
    with pytest.raises(RaekitError, match="cannot"):
        encode_strings(run.model, run.codec, ["sin(x"])


def test_bo_beats_random_search_on_a_toy_objective():
    from raekit.grammar.bo import optimize

    opt = torch.tensor([0.35, -0.55])

    def f(X):
        return -((X - opt) ** 2).sum(-1) + 0.3 * torch.cos(6 * X).sum(-1)

    X0 = torch.rand(20, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    evaluate = lambda P: [(tuple(p.tolist()), float(v)) for p, v in zip(P, f(P))]  # noqa: E731
    bo_best, rnd_best = [], []
    for seed in range(2):
        res = optimize(X0, f(X0), evaluate, rounds=3, batch=4, seed=seed, progress=False,
                       bounds=torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), raw_samples=64,
                       num_restarts=2)
        s = res.summary()
        assert s["points"] == 12 and s["valid_share"] == 1.0 and len(s["best"]) == 3
        bo_best.append(s["best"][0]["score"])
        R = torch.rand(12, 2, generator=torch.Generator().manual_seed(100 + seed)) * 2 - 1
        rnd_best.append(f(R).max().item())
    best_possible = 0.6
    assert sum(bo_best) / 2 > sum(rnd_best) / 2
    assert min(bo_best) > best_possible - 0.15, (bo_best, rnd_best)


def test_bo_input_checks():
    from raekit.grammar.bo import optimize

    with pytest.raises(RaekitError):
        optimize(torch.zeros(1, 2), torch.zeros(1), lambda P: [])
    with pytest.raises(RaekitError):
        optimize(torch.zeros(3, 2), torch.tensor([0.0, math.nan, 1.0]), lambda P: [])


def test_bad_data_files(tmp_path):
    from raekit.grammar.data import encode_all, read_strings

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(RaekitError, match="empty"):
        read_strings(empty)
    with pytest.raises(RaekitError, match="no such data file"):
        read_strings(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("x+\nsin(\n")
    with pytest.raises(RaekitError, match="none of the 2"):
        encode_all(expression_grammar(), read_strings(bad), progress=False)

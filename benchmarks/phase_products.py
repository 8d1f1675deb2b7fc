"""Weight gradients as products of phases (``raekit.models.ops._weight_by_phases``) against
oneDNN's weight-gradient primitive, in bfloat16 on the CPU.

1. Speed, layer by layer: the weight gradient of each strided convolution of the paper's MNIST
   networks (as a convolution from the bigger map to the smaller: the encoder's layers and the
   decoder's transposed ones), channels-last, batch 100, timed both ways, with what
   ``_phases_pay`` chooses for it on this machine.
2. Training does not move: ``--steps`` full-width RAE-L2 steps in bfloat16 autocast
   (channels-last, fused Adam, as ``raekit train`` runs them) on the same batches from the same
   initialisation, once with the phase products where they pay and once with oneDNN's
   primitive everywhere, and once in float32 for scale: the loss at every step and the
   validation loss after. The two bfloat16 runs should differ by far less than bfloat16 differs
   from float32.

Writes JSON (default benchmarks/results/phase_products.json).

    python benchmarks/phase_products.py [--steps 40] [--data-root DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from torch.nn.grad import conv2d_weight
from train_throughput import cpu_info, matmul_rate

# (name, input channels, output channels, input size) of the convolution whose weight gradient
# is taken: 4×4 kernels, stride 2, padding 1; a transposed convolution's is that of the
# convolution from its output to its input
LAYERS = [
    ("decoder ConvT 1024→512, 8→16 (full width)", 512, 1024, 16),
    ("decoder ConvT 512→256, 16→32 (full width)", 256, 512, 32),
    ("encoder Conv 256→512, 8→4 (full width)", 256, 512, 8),
    ("encoder Conv 128→256, 16→8 (full width)", 128, 256, 16),
    ("decoder ConvT 512→256, 8→16 (width 2)", 256, 512, 16),
    ("decoder ConvT 256→128, 8→16 (width 4)", 128, 256, 16),
]


def timed(fn, repeats: int = 7) -> float:
    fn(), fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def layer_speeds(batch: int) -> list[dict]:
    from raekit.models import ops

    out = []
    for name, cin, cout, size in LAYERS:
        fmt = torch.channels_last
        x = torch.randn(batch, cin, size, size).bfloat16().contiguous(memory_format=fmt)
        g = torch.randn(batch, cout, size // 2, size // 2).bfloat16()
        g = g.contiguous(memory_format=fmt)
        shape, args = torch.Size((cout, cin, 4, 4)), ((2, 2), (1, 1))
        onednn, phases = (timed(partial(f, x, shape, g, *args))
                          for f in (conv2d_weight, ops._weight_by_phases))
        gflop = 2 * batch * (size // 2) ** 2 * cout * cin * 16 / 1e9
        out.append({"layer": name, "gflop": gflop, "onednn_ms": onednn * 1e3,
                    "phases_ms": phases * 1e3, "speedup": onednn / phases,
                    "phases_chosen": ops._phases_pay(x, shape, *args)})
        print(f"{name:44s} oneDNN {onednn * 1e3:6.1f} ms  phases {phases * 1e3:6.1f} ms  "
              f"({onednn / phases:.2f}×)  chosen: {out[-1]['phases_chosen']}", flush=True)
    return out


def batches(data_root: str | None, steps: int, batch: int) -> tuple[list, torch.Tensor]:
    """``steps`` training batches and one held-out batch: MNIST's first images, or random."""
    n = (steps + 1) * batch
    if data_root:
        from raekit.data import load_mnist
        from raekit.training.config import build_config

        train, _ = load_mnist(build_config(None, {"dataset": "mnist", "data_root": data_root}))
        x = torch.stack([train[i] for i in range(n)])  # floats in [0, 1]
    else:
        x = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    return list(x[:-batch].split(batch)), x[-batch:]


def train(mode: str, data: list, held_out: torch.Tensor) -> dict:
    """Losses of RAE-L2 steps from seed 0: ``mode`` is ``phases``, ``onednn`` or ``float32``."""
    from raekit.models import ops
    from raekit.models.registry import build_model
    from raekit.training.config import build_config

    real_rule = ops._phases_pay
    if mode == "onednn":
        ops._phases_pay = lambda *a, **k: False
    try:
        cfg = build_config(None, {"dataset": "mnist", "model": "rae-l2", "width": 1,
                                  "latent_dim": 16, "beta": 1e-4, "reg_weight": 1e-7})
        torch.manual_seed(0)
        model = build_model(cfg, (1, 32, 32)).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)
        bf16 = mode != "float32"
        losses, start = [], time.perf_counter()
        for x in data:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(x)["loss"]
            loss.backward()
            opt.step()
            losses.append(loss.item())
        seconds = (time.perf_counter() - start) / len(data)
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            val = model(held_out)["loss"].item()
    finally:
        ops._phases_pay = real_rule
    print(f"{mode:8s} final training loss {losses[-1]:.5f}  validation loss {val:.5f}  "
          f"{seconds:.2f} s a step", flush=True)
    return {"losses": losses, "validation_loss": val, "seconds_per_step": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--data-root", default=None, help="MNIST's folder (default: random images)")
    p.add_argument("--out", default="benchmarks/results/phase_products.json")
    args = p.parse_args()
    from raekit.memory import keep_freed_memory

    keep_freed_memory()
    machine = cpu_info()
    machine["matmul_gflops_bf16"] = matmul_rate(torch.bfloat16)["gflops"]
    print(f"{machine['model_name']}: AMX {machine['amx']}, "
          f"bfloat16 matmul {machine['matmul_gflops_bf16']:.0f} GFLOP/s", flush=True)
    layers = layer_speeds(args.batch)
    data, held_out = batches(args.data_root, args.steps, args.batch)
    runs = {mode: train(mode, data, held_out) for mode in ("phases", "onednn", "float32")}

    def largest_relative(a: str, b: str) -> float:
        return max(abs(x - y) / abs(y) for x, y in zip(runs[a]["losses"], runs[b]["losses"]))

    def relative_val(a: str, b: str) -> float:
        return abs(runs[a]["validation_loss"] / runs[b]["validation_loss"] - 1)

    checks = {"largest_step_loss_difference_phases_vs_onednn": largest_relative("phases", "onednn"),
              "largest_step_loss_difference_bf16_vs_float32": largest_relative("onednn", "float32"),
              "validation_loss_difference_phases_vs_onednn": relative_val("phases", "onednn"),
              "validation_loss_difference_bf16_vs_float32": relative_val("onednn", "float32")}
    for k, v in checks.items():
        print(f"{k}: {v:.2e}")
    result = {"machine": machine, "torch": torch.__version__,
              "settings": {"steps": args.steps, "batch": args.batch,
                           "data": "mnist" if args.data_root else "random"},
              "layers": layers, "training": runs, "checks": checks}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

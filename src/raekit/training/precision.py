"""``precision=auto``: bfloat16 mixed precision where this machine computes bfloat16 faster.

Measured (``benchmarks/train_throughput.py``, ``benchmarks/precision_quality.py``; README,
Benchmarks): Lightning's ``bf16-mixed`` trains the MNIST RAEs 1.7–1.9× faster than float32 on an
AMD CPU with AVX-512 BF16 (bfloat16 matmul 2.8× float32's rate) and more with AMX, with the same
validation loss and sample quality. A flag is not enough: an Intel Xeon here lists
``avx512_bf16`` but multiplies bfloat16 matrices at 0.6–0.9× its float32 rate, so bfloat16 would
slow it down. ``auto`` therefore chooses ``bf16-mixed`` on a CUDA device that supports it, and on
a CPU whose flags include ``amx_bf16`` or ``avx512_bf16`` *and* whose measured bfloat16 matmul
rate is at least :data:`MIN_BF16_SPEEDUP` times its float32 rate (a probe of ~0.2 s, once per
process); ``32-true`` everywhere else. The paper presets pin ``32-true``: the published numbers
were made in float32.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

AUTO = "auto"
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: bfloat16 matmul rate over float32's from which ``auto`` trains a CPU run in bf16-mixed
MIN_BF16_SPEEDUP = 1.5


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in NATIVE_BF16_FLAGS)


@functools.cache
def cpu_bf16_speedup(size: int = 1024, repeats: int = 3) -> float:
    """This CPU's bfloat16 matmul rate over its float32 rate (best of ``repeats`` products of two
    ``size``×``size`` matrices, with the current number of threads)."""
    def best_seconds(dtype: torch.dtype) -> float:
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=gen).to(dtype) for _ in range(2))
        times = []
        with torch.inference_mode():
            a @ b  # warm-up: kernel selection, caches
            for _ in range(repeats):
                start = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto"
                                              and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str = "auto", *,
                      flags: set[str] | None = None) -> str:
    """``precision`` itself, or for ``auto`` the precision this machine trains best in."""
    if precision != AUTO:
        return precision
    if uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    if (accelerator in ("auto", "cpu") and cpu_has_native_bf16(flags)
            and cpu_bf16_speedup() >= MIN_BF16_SPEEDUP):
        return "bf16-mixed"
    return "32-true"

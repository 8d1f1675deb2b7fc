"""``precision=auto``: bfloat16 mixed precision where the hardware computes bfloat16 natively.

Measured (``benchmarks/train_throughput.py``, ``benchmarks/precision_quality.py``; README,
Benchmarks): Lightning's ``bf16-mixed`` trains the MNIST RAEs 1.7–1.9× faster than float32 on a
CPU with AVX-512 BF16 and more with AMX, with the same validation loss and sample quality; on a
CPU without native bfloat16 the same autocast is emulated and several times slower. So ``auto``
chooses ``bf16-mixed`` on a CUDA device that supports it and on a CPU whose flags include
``amx_bf16`` or ``avx512_bf16``, and ``32-true`` everywhere else. The paper presets pin
``32-true``: the published numbers were made in float32.
"""

from __future__ import annotations

from pathlib import Path

import torch

AUTO = "auto"
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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
    if accelerator in ("auto", "cpu") and cpu_has_native_bf16(flags):
        return "bf16-mixed"
    return "32-true"

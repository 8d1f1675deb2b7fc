"""precision=auto: bfloat16 mixed precision only where the hardware computes it faster."""

import math

import pytest
import torch

from raekit.training import precision
from raekit.training.precision import cpu_bf16_speedup, cpu_flags, resolve_precision


@pytest.fixture
def fast_bf16(monkeypatch):
    """A CPU whose measured bfloat16 matmul rate is 2.8× its float32 rate (the AMD EPYC here)."""
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 2.8)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n"
                    "flags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_chooses_bf16_only_with_native_support(monkeypatch, fast_bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cpu", flags={"avx512f", "avx512_bf16"}) == "bf16-mixed"
    assert resolve_precision("auto", "auto", flags={"amx_bf16", "amx_tile"}) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", flags={"avx512f", "avx2"}) == "32-true"
    assert resolve_precision("auto", "mps", flags={"avx512_bf16"}) == "32-true"
    # an explicit precision is kept as it is
    assert resolve_precision("32-true", "cpu", flags={"amx_bf16"}) == "32-true"
    assert resolve_precision("bf16-mixed", "cpu", flags=set()) == "bf16-mixed"


def test_auto_on_cuda_follows_bf16_support(monkeypatch, fast_bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto", flags=set()) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu", flags={"amx_bf16"}) == "32-true"
    # a CPU run on a machine with a GPU looks at the CPU
    assert resolve_precision("auto", "cpu", flags={"avx512_bf16"}) == "bf16-mixed"


def test_auto_keeps_float32_where_bf16_is_measured_slower(monkeypatch):
    # an Intel Xeon here lists avx512_bf16 but multiplies bfloat16 at 0.6-0.9x its float32 rate
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 0.9)
    assert resolve_precision("auto", "cpu", flags={"avx512_bf16"}) == "32-true"
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: precision.MIN_BF16_SPEEDUP)
    assert resolve_precision("auto", "cpu", flags={"avx512_bf16"}) == "bf16-mixed"


def test_no_probe_without_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def probe():
        raise AssertionError("measured bfloat16 on a CPU without native support")

    monkeypatch.setattr(precision, "cpu_bf16_speedup", probe)
    assert resolve_precision("auto", "cpu", flags={"avx2"}) == "32-true"


def test_bf16_probe_measures_a_ratio_once():
    cpu_bf16_speedup.cache_clear()
    ratio = cpu_bf16_speedup(64, 2)
    assert math.isfinite(ratio) and ratio > 0
    assert cpu_bf16_speedup(64, 2) == ratio  # cached: one answer per process

"""precision=auto: bfloat16 mixed precision only where the hardware computes it natively."""

import torch

from raekit.training.precision import cpu_flags, resolve_precision


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\n"
                    "flags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_auto_chooses_bf16_only_with_native_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cpu", flags={"avx512f", "avx512_bf16"}) == "bf16-mixed"
    assert resolve_precision("auto", "auto", flags={"amx_bf16", "amx_tile"}) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", flags={"avx512f", "avx2"}) == "32-true"
    assert resolve_precision("auto", "mps", flags={"avx512_bf16"}) == "32-true"
    # an explicit precision is kept as it is
    assert resolve_precision("32-true", "cpu", flags={"amx_bf16"}) == "32-true"
    assert resolve_precision("bf16-mixed", "cpu", flags=set()) == "bf16-mixed"


def test_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto", flags=set()) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu", flags={"amx_bf16"}) == "32-true"
    # a CPU run on a machine with a GPU looks at the CPU
    assert resolve_precision("auto", "cpu", flags={"avx512_bf16"}) == "bf16-mixed"

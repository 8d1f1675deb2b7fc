"""raekit.keep_freed_memory: large blocks come from the heap and stay there after free."""

import subprocess
import sys
import textwrap

import pytest

from raekit.memory import keep_freed_memory

PROBE = textwrap.dedent("""
    import ctypes, sys, torch
    from raekit.memory import keep_freed_memory

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    try:
        libc.mallinfo2.restype = Mallinfo2
    except AttributeError:
        print("skip"); sys.exit()
    tuned = keep_freed_memory()
    before = libc.mallinfo2().hblkhd
    x = torch.empty(64 * 2**20 // 4)  # 64 MiB, over glibc's largest mmap threshold
    mapped = libc.mallinfo2().hblkhd - before
    del x
    info = libc.mallinfo2()
    print(tuned, mapped, info.arena, info.fordblks)
""")


def _probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    if out == ["skip"]:
        pytest.skip("not glibc ≥ 2.33")
    return out[0] == "True", *map(int, out[1:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_large_blocks_come_from_the_heap_and_stay_free_there(monkeypatch):
    import os
    env = {**os.environ, "RAEKIT_KEEP_FREED_MEMORY": "1"}
    tuned, mapped, arena, free = _probe(env)
    if not tuned:
        pytest.skip("not glibc")
    assert mapped == 0  # the 64 MiB tensor was not given a mapping of its own
    assert arena >= 64 * 2**20 and free >= 64 * 2**20  # and its memory stays in the heap, free

    env["RAEKIT_KEEP_FREED_MEMORY"] = "0"
    tuned, mapped, arena, free = _probe(env)
    assert not tuned and mapped >= 64 * 2**20  # glibc's default: a mapping of its own


def test_opt_out(monkeypatch):
    monkeypatch.setenv("RAEKIT_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False

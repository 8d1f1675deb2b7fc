"""Keep freed memory in the process instead of handing it back to the operating system.

glibc's ``malloc`` serves every block over 32 MiB with a fresh ``mmap`` and returns it on
``free``. A CPU training step allocates and frees activations of that size dozens of times (a
batch of 100 through the MNIST decoder's last block is 105 MB a tensor), so each one is faulted
in page by page again on every step: on this project's 2-core machine that was 20–25 % of an
exact RAE-GP step (see ``benchmarks/train_throughput.py``). PyTorch's own CPU launcher
(``torch.backends.xeon.run_cpu``) answers this by preloading jemalloc or tcmalloc; with glibc
the same effect is two ``mallopt`` calls: serve large blocks from the heap (``M_MMAP_MAX=0``)
and trim the heap only past 2 GiB of free space at its top (``M_TRIM_THRESHOLD``).

The process keeps its peak memory until it exits, which is what a training or evaluation
process wants. The ``raekit`` command does this at start-up; set ``RAEKIT_KEEP_FREED_MEMORY=0``
to leave malloc as it is. A library user can call :func:`keep_freed_memory` once.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
ENV = "RAEKIT_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as described above; return whether it took effect.

    Does nothing (and returns False) off Linux, on a C library other than glibc, or when the
    environment variable ``RAEKIT_KEEP_FREED_MEMORY`` is ``0``.
    """
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        _ = libc.gnu_get_libc_version  # glibc only: musl's mallopt is a no-op
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))

"""Process settings that decide CPU speed as much as the model code does.

PyTorch's CPU allocator is plain `malloc`. With glibc's defaults, every block above the mmap threshold (128 KB,
rising with use to at most 32 MB) is a fresh `mmap`, and freed memory goes back to the OS. The activations of a
vision backbone are far above that size (64 x 32 x 32 x 192 floats = 50 MB). So every step page-faults its whole
working set back in, and the kernel zeroes each page first: 143 000 faults per rmt_tiny inference step at batch
64, 64 px. Keeping the memory made that step 0.82x as long, and a training step 0.94x (2 cores;
benchmarks/speed/allocator_ab.py).

`keep_freed_memory()` tells glibc to serve every block from its heap and to never trim it: after the first step,
memory is reused without faults. A caching allocator (PyTorch's CUDA one, jemalloc or tcmalloc via LD_PRELOAD) does
the same. The catch is that the process keeps its peak resident size until it exits, the usual trade for a training
or benchmark process. `swinrmt` applies it on CPU in the trainer, in `evaluate` and in `bench`. Opt out with
SWINRMT_CPU_ALLOCATOR=default. It does nothing off glibc (macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "SWINRMT_CPU_ALLOCATOR"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_state: dict[str, bool] = {}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and mallopt's parameter numbers are glibc's)
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Serve all CPU tensors from glibc's heap and never return it to the OS; True if this process now does.

    Idempotent. Returns False (and changes nothing) off glibc, or when SWINRMT_CPU_ALLOCATOR=default.
    """
    if "on" in _state:
        return _state["on"]
    value = os.environ.get(ENV, "retain").strip().lower()
    if value not in ("retain", "default"):
        raise ValueError(f"{ENV}={value!r} is not valid; accepted: 'retain', 'default'")
    libc = _glibc() if value == "retain" else None
    # mallopt returns 1 on success; both settings are needed (no mmap'd blocks, no trimming of the heap top)
    on = bool(libc is not None and libc.mallopt(_M_MMAP_MAX, 0) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1)
    _state["on"] = on
    return on


def allocator_name() -> str:
    """What the CPU allocator does in this process, for benchmark reports."""
    return "glibc, freed memory kept (swinrmt.runtime)" if _state.get("on") else "default"

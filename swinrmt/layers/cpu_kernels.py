"""swinrmt's hand-written CPU kernels: one C++ library, compiled at first use, loaded through ctypes.

`csrc/short_attention.cpp` (softmax / sigmoid attention over short sequences), `csrc/depthwise_conv.cpp` (depthwise
convs with their elementwise neighbours fused) and `csrc/pointwise.cpp` (SWAT's SiLU-gated value and head norm) share
the vector helpers of `csrc/vec.h` and build into one library with the system C++ compiler (`$CXX`, else
c++/g++/clang++) as `-O3 -march=native -fopenmp` (8-40 s). No PyTorch headers and no ninja, unlike
`torch.utils.cpp_extension`: the kernels take raw pointers and strides, so a compiler is all they need. The library is
cached under `$SWINRMT_CACHE_DIR` (default `~/.cache/swinrmt`)/kernels by a hash of the sources, compiler, flags and
CPU, written to a temporary file and renamed (concurrent processes never load half a file). Without a compiler, or if
the build fails, one warning names the reason and every caller runs PyTorch's ops instead. `SWINRMT_CPU_KERNELS` =
`auto` or `1` (on, the default) or `0` (off); each kernel module has its own `ENABLED` switch too. The vector width
follows the CPU (`csrc/vec.h`: 16 floats on AVX-512, 8 on AVX2).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from .eager import env_switch


def enabled_from_env(value: str | None) -> bool:
    """SWINRMT_CPU_KERNELS: "auto" or "1" (on, the default) or "0" (off)."""
    return env_switch("SWINRMT_CPU_KERNELS", value, "1", "0")


ENABLED = enabled_from_env(os.environ.get("SWINRMT_CPU_KERNELS"))
CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "short_attention.cpp", CSRC / "depthwise_conv.cpp", CSRC / "pointwise.cpp")
HEADERS = (CSRC / "vec.h",)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
# Appended to FLAGS (and part of the cache key): e.g. "-mno-avx512f" builds the 8-float (AVX2) vectors on an AVX-512
# CPU, which is how the tests check both widths there; "-march=x86-64-v3" one library for a mixed cluster's cache.
EXTRA_FLAGS_ENV = "SWINRMT_KERNEL_CFLAGS"

_lib: ctypes.CDLL | None = None
_tried = False
_lock = threading.Lock()


def cache_dir() -> Path:
    return Path(os.environ.get("SWINRMT_CACHE_DIR") or Path.home() / ".cache" / "swinrmt") / "kernels"


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU model and feature flags (a shared cache may serve several machines)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.machine() + platform.processor()


def compiler() -> str | None:
    """The C++ compiler the kernels build with ($CXX, else c++, g++ or clang++ on PATH), or None."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def build(out_dir: Path | None = None, csrc: Path | None = None) -> Path:
    """Compile the library (or find it in the cache) and return its path; RuntimeError naming the reason. `csrc`: a
    folder with other versions of the sources (benchmarks/speed/ab_switch.py builds an older revision's to compare)."""
    sources = [(csrc or CSRC) / f.name for f in SOURCES]
    headers = [(csrc or CSRC) / f.name for f in HEADERS]
    cxx = compiler()
    if not cxx:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{cxx} --version failed: {e}") from None
    flags = (*FLAGS, *os.environ.get(EXTRA_FLAGS_ENV, "").split())
    digest = hashlib.sha256()
    for part in (*(f.read_bytes() for f in sources + headers), cxx.encode(), version.encode(),
                 " ".join(flags).encode(), _cpu_signature().encode()):
        digest.update(part)
    folder = out_dir or cache_dir()
    lib = folder / f"swinrmt_kernels-{digest.hexdigest()[:16]}.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{lib.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        r = subprocess.run([cxx, *flags, *map(str, sources), "-o", str(tmp)], capture_output=True, text=True,
                           timeout=600)
        if r.returncode != 0:
            first = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[:200])
            raise RuntimeError(f"{cxx} failed: {first}")
        os.replace(tmp, lib)
    finally:
        tmp.unlink(missing_ok=True)
    return lib


def load() -> ctypes.CDLL | None:
    """The library (built on the first call), or None if it cannot be built: then one warning, once per process."""
    global _lib, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                lib = ctypes.CDLL(str(build()))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                warnings.warn(f"swinrmt: the CPU kernels are off ({e}); using PyTorch's ops", RuntimeWarning,
                              stacklevel=3)
                return None
            _lib = declare(lib)
    return _lib


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Give the library's entry points their C signatures (ctypes would pass every integer as a 32-bit int)."""
    p, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.short_attention_forward.argtypes = [p] * 7 + [i64] * 4 + [p] * 4 + [i64, f32, i32]
    lib.short_attention_backward.argtypes = [p] * 11 + [i64] * 4 + [p, p, f32, i32]
    lib.short_attention_set_prefetch.argtypes, lib.short_attention_set_prefetch.restype = [i32], i32
    lib.dwconv_forward.argtypes = [p] * 4 + [i32, i32, p, p] + [i64] * 5 + [p, i32]
    lib.dwconv_weight_grad.argtypes = [p, p, i32, p] + [i64] * 5 + [p, i32]
    lib.silu_mul_forward.argtypes = [p, p, p, i64, i32]
    lib.silu_mul_backward.argtypes = [p] * 5 + [i64, i32]
    lib.head_rms_norm_forward.argtypes = [p] * 4 + [i64] * 3 + [f32, i32]
    lib.head_rms_norm_backward.argtypes = [p] * 6 + [i64] * 3 + [i32]
    return lib


def available() -> bool:
    """Whether the kernels are on and built (builds them on the first call)."""
    return ENABLED and load() is not None


def plain_eager() -> bool:
    """No compiler, tracer, exporter, dispatch mode (FLOP counter, fake tensors) or functorch transform is active."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if torch.onnx.is_in_onnx_export() or torch._C._are_functorch_transforms_active():
        return False
    return not is_in_torch_dispatch_mode()

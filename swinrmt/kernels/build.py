"""swinrmt's hand-written CPU kernels: one C++ library, compiled at first use, loaded through ctypes.

`csrc/short_attention.cpp` (softmax / sigmoid attention over short sequences), `csrc/depthwise_conv.cpp` (depthwise
convs with their elementwise neighbours fused) and `csrc/pointwise.cpp` (SWAT's SiLU-gated value and head norm) share
the vector helpers of `csrc/vec.h` and build into one library with the system C++ compiler (`$CXX`, else
c++/g++/clang++) as `-O3 -march=native -fopenmp` (8-40 s). No PyTorch headers and no ninja, unlike
`torch.utils.cpp_extension`: the kernels take raw pointers and strides, so a compiler is all they need. The library is
cached under `$SWINRMT_CACHE` (default `~/.cache/swinrmt`)/kernels by a hash of the sources, compiler, flags and
CPU, written to a temporary file and renamed (concurrent processes never load half a file). Without a compiler, or if
the build fails, one warning names the reason and every caller runs PyTorch's ops instead. Whether a kernel may run is
the policy's (`kernels.policy`: `SWINRMT_KERNELS=no-cpp` turns them all off). The vector width follows the CPU
(`csrc/vec.h`: 16 floats on AVX-512, 8 on AVX2); the policy's `kernel_flags` (e.g. `-mno-avx512f`, the 8-float
vectors on an AVX-512 CPU, which is how the tests check both widths there) and `kernel_sources` (another revision's
csrc, for an A/B) pick another library, built and cached the same way.
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

from . import policy

CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "short_attention.cpp", CSRC / "depthwise_conv.cpp", CSRC / "pointwise.cpp")
HEADERS = (CSRC / "vec.h",)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")

_libs: dict[tuple[Path | None, tuple[str, ...]], ctypes.CDLL | None] = {}  # (sources, extra flags) -> loaded or None
_lock = threading.Lock()


def cache_dir() -> Path:
    """`$SWINRMT_CACHE/kernels` (the cache root the data caches share; default `~/.cache/swinrmt`)."""
    return Path(os.environ.get("SWINRMT_CACHE") or Path.home() / ".cache" / "swinrmt") / "kernels"


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


def build(out_dir: Path | None = None, csrc: Path | None = None, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile the library (or find it in the cache) and return its path; RuntimeError naming the reason. `csrc`: a
    folder with other versions of the sources (benchmarks/speed/ab_switch.py builds an older revision's to compare);
    `extra_flags` go after FLAGS (part of the cache key)."""
    sources = [(csrc or CSRC) / f.name for f in SOURCES]
    headers = [(csrc or CSRC) / f.name for f in HEADERS]
    cxx = compiler()
    if not cxx:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{cxx} --version failed: {e}") from None
    flags = (*FLAGS, *extra_flags)
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
    """The library the policy names (built on the first call), or None if it cannot be built: then one warning, once
    per process and library."""
    pol = policy.current()
    key = (pol.kernel_sources, pol.kernel_flags)
    lib = _libs.get(key, False)
    if lib is not False:
        return lib
    with _lock:
        if key not in _libs:
            try:
                _libs[key] = declare(ctypes.CDLL(str(build(csrc=key[0], extra_flags=key[1]))))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                warnings.warn(f"swinrmt: the CPU kernels are off ({e}); using PyTorch's ops", RuntimeWarning,
                              stacklevel=3)
                _libs[key] = None
    return _libs[key]


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
    """Whether the kernels are built (builds them on the first call); whether one may run is the policy's."""
    return load() is not None

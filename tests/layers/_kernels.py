"""When the CPU-kernel tests may skip: only where the kernels are switched off or no C++ compiler exists.

A compiler that exists but fails to build the library must fail the suite (test_the_kernels_build_where_a_compiler_
exists), not turn every kernel test into a skip that looks green.
"""
import pytest

from swinrmt.layers import cpu_kernels


def skip_reason() -> str | None:
    if not cpu_kernels.ENABLED:
        return "SWINRMT_CPU_KERNELS=0 switches the CPU kernels off"
    if cpu_kernels.compiler() is None:
        return "no C++ compiler here (set CXX or install g++): PyTorch's ops run instead of the CPU kernels"
    return None


requires_kernels = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

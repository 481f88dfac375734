"""Test helpers for the speed routes: when the CPU-kernel tests may skip, and switching the policy for one test.

The kernel tests skip only where the kernels are switched off (`SWINRMT_KERNELS=reference` or `no-cpp`) or no C++
compiler exists. A compiler that exists but fails to build the library must fail the suite
(test_the_kernels_build_where_a_compiler_exists), not turn every kernel test into a skip that looks green.
"""
import contextvars
import dataclasses

import pytest

from swinrmt.kernels import build as cpu_kernels
from swinrmt.kernels import policy


def skip_reason() -> str | None:
    if not policy.current().cpp:
        return f"{policy.ENV}={policy.os.environ.get(policy.ENV)} switches the CPU kernels off"
    if cpu_kernels.compiler() is None:
        return "no C++ compiler here (set CXX or install g++): PyTorch's ops run instead of the CPU kernels"
    return None


requires_kernels = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def set_policy(monkeypatch: pytest.MonkeyPatch, **fields) -> None:
    """The policy with `fields` changed, for the rest of this test (restored by monkeypatch at teardown)."""
    new = dataclasses.replace(policy.current(), **fields)
    monkeypatch.setattr(policy, "_POLICY", contextvars.ContextVar("swinrmt_test_policy", default=new))

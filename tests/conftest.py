import os

import pytest
import torch

# Tests must be reproducible and must not fight over the 2 cores CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))

# The test harness's own switch (not a package setting): extra flags for the C++ kernels' build, so that one machine can
# test both vector widths (tests/layers/test_short_attention.py::test_the_other_vector_width_too).
if os.environ.get("SWINRMT_TEST_KERNEL_FLAGS"):
    import contextvars
    import dataclasses

    from swinrmt.kernels import policy

    policy._POLICY = contextvars.ContextVar("swinrmt_test_policy", default=dataclasses.replace(
        policy.current(), kernel_flags=tuple(os.environ["SWINRMT_TEST_KERNEL_FLAGS"].split())))


def pytest_configure(config):
    # the marks of timm's own model battery (tests/test_timm_models.py collects its test functions); inert here
    for mark in ("base", "cfg", "cfg_nonstd", "forward", "backward", "features", "fxforward", "fxbackward",
                 "torchscript", "timeout"):
        config.addinivalue_line("markers", f"{mark}: timm's model-battery mark (tests/test_timm_models.py)")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

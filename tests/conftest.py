import os

import pytest

# The tests hold the hand-picked CPU kernels equal to PyTorch's ops: on here even where the environment says
# otherwise. Set before swinrmt is imported.
os.environ["SWINRMT_CPU_KERNELS"] = "1"
os.environ["SWINRMT_CPU_LINEAR"] = "onednn"

import torch  # noqa: E402

# Tests must be reproducible and must not fight over the 2 cores CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

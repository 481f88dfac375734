import os

import pytest

# The hand-picked CPU kernels run by default on AVX-512 CPUs only (swinrmt.layers.eager.cpu_has_avx512); the tests
# hold them equal to PyTorch's ops on every CPU, so they are on here. Set before swinrmt is imported.
os.environ.setdefault("SWINRMT_CPU_KERNELS", "1")
os.environ.setdefault("SWINRMT_CPU_LINEAR", "onednn")

import torch  # noqa: E402

# Tests must be reproducible and must not fight over the 2 cores CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

import os

import pytest
import torch

# Tests must be reproducible and must not fight over the 2 cores CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

"""swinrmt.runtime.keep_freed_memory: big CPU tensors are reused without page faults, and the opt-out works."""
import json
import subprocess
import sys

import pytest

from swinrmt import runtime

PROBE = r"""
import json, resource, sys
import torch
from swinrmt import runtime
on = runtime.keep_freed_memory()
def faults_of_a_tensor(mb):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(mb * 2 ** 18).fill_(1.0)  # allocated, touched, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_tensor(64)  # the first time always faults
# a smaller block fits in the freed one whatever the alignment padding (an activation of the next step)
print(json.dumps({"on": on, "faults": faults_of_a_tensor(48), "name": runtime.allocator_name()}))
"""


def _probe(env_value: str | None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k != runtime.ENV}
    if env_value is not None:
        env[runtime.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(runtime._glibc() is None, reason="keep_freed_memory only acts on glibc (Linux)")
def test_freed_memory_is_reused_without_page_faults():
    kept, default = _probe(None), _probe("default")
    assert kept["on"] and not default["on"]
    # 48 MB = 12288 pages of 4 KB: the default allocator maps it afresh and faults on every page again
    assert default["faults"] > 8000, default
    assert kept["faults"] < 500, kept
    assert kept["name"] != default["name"] == "default"


def test_bad_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(runtime, "_state", {})
    monkeypatch.setenv(runtime.ENV, "jemalloc")
    with pytest.raises(ValueError, match="SWINRMT_CPU_ALLOCATOR='jemalloc'.*'retain', 'default'"):
        runtime.keep_freed_memory()

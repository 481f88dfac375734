"""The kernel boundary moved code, not math: every nano and tiny model computes bit-identical logits and parameter
gradients (train, eval with autograd, inference) before and after it, on this machine, CPU float32.

The revision before the change (BASE) is exported from git into a temporary folder and recorded by
`tests/_numerics.py` in a subprocess, beside this checkout; any differing tensor is named. Skips, saying why, where
git or BASE's history is not available (a source archive). Slow: it runs 8 models twice (about 1-2 minutes on 2
cores).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE = "862583f"  # the last revision before swinrmt/kernels/ (the policy and dispatch boundary)


def _export(rev: str, dest: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot export the base revision")
    r = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "swinrmt"], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"revision {rev} is not in this checkout's history ({r.stderr.decode().strip()[:100]})")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _record(code: Path, out: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "_numerics.py"), str(out), "--threads", "2"], env=env,
                       capture_output=True, text=True, cwd=out.parent, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["swinrmt"].startswith(str(code)), f"recorded {rec['swinrmt']}, not the code under {code}"
    return rec["hashes"]


@pytest.mark.slow
def test_models_compute_bit_identical_results_to_the_base_revision(tmp_path):
    _export(BASE, tmp_path / "base")
    before = _record(tmp_path / "base", tmp_path / "before.json")
    after = _record(ROOT, tmp_path / "after.json")
    assert before.keys() == after.keys(), sorted(set(before) ^ set(after))[:20]
    changed = sorted(k for k in before if before[k] != after[k])
    assert not changed, f"{len(changed)} of {len(before)} tensors differ, e.g. {changed[:10]}"
    assert len(before) > 1000  # 8 models x 2 inputs x (2 modes x (logits + every gradient) + inference)

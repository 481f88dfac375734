"""Slow end-to-end checks (run with `-m slow`)."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swinrmt.train import train
from swinrmt.train.recipe import load_recipe
from train_tiny_model import tiny_overrides


@pytest.mark.slow
def test_swinrmt_train_without_arguments_learns_digits_within_five_minutes(tmp_path: Path):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "swinrmt", "train", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    top1 = float(re.search(r"test top-1 ([\d.]+)%", last).group(1))
    print(f"\nno-argument run: {last} (wall {wall:.0f} s)")
    assert top1 >= 90.0, last  # chance is 10 %
    assert wall < 300, f"took {wall:.0f} s"
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "curves.png").is_file() and (run / "checkpoints" / "best.safetensors").is_file()


@pytest.mark.slow
def test_compile_option_trains(tmp_path: Path):
    result = train(load_recipe("quick", tiny_overrides(epochs=1, **{"model.compile": "true"})), tmp_path / "run",
                   progress=False)
    assert result["steps"] == 6 and result["test_loss"] == result["test_loss"]

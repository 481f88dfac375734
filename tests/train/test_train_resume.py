"""SIGKILL a run in the middle of an epoch, resume it, and get the uninterrupted run's metrics and weights."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from swinrmt.train.checkpoint import load_checkpoint
from swinrmt.train import train
from swinrmt.train.metrics import read_jsonl
from swinrmt.train.recipe import load_recipe
from train_tiny_model import tiny_overrides

HERE = Path(__file__).parent
# Every random stream in play: augmentation, mixup/cutmix, dropout, drop-path; plus EMA and a warmup schedule.
SETTINGS = tiny_overrides(epochs=3, ckpt_every_steps=2, **{
    "model.drop_path_rate": 0.2, "ema.enabled": "true", "ema.decay": 0.9, "mixup.mixup_alpha": 0.4,
    "mixup.cutmix_alpha": 1.0, "mixup.prob": 0.7, "data.aug.crop": "pad", "data.aug.padding": 2,
    "data.aug.hflip": 0.5, "label_smoothing": 0.1})
KEYS = {"step": ("epoch", "step", "batch", "loss", "loss_avg", "top1_avg", "lr"),
        "epoch": ("epoch", "step", "train_loss", "train_top1", "lr", "test_top1", "test_loss", "test_ece",
                  "test_ema_top1", "test_ema_loss", "best_top1")}


def _comparable(run: Path) -> list[tuple]:
    return [(r["kind"],) + tuple(r[k] for k in KEYS[r["kind"]]) for r in read_jsonl(run / "metrics.jsonl")]


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocess runs with OMP_NUM_THREADS=1: same kernels, same float results
    yield
    torch.set_num_threads(n)


def test_killed_run_resumes_as_if_never_interrupted(tmp_path: Path, cli, one_thread):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SWINRMT_TEST_STEP_DELAY": "0.1"}
    proc = subprocess.Popen([sys.executable, str(HERE / "run_cli.py"), "train", "--out", str(killed), "--no-progress",
                             "--set", *SETTINGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        train(load_recipe("quick", SETTINGS), ref, progress=False)  # the reference runs while the victim starts
        last = killed / "checkpoints" / "last.safetensors"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if last.is_file():
                meta = load_checkpoint(last).meta
                if meta["epoch"] == 1 and meta["batch_in_epoch"] > 0:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    meta = load_checkpoint(killed / "checkpoints" / "last.safetensors").meta
    assert meta["epoch"] == 1 and 0 < meta["batch_in_epoch"] < 6  # killed in the middle of the second epoch

    rc, _, err = cli("train", "--resume", str(killed), "--no-progress")
    assert rc == 0, err
    assert "resuming" in err
    got, want = _comparable(killed), _comparable(ref)
    assert [g[:4] for g in got] == [w[:4] for w in want]  # same records, no duplicates, no gaps
    assert got == want  # bit-exact: every random stream and every piece of state was restored
    a = load_checkpoint(killed / "checkpoints" / "last.safetensors")
    b = load_checkpoint(ref / "checkpoints" / "last.safetensors")
    for prefix in ("model", "ema"):
        ta, tb = a.tensors(prefix), b.tensors(prefix)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), k

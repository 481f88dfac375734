"""2-process gloo DDP with batch b per rank == 1 process with batch 2b; distributed evaluation counts each sample once.

The tiny test model has no BatchNorm: SyncBatchNorm raises on CPU tensors in torch 2.13 ("SyncBatchNorm expected input
tensor to be on GPU"), so on CPU each rank normalises with its own batch statistics and a BN model cannot match a
single process exactly. Dropout is off: its masks are per rank.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from swinrmt.train.checkpoint import load_checkpoint
from swinrmt.train import evaluate, train
from swinrmt.train.metrics import read_jsonl
from swinrmt.train.recipe import load_recipe
from train_tiny_model import tiny_overrides

HERE = Path(__file__).parent
COMMON = {"data.limit_train": 64, "data.limit_test": 41, "model.overrides.dropout": 0.0, "epochs": 2,
          "data.aug.crop": "pad", "data.aug.padding": 2}


def test_two_gloo_processes_match_one_process_with_twice_the_batch(tmp_path: Path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "run_cli.py"), "train", "--out", str(ddp), "--no-progress", "--device", "cpu",
           "--set", *tiny_overrides(batch_size=8, **COMMON)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    train(load_recipe("quick", tiny_overrides(batch_size=16, **COMMON)), single, device="cpu", progress=False)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]

    a = load_checkpoint(ddp / "checkpoints" / "last.safetensors")
    b = load_checkpoint(single / "checkpoints" / "last.safetensors")
    assert a.meta["step"] == b.meta["step"] == 8 and a.meta["global_batch"] == 16
    wa, wb = a.tensors("model"), b.tensors("model")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    steps = lambda run: [r["loss"] for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]  # noqa: E731
    assert steps(ddp) == pytest.approx(steps(single), rel=1e-5)

    # The distributed in-loop evaluation (41 images over 2 ranks: 21 + 20) equals a single-process one, exactly.
    dist_report = json.loads((ddp / "eval.json").read_text())
    local = evaluate(ddp, which="last", weights="model", device="cpu", out_dir=tmp_path / "ev", progress=False)
    assert dist_report["num_samples"] == local["num_samples"] == 41
    assert dist_report["confusion_matrix"] == local["confusion_matrix"]
    assert dist_report["top1"] == local["top1"] and dist_report["top5"] == local["top5"]
    assert dist_report["ece"] == pytest.approx(local["ece"], abs=1e-12)
    assert dist_report["loss"] == pytest.approx(local["loss"], rel=1e-6)

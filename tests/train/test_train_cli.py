"""`swinrmt train` / `swinrmt eval` end to end, and every user mistake as one line on stderr with exit code 2."""
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from swinrmt.train.checkpoint import load_checkpoint
from swinrmt.train import train
from swinrmt.train.metrics import read_jsonl
from swinrmt.train.recipe import load_recipe
from train_tiny_model import TINY, tiny_overrides


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(load_recipe("quick", tiny_overrides(**{"ema.enabled": "true", "ema.decay": 0.9})), out, progress=False)
    return out


def test_default_command_runs_one_epoch_on_a_subset(cli, tmp_path: Path):
    """The no-argument path (quick recipe, real nano model), shortened to one epoch on a subset."""
    out = tmp_path / "run"
    rc, stdout, stderr = cli("train", "--out", str(out), "--epochs", "1", "--set", "data.limit_train=64",
                             "data.limit_test=32", "ckpt_every_steps=1")
    assert rc == 0, stderr
    assert "test top-1" in stdout.splitlines()[-1]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["name"] == "gated_swinrmt_swat_nano" and cfg["model"]["num_classes"] == 10
    assert cfg["epochs"] == 1 and cfg["data"]["limit_train"] == 64
    recs = read_jsonl(out / "metrics.jsonl")
    steps = [r for r in recs if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [2]  # 64 // 32 = 2 steps; logged every 5 steps and at the epoch end
    (epoch,) = [r for r in recs if r["kind"] == "epoch"]
    assert 0 <= epoch["test_top1"] <= 100 and epoch["test_top5"] >= epoch["test_top1"]
    for name in ("curves.png", "eval.json", "confusion.png", "checkpoints/last.safetensors",
                 "checkpoints/best.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "eval.json").read_text())
    assert report["top1"] == pytest.approx(epoch["test_top1"]) and report["num_samples"] == 32


def test_eval_reports_metrics_and_prefers_ema(cli, tiny_run: Path, tmp_path: Path):
    rc, stdout, stderr = cli("eval", "--checkpoint", str(tiny_run), "--which", "last", "--out", str(tmp_path),
                             "--no-progress")
    assert rc == 0, stderr
    (path,) = tmp_path.glob("*.json")
    r = json.loads(path.read_text())
    assert r["weights"] == "ema" and r["num_samples"] == 40
    cm = r["confusion_matrix"]
    assert sum(map(sum, cm)) == 40 and len(cm) == 10
    assert r["top1"] == pytest.approx(100 * sum(cm[i][i] for i in range(10)) / 40)
    assert 0 <= r["ece"] <= 1 and len(r["per_class_accuracy"]) == 10 and len(r["calibration_bins"]["count"]) == 15
    last_epoch = [x for x in read_jsonl(tiny_run / "metrics.jsonl") if x["kind"] == "epoch"][-1]
    assert r["top1"] == pytest.approx(last_epoch["test_ema_top1"])  # same weights, same data: same answer
    assert list(tmp_path.glob("*-confusion.png"))
    rc, _, _ = cli("eval", "--checkpoint", str(tiny_run / "checkpoints" / "last.safetensors"), "--weights", "model",
                   "--out", str(tmp_path / "m"), "--no-progress")
    (path,) = (tmp_path / "m").glob("*.json")
    assert rc == 0 and json.loads(path.read_text())["top1"] == pytest.approx(last_epoch["test_top1"])


def test_existing_run_dir_needs_resume_or_overwrite(cli, tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["train", "--out", str(out), "--no-progress", "--set", *tiny_overrides(epochs=1)]
    rc, _, err = cli(*args)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "already exists" in err and "--resume" in err and "--overwrite" in err
    rc, _, err = cli(*args, "--overwrite")
    assert rc == 0, err
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite replaces only the trainer's own files
    rc, _, err = cli("train", "--resume", str(tmp_path / "nowhere"), "--no-progress")
    assert rc == 2 and "nowhere" in err and len(err.strip().splitlines()) == 1


def _image_folder(root: Path, corrupt: bool) -> Path:
    for split in ("train", "test"):
        for c, color in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(8 if split == "train" else 3):
                Image.new("RGB", (16, 16), tuple(v + 3 * k for v in color)).save(d / f"{k}.png")
    if corrupt:
        good = (root / "train" / "cat" / "0.png").read_bytes()
        (root / "train" / "cat" / "0.png").write_bytes(good[: len(good) // 2])  # truncated
    return root


def _one_line_error(cli, *argv: str, words: tuple[str, ...]) -> str:
    rc, _, err = cli(*argv)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"swinrmt {argv[0]}: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_corrupt_images_are_skipped_with_a_count_or_rejected(cli, tmp_path: Path):
    data = _image_folder(tmp_path / "pets", corrupt=True)
    base = ["train", "--data", str(data), "--no-progress", "--set", f"model.name={TINY}", "batch_size=4",
            "epochs=1", "img_size=16"]
    rc, _, err = cli(*base, "--out", str(tmp_path / "a"))
    assert rc == 0, err
    assert "skipped 1 corrupt" in err
    _one_line_error(cli, *base, "data.on_corrupt=error", "--out", str(tmp_path / "b"),
                    words=("corrupt or unreadable image file", "0.png"))


def test_user_errors_are_one_line(cli, tmp_path: Path, tiny_run: Path):
    out = str(tmp_path / "x")
    _one_line_error(cli, "train", "--data", str(tmp_path / "no" / "such" / "dir"), "--out", out,
                    words=("dataset path not found",))
    _one_line_error(cli, "train", "--out", out, "--set", *tiny_overrides(**{"model.num_classes": 5}),
                    words=("label", "out of range for a 5-class model"))
    _one_line_error(cli, "train", "--out", out, "--set", "optim.lrr=1",
                    words=("unknown recipe key 'optim.lrr'", "accepted keys under 'optim'"))
    _one_line_error(cli, "train", "--out", out, "--recipe", str(tmp_path / "nope.yaml"), words=("nope.yaml",))
    _one_line_error(cli, "train", "--out", out, "--model", "gated_swinrmt_swat_nanoo",
                    words=("unknown model", "gated_swinrmt_swat_nano"))
    _one_line_error(cli, "eval", "--checkpoint", str(tiny_run), "--model", "rmt_nano",
                    words=(f"'{TINY}'", "'rmt_nano'"))
    _one_line_error(cli, "train", "--resume", str(tiny_run), "--model", "rmt_nano", "--epochs", "3",
                    words=(f"'{TINY}'", "'rmt_nano'"))
    if not torch.cuda.is_available():
        _one_line_error(cli, "train", "--out", out, "--device", "cuda", words=("CUDA is not available",))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    _one_line_error(cli, "eval", "--checkpoint", str(bad), words=("not a readable safetensors checkpoint",))
    assert load_checkpoint(tiny_run / "checkpoints" / "last.safetensors").meta["epoch"] == 2  # untouched


def test_bf16_grad_checkpointing_and_sgd_step_schedule(tmp_path: Path):
    r = load_recipe("quick", tiny_overrides(epochs=1, precision="bf16", **{"model.grad_checkpointing": "true",
                    "optim.name": "sgd", "optim.lr": 0.05, "sched.name": "step", "sched.decay_epochs": 0.5,
                    "mixup.mixup_alpha": 0.4, "mixup.cutmix_alpha": 1.0}))
    result = train(r, tmp_path / "run", progress=False)
    steps = [x for x in read_jsonl(tmp_path / "run" / "metrics.jsonl") if x["kind"] == "step"]
    assert all(map(lambda x: x == x and abs(x) < 1e3, (s["loss"] for s in steps)))
    assert steps[0]["lr"] == pytest.approx(0.05 * 0.01) and steps[-1]["lr"] == pytest.approx(0.05 * 0.1)
    assert result["steps"] == 6 and 0 <= result["test_top1"] <= 100


def test_print_recipe_shows_resolved_overrides(cli):
    rc, out, _ = cli("train", "--print-recipe", "--epochs", "3", "--set", "optim.lr=5e-4")
    cfg = yaml.safe_load(out)
    assert rc == 0 and cfg["epochs"] == 3 and cfg["optim"]["lr"] == 5e-4
    assert os.path.basename(cfg["data"]["name"]) == "digits"

"""Issue 38, training side: divergence stops a run, a run directory has one writer, a resume keeps the protocol and
refuses a damaged checkpoint, a full disk is one line, stale temp files go, files follow the umask. Each test failed
on the code before the fix (docs/reliability.md)."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swinrmt.atomic import exclusive
from swinrmt.train import train
from swinrmt.train.checkpoint import load_checkpoint
from swinrmt.train.recipe import load_recipe
from train_tiny_model import tiny_overrides

HERE = Path(__file__).parent


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_a_diverged_run_stops_naming_the_step_and_writes_no_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = cli("train", "--out", str(out), "--no-progress", "--set",
                          *tiny_overrides(**{"optim.lr": "1e30", "log_every_steps": 3}))
    assert rc == 2, (stdout, err)
    line = _one_line(err)
    assert "not finite" in line and "step" in line, line
    assert "test top-1" not in stdout
    assert not (out / "checkpoints" / "last.safetensors").exists()
    assert not (out / "checkpoints" / "best.safetensors").exists()


def test_non_finite_recipe_values_are_rejected():
    for bad in ("optim.lr=.inf", "optim.lr=.nan", "optim.clip_grad_norm=.inf", "sched.min_lr=.nan"):
        with pytest.raises(ValueError, match="finite"):
            load_recipe("quick", [bad])


def test_a_byte_flipped_checkpoint_is_refused_on_resume(cli, tmp_path):
    out = tmp_path / "run"
    train(load_recipe("quick", tiny_overrides(epochs=1)), out, progress=False)
    last = out / "checkpoints" / "last.safetensors"
    data = bytearray(last.read_bytes())
    data[len(data) - 200] ^= 0x10  # a tensor byte: the file still opens
    last.write_bytes(bytes(data))
    rc, _, err = cli("train", "--resume", str(out), "--epochs", "2", "--no-progress")
    assert rc == 2, err
    assert "checksum" in _one_line(err)


def test_a_second_training_into_a_locked_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with exclusive(out, ".swinrmt-train.lock", "training"):  # what a running `swinrmt train --out run` holds
        with pytest.raises(ValueError, match="another training is running"):
            train(load_recipe("quick", tiny_overrides(epochs=1, seed=1)), out, progress=False)
    assert not (out / "config.yaml").exists()
    train(load_recipe("quick", tiny_overrides(epochs=1)), out, progress=False)  # the lock is free again


def test_a_resume_that_would_change_the_protocol_is_refused(cli, tmp_path):
    out = tmp_path / "run"
    train(load_recipe("quick", tiny_overrides(epochs=1)), out, progress=False)
    before = (out / "config.yaml").read_text()
    rc, _, err = cli("train", "--resume", str(out), "--no-progress", "--set", "batch_size=16")
    assert rc == 2, err
    assert "batch_size" in _one_line(err)
    assert (out / "config.yaml").read_text() == before
    rc, _, err = cli("train", "--resume", str(out), "--no-progress", "--set", "data.num_workers=0")
    assert rc == 0, err  # how it runs, not what it trains: allowed
    assert yaml.safe_load((out / "config.yaml").read_text())["batch_size"] == 8


def test_stale_temp_files_are_removed_and_files_follow_the_umask(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        train(load_recipe("quick", tiny_overrides(epochs=1)), out, progress=False)
        for name in ("config.yaml", "eval.json", "checkpoints/last.safetensors"):
            assert (out / name).stat().st_mode & 0o777 == 0o644, name
        stale = out / "checkpoints" / ".last.safetensors.abc123.tmp"  # what a kill during a write leaves
        stale.write_bytes(b"x" * 1000)
        train(None, out, resume=True, progress=False)
        assert not stale.exists()
    finally:
        os.umask(old)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_full_disk_at_a_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(HERE / "run_cli.py"), "train", "--out", str(out), "--no-progress",
                           "--set", *tiny_overrides(epochs=1)], preexec_fn=_limit_file_size, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])})
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_line(proc.stderr)
    assert "checkpoint" in line and "large" in line, line
    assert [p.name for p in (out / "checkpoints").iterdir()] == []  # no temp file left


def _tampered(tmp_path: Path, run: Path, **spec_changes) -> Path:
    """A copy of the run's checkpoint whose metadata describes another model (what an attacker would write)."""
    from swinrmt.train.checkpoint import save_checkpoint

    ck = load_checkpoint(run / "checkpoints" / "last.safetensors")
    meta = dict(ck.meta)
    meta["model"] = {**meta["model"], **spec_changes}
    out = tmp_path / f"tampered-{len(list(tmp_path.iterdir()))}.safetensors"
    save_checkpoint(out, model=ck.tensors("model"), meta=meta)
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(load_recipe("quick", tiny_overrides(epochs=1)), out, progress=False)
    return out


def test_tampered_checkpoint_metadata_is_refused_before_any_allocation(cli, tmp_path, tiny_run, monkeypatch):
    import torch

    import swinrmt.train.evaluation as ev

    real_builds = []
    build = ev.build_model

    def guarded(spec, *a, **k):
        if torch.empty(0).device.type != "meta":  # a real build: parameters allocated
            real_builds.append(spec["num_classes"])
            if spec["num_classes"] != 10:
                raise AssertionError(f"built {spec['num_classes']} classes for real")
        return build(spec, *a, **k)

    monkeypatch.setattr(ev, "build_model", guarded)
    for changes, words in (({"num_classes": 1_500_000}, ("num_classes", "1500000")),
                           ({"num_classes": 3_000_000_000}, ("num_classes", "3000000000")),
                           ({"num_classes": 100_000}, ("do not fit", "head.weight")),
                           ({"overrides": {"dim": 70_000}}, ("dim=70000",))):
        path = _tampered(tmp_path, tiny_run, **changes)
        rc, _, err = cli("eval", "--checkpoint", str(path), "--no-progress")
        assert rc == 2, err
        line = _one_line(err)
        for w in words:
            assert w in line, (w, line)
    assert real_builds == []


def test_tampered_config_json_is_refused_before_any_allocation(tmp_path, monkeypatch):
    import json

    import torch

    import swinrmt
    import swinrmt.hub as hub

    model = swinrmt.create_model("rmt_nano", num_classes=10, img_size=32)
    model.save_pretrained(str(tmp_path / "m"))
    build = hub.build_from_config

    def guarded(cfg, **k):
        if torch.empty(0).device.type != "meta":
            raise AssertionError(f"built {cfg} for real")
        return build(cfg, **k)

    monkeypatch.setattr(hub, "build_from_config", guarded)
    cfg_path = tmp_path / "m" / "config.json"
    good = json.loads(cfg_path.read_text())
    for changes, pattern in (({"num_classes": 3_000_000_000}, "num_classes"),
                             ({"num_classes": 500}, "do not fit"),
                             ({"overrides": {**good.get("overrides", {}), "depths": [100_000, 1, 1, 1]}}, "depths")):
        cfg_path.write_text(json.dumps({**good, **changes}))
        with pytest.raises(ValueError, match=pattern):
            swinrmt.from_pretrained(str(tmp_path / "m"))


def test_compare_does_not_replace_a_users_own_files(tmp_path):
    from swinrmt import compare as C

    out = tmp_path / "U"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    (out / "runs.csv").write_text("my,table\n")
    args = dict(seeds=[0], recipe_overrides=tiny_overrides(epochs=1), progress=False)
    with pytest.raises(ValueError, match="report.md exists and is not a file swinrmt compare wrote"):
        C.compare(["train_test_tiny"], "quick", out, **args)
    assert (out / "report.md").read_text() == "my notes" and (out / "runs.csv").read_text() == "my,table\n"
    assert not (out / "runs").exists()  # refused before training
    C.compare(["train_test_tiny"], "quick", out, report="tiny.md", **{**args, "recipe_overrides": args[
        "recipe_overrides"]}, overwrite=True)  # runs.csv is replaced only with overwrite
    assert (out / "report.md").read_text() == "my notes"
    C.compare(["train_test_tiny"], "quick", out, report="tiny.md", **args)  # its own files: replaced freely


def test_compare_marks_a_nan_run_failed_and_names_a_garbage_result(tmp_path):
    import json

    from swinrmt import compare as C

    out = tmp_path / "c"
    C.compare(["train_test_tiny"], "quick", out, seeds=[0, 1], recipe_overrides=tiny_overrides(epochs=1),
              progress=False)
    res = out / "runs" / "train_test_tiny" / "seed-1" / "result.json"
    row = json.loads(res.read_text())
    res.write_text(json.dumps({**row, "test_top1": float("nan"), "test_ema_top1": None}))  # what a NaN run wrote
    rep = C.write_report(out)
    assert rep["summary"][0]["seeds"] == [0] and len(rep["failed"]) == 1
    assert "Failed runs" in (out / "report.md").read_text() and "seed 1" in (out / "report.md").read_text()
    res.write_text("{garbage")
    with pytest.raises(ValueError, match=r"seed-1/result.json: unreadable run result"):
        C.write_report(out)


def test_a_second_evaluation_does_not_replace_the_first(cli, tmp_path, tiny_run):
    first = cli("eval", "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--no-progress")
    assert first[0] == 0, first[2]
    (report,) = tmp_path.glob("*.json")
    before = report.read_text()
    rc, _, err = cli("eval", "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--no-progress", "--limit", "10")
    assert report.read_text() == before
    assert rc == 0 and len(list(tmp_path.glob("*.json"))) == 2, err  # its own name: the subset is in it
    rc, _, err = cli("eval", "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--no-progress")
    assert rc == 2 and "--overwrite" in _one_line(err) and report.read_text() == before
    rc, _, err = cli("eval", "--checkpoint", str(tiny_run), "--out", str(tmp_path), "--no-progress", "--overwrite")
    assert rc == 0, err

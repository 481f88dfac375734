"""`compare --jobs`: a pooled run equals the same run alone; a failing job costs no other; a killed pool resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from swinrmt import compare as C
from swinrmt.cli import CLIError

TINY = ["epochs=1", "batch_size=32", "data.limit_train=64", "data.limit_test=40", "img_size=16",
        "log_every_steps=1", "data.verify=false"]
MODELS = ["rmt_nano", "gated_swinrmt_swat_nano"]


def _tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "last.safetensors"))


def test_a_pooled_run_is_bit_identical_to_the_same_run_alone(tmp_path):
    pooled = C.compare(MODELS, "quick", tmp_path / "pool", seeds=[0], recipe_overrides=TINY, progress=False,
                       workers=2, threads=2)
    alone = C.compare(MODELS[:1], "quick", tmp_path / "alone", seeds=[0], recipe_overrides=TINY, progress=False,
                      workers=1, threads=1)
    a, b = _tensors(tmp_path / "pool/runs/rmt_nano/seed-0"), _tensors(tmp_path / "alone/runs/rmt_nano/seed-0")
    assert a.keys() == b.keys() and any(k.startswith("model.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    res = json.loads((tmp_path / "pool/runs/rmt_nano/seed-0/result.json").read_text())
    assert res["threads"] == 1 and res["machine"].startswith(("CPU", "GPU")) and res["wall_s"] > 0
    assert pooled["summary"][0]["top1_mean"] == alone["summary"][0]["top1_mean"]
    assert (tmp_path / "pool/logs/rmt_nano-seed-0.log").read_text().count("training on 1 thread(s)") == 1


def test_one_failing_job_loses_no_other_run(tmp_path):
    out = tmp_path / "cmp"
    broken = out / "runs" / "rmt_nano" / "seed-0"  # a run that cannot resume: its checkpoint is garbage
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text("seed: 0\n")
    (broken / "checkpoints" / "last.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CLIError, match=r"1 of 2 run\(s\) failed, the others are kept: rmt_nano/seed-0: "):
        C.compare(MODELS, "quick", out, seeds=[0], recipe_overrides=TINY, progress=False, workers=2, threads=2)
    assert (out / "runs/gated_swinrmt_swat_nano/seed-0/result.json").is_file()
    assert "| `gated_swinrmt_swat_nano` |" in (out / "report.md").read_text()
    assert (broken / "checkpoints" / "last.safetensors").read_bytes() == b"not a checkpoint", "nothing overwritten"


def test_a_killed_pool_resumes_every_unfinished_run(tmp_path):
    out = tmp_path / "cmp"
    longer = [s for s in TINY if not s.startswith(("epochs", "data.limit_train"))] + [
        "epochs=3", "data.limit_train=256", "ckpt_every_steps=1"]
    cmd = [sys.executable, "-m", "swinrmt", "compare", "--models", *MODELS, "--seeds", "1", "--recipe", "quick",
           "--out", str(out), "--jobs", "2", "--threads", "2", "--no-progress", "--set", *longer]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpts = [out / "runs" / m / "seed-0" / "checkpoints" / "last.safetensors" for m in MODELS]
    deadline = time.monotonic() + 240
    while not all(c.exists() for c in ckpts):
        assert p.poll() is None and time.monotonic() < deadline, "the pool ended before both runs checkpointed"
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)  # the parent alone: its children must die with it
    p.wait()
    time.sleep(1.0)
    survivors = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert survivors == [], "children outlived the killed pool"
    assert not any((out / "runs" / m / "seed-0" / "result.json").exists() for m in MODELS)
    rep = C.compare(MODELS, "quick", out, seeds=[0], recipe_overrides=longer, progress=False, workers=2, threads=2)
    assert {s["label"] for s in rep["summary"]} == set(MODELS)
    for m in MODELS:
        assert "resuming" in (out / "logs" / f"{m}-seed-0.log").read_text()
        epochs = [json.loads(x) for x in (out / "runs" / m / "seed-0" / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [0, 1, 2]


def test_jobs_resolve_and_bad_values_are_one_line_errors():
    assert C.resolve_jobs("3") == 3
    assert C.resolve_jobs("auto", "cpu", threads=2) == 2
    assert C.resolve_jobs("auto", "cuda") == 1
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match="--jobs must be a positive integer or auto"):
            C.resolve_jobs(bad)


def test_two_compares_cannot_share_a_report_directory(tmp_path):
    import fcntl

    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / C.LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another swinrmt compare is running"):
            C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY, progress=False)


def test_speed_only_settings_do_not_split_the_protocol(tmp_path):
    C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY, progress=False)
    C.compare(["rmt_nano"], "quick", tmp_path, seeds=[0], recipe_overrides=TINY + ["cpu_threads=1",
              "data.decode_cache=false"], progress=False)  # trains nothing: the run is finished


def test_the_progress_display_reads_each_run_from_its_own_metrics(tmp_path):
    from swinrmt.pool import Job, _progress

    job = Job("m/seed-0", tmp_path / "run", None, epochs=4, meta={}, log=tmp_path / "m.log")
    assert _progress(job) == (0.0, "starting")
    job.run_dir.mkdir()
    lines = [{"kind": "step", "epoch": 0, "batch": 50, "steps_per_epoch": 100},
             {"kind": "epoch", "epoch": 0, "test_top1": 41.5},
             {"kind": "step", "epoch": 1, "batch": 25, "steps_per_epoch": 100}]
    (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines[:2]) + '{"kind": "st')
    assert _progress(job) == (0.25, "e1 41.5%")  # a half-written last line is skipped
    (job.run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _progress(job) == (pytest.approx(1.25 / 4), "e2 25%")

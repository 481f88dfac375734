"""benchmarks/reproduction/collect.py: a finished run outlives its machine through the records kept in the repository.

A run folder restored from the records must count its finished runs as done (compare trains only the others, and the
report reads them as if trained there), never replace what the folder holds, and refuse a folder of another revision
or recipe.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from swinrmt import compare as C
from swinrmt.train.loop import train

REPO = Path(__file__).resolve().parents[1]
TINY = ["epochs=1", "batch_size=32", "data.limit_train=64", "data.limit_test=40", "img_size=16",
        "log_every_steps=1", "data.verify=false"]
MODELS = ["rmt_nano", "gated_swinrmt_swat_nano"]


def _collect_module():
    spec = importlib.util.spec_from_file_location("collect", REPO / "benchmarks" / "reproduction" / "collect.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _counting(calls: list[str], stop_after: int | None = None):
    def fn(recipe, run_dir, **kw):
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt("simulated end of session")
        calls.append(Path(run_dir).parent.name)
        return train(recipe, run_dir, **{**kw, "progress": False})
    return fn


def test_runs_finished_on_a_lost_machine_are_restored_and_not_trained_again(tmp_path):
    col = _collect_module()
    lost, records, bare = tmp_path / "lost", tmp_path / "repo-records", tmp_path / "bare"
    with pytest.raises(SystemExit, match="no compare report and no finished run"):
        col.collect(tmp_path / "nothing", records)
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):  # the session ends after the first run: no report yet
        C.compare(MODELS, "quick", lost, seeds=[0], recipe_overrides=TINY, progress=False,
                  train_fn=_counting(calls, stop_after=1))
    (lost / "code-rev").write_text("abc1234\n")
    copied = col.collect(lost, records)
    assert calls == ["rmt_nano"] and not (records / "report.md").exists()
    assert {p.name for p in copied} == {"compare.json", "code-rev", "result.json", "metrics.jsonl"}
    assert not list(records.rglob("*.safetensors")) and not list(records.rglob("checkpoints"))

    written = col.restore(records, bare)  # the next session's bare machine
    assert (bare / "code-rev").read_text() == "abc1234\n"
    assert (bare / "runs/rmt_nano/seed-0/result.json").read_bytes() == \
        (lost / "runs/rmt_nano/seed-0/result.json").read_bytes()
    assert col.restore(records, bare) == []  # idempotent: nothing it holds is written twice
    assert len(written) == 4
    calls2: list[str] = []
    rep = C.compare(MODELS, "quick", bare, seeds=[0], recipe_overrides=TINY, progress=False,
                    train_fn=_counting(calls2))
    assert calls2 == ["gated_swinrmt_swat_nano"]
    lost_rmt = json.loads((lost / "runs/rmt_nano/seed-0/result.json").read_text())["test_top1"]
    assert rep["summary"][0]["label"] == "rmt_nano" and rep["summary"][0]["top1_mean"] == lost_rmt
    assert (bare / "curves.png").exists()

    col.collect(bare, records)  # the report and both runs now live in the records
    assert (records / "report.md").exists() and (records / "finished-runs/gated_swinrmt_swat_nano/seed-0/result.json").exists()


def test_restore_keeps_what_the_folder_holds_and_refuses_another_revision_or_recipe(tmp_path):
    col = _collect_module()
    src, records = tmp_path / "src", tmp_path / "records"
    C.compare(["rmt_nano"], "quick", src, seeds=[0], recipe_overrides=TINY, progress=False)
    (src / "code-rev").write_text("abc1234\n")
    col.collect(src, records)

    partial = tmp_path / "partial"  # this machine holds an unfinished copy of the same run: left as it is
    (partial / "runs/rmt_nano/seed-0").mkdir(parents=True)
    (partial / "runs/rmt_nano/seed-0/config.yaml").write_text("mine\n")
    col.restore(records, partial)
    assert not (partial / "runs/rmt_nano/seed-0/result.json").exists()
    assert (partial / "runs/rmt_nano/seed-0/config.yaml").read_text() == "mine\n"

    other_rev = tmp_path / "other-rev"
    other_rev.mkdir()
    (other_rev / "code-rev").write_text("fff0000\n")
    with pytest.raises(SystemExit, match="another revision"):
        col.restore(records, other_rev)
    assert (other_rev / "code-rev").read_text() == "fff0000\n" and not (other_rev / "runs").exists()

    other_recipe = tmp_path / "other-recipe"
    C.compare(["rmt_nano"], "quick", other_recipe, seeds=[0], recipe_overrides=[*TINY, "optim.lr=0.5"], progress=False)
    before = (other_recipe / "compare.json").read_text()
    with pytest.raises(SystemExit, match="different recipe"):
        col.restore(records, other_recipe)
    assert (other_recipe / "compare.json").read_text() == before

    with pytest.raises(SystemExit, match="records no finished run"):
        col.restore(tmp_path / "empty", tmp_path / "x")


def test_the_records_are_not_kept_out_of_the_repository_by_gitignore():
    """The records exist to be committed: a path .gitignore swallows would be lost with the machine."""
    col = _collect_module()
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: nothing to check against .gitignore")
    record = f"benchmarks/reproduction/tin100-ladder/tin100-2ep/{col.RECORDS}/rmt_nano/seed-0/result.json"
    for path in (record, "benchmarks/reproduction/tin100-ladder/tin100-2ep/code-rev"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 1, path
    assert subprocess.run(["git", "check-ignore", "-q", "benchmarks/x/runs/m/seed-0/result.json"],
                          cwd=REPO).returncode == 0  # the check can fail: run folders are still ignored

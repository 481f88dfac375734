"""`swinrmt ladder` on hand-made reports: budgets, paired gaps, ordering and the errors that keep rungs honest."""
import json

import pytest

from swinrmt.cli import main
from swinrmt.ladder import ladder


def _report(d, accs: dict, images: int | None, epochs=2, limit=1000, batch=100, data="tin.tar.gz", ema=False,
            extra=None, machine=None):
    d.mkdir(parents=True)
    recipe = {"epochs": epochs, "batch_size": batch, "data": {"name": f"/somewhere/{data}", "limit_train": limit},
              **(extra or {})}
    (d / "compare.json").write_text(json.dumps({"recipe": recipe, "recipe_name": "r", "labels": list(accs)}))
    rows = [{"label": lab, "seed": s, "test_top1": a, **({"test_ema_top1": a + 1} if ema else {}),
             **({"train_images": images} if images else {}), **({"machine": machine} if machine else {})}
            for lab, vals in accs.items() for s, a in enumerate(vals)]
    (d / "runs.json").write_text(json.dumps(rows))
    return d


def test_rungs_are_ordered_by_budget_with_paired_gaps(tmp_path):
    big = _report(tmp_path / "big", {"rmt": [50.0, 52.0, 51.0], "swat": [53.0, 55.0, 54.0]}, images=300_000)
    small = _report(tmp_path / "small", {"swat": [10.0, 11.0, 12.0], "rmt": [10.0, 10.0, 10.0]}, images=None)
    rungs = ladder([big, small], "rmt", tmp_path / "out")
    assert [r["images"] for r in rungs] == [2000, 300_000]  # from the recipe when runs do not record it
    gap = rungs[1]["models"]["swat"]["diff"]
    assert gap["mean"] == pytest.approx(3.0) and gap["lo"] == pytest.approx(3.0) and gap["n"] == 3
    assert list(rungs[0]["models"]) == ["rmt", "swat"], "baseline first"
    assert (tmp_path / "out" / "ladder.png").stat().st_size > 10_000
    md = (tmp_path / "out" / "ladder.md").read_text()
    assert "| 1 | `r` (`small`) | 2,000 |" in md and "+3.00 [+3.00, +3.00] (n=3)" in md


def test_ema_metric_and_errors(tmp_path):
    a = _report(tmp_path / "a", {"rmt": [1.0, 2.0], "swat": [2.0, 4.0]}, images=10, ema=True)
    assert ladder([a], "rmt", tmp_path / "o", metric="ema")[0]["models"]["swat"]["mean"] == 4.0
    b = _report(tmp_path / "b", {"rmt": [1.0], "swat": [2.0]}, images=20)
    with pytest.raises(ValueError, match="has no ema accuracy"):
        ladder([a, b], "rmt", tmp_path / "o", metric="ema")
    with pytest.raises(ValueError, match="baseline 'nope' has no finished run"):
        ladder([a], "nope", tmp_path / "o")
    c = _report(tmp_path / "c", {"rmt": [1.0]}, images=30, data="cifar.tar.gz")
    with pytest.raises(ValueError, match="train on different data"):
        ladder([a, c], "rmt", tmp_path / "o")
    d = _report(tmp_path / "d", {"rmt": [1.0]}, images=None, limit=None)
    with pytest.raises(ValueError, match="do not record train_images"):
        ladder([d], "rmt", tmp_path / "o")
    assert main(["ladder", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


def test_settings_and_machines_that_differ_between_rungs_are_listed(tmp_path):
    a = _report(tmp_path / "a", {"rmt": [1.0]}, images=10, machine="CPU A",
                extra={"precision": "bf16", "log_every_steps": 5, "cpu_threads": 1})
    b = _report(tmp_path / "b", {"rmt": [2.0]}, images=30, epochs=6, machine="CPU B",
                extra={"precision": "fp32", "log_every_steps": 9, "cpu_threads": 2})
    ladder([b, a], "rmt", tmp_path / "o")
    md_lines = (tmp_path / "o" / "ladder.md").read_text().splitlines()
    assert '| `precision` | "bf16" | "fp32" |' in md_lines and "| `epochs` | 2 | 6 |" in md_lines
    assert "| machine | CPU A | CPU B |" in md_lines
    assert not any(k in x for k in ("log_every_steps", "cpu_threads", "batch_size", "data.name") for x in md_lines)
    ladder([a], "rmt", tmp_path / "s")
    assert "differ between rungs" not in (tmp_path / "s" / "ladder.md").read_text(), "one rung has nothing to differ from"


def test_the_committed_ladder_is_what_its_command_draws_from_the_committed_reports(tmp_path):
    # the figures of tin100-ladder/README.md and the top-level README come from this command; a lost or edited record,
    # or a change to the ladder's statistics, shows here
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduction"
    rungs = ladder([root / "tin100", root / "tin100-ladder" / "tin100-2ep", root / "tin100-ladder" / "tin100-6ep"],
                   "rmt_nano", tmp_path)
    assert [r["images"] for r in rungs] == [24960, 99968, 299904]
    assert [sorted((lab, m["n"]) for lab, m in r["models"].items()) for r in rungs] == [
        [("gated_swinrmt_retention_nano", 3), ("gated_swinrmt_swat_nano", 3), ("rmt_nano", 3)]] * 3
    assert (tmp_path / "ladder.md").read_text() == (root / "tin100-ladder" / "ladder.md").read_text()

"""benchmarks/reproduction/lr_pilot.py: the learning-rate pilot read across its compares."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("lr_pilot", REPO / "benchmarks" / "reproduction" / "lr_pilot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _schedule(n: int = 40, warm: int = 4) -> list[float]:
    """Per record: linear warm-up, then cosine to 0 (the pilot's shape)."""
    return [(i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / (n - warm))) for i in range(n)]


def _compare(root: Path, lr: float, runs: dict[tuple[str, int], tuple[float, list[float]]], **recipe) -> Path:
    folder = root / f"lr{lr:g}"
    folder.mkdir()
    (folder / "compare.json").write_text(json.dumps({"recipe": {"optim": {"lr": lr}, "epochs": 2, **recipe}}))
    for (label, seed), (top1, losses) in runs.items():
        run = folder / "finished-runs" / label / f"seed-{seed}"
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({"label": label, "seed": seed, "test_top1": top1,
                                                     "machine": "CPU test"}))
        recs = [{"kind": "step", "step": 50 * (i + 1), "lr": lr * f, "loss": loss,
                 "attn_logit_max": [1.0, 2.0 * lr * 1e3], "attn_entropy": [0.9, 0.8], "gate_mean": [None, None]}
                for i, (f, loss) in enumerate(zip(_schedule(), losses))]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return folder


FALLING = [4.6 - 0.04 * i for i in range(40)]
STALL = [4.6 - 0.04 * i if i < 6 else 4.4 + 0.02 * (i - 6) if i < 16 else 4.6 - 0.04 * (i - 10) for i in range(40)]


def test_rise_is_found_only_where_the_loss_climbs_at_high_lr():
    lp = _module()
    rec = lambda losses: [{"lr": f, "loss": x} for f, x in zip(_schedule(), losses)]  # noqa: E731
    assert lp.peak_phase_rise(rec(FALLING)) < 0
    # STALL: the lr peaks at record 3 and stays above half the peak to record 22. First window (records 3-5): mean
    # loss 4.44; from record 6 the loss climbs 0.02 per record to 4.58 at record 15: window 13-15 has mean 4.56.
    assert lp.peak_phase_rise(rec(STALL)) == pytest.approx(0.12)
    assert lp.peak_phase_rise([]) is None


def test_table_gives_each_model_its_best_lr_and_per_run_health(tmp_path: Path, capsys):
    lp = _module()
    a = _compare(tmp_path, 1e-3, {("rmt_nano", 0): (20.0, FALLING), ("rmt_nano", 1): (22.0, FALLING),
                                  ("ret", 0): (15.0, FALLING)})
    b = _compare(tmp_path, 2e-3, {("rmt_nano", 0): (19.0, FALLING), ("ret", 0): (12.0, STALL)})
    lp.main([str(b), str(a)])
    out = capsys.readouterr().out
    assert "| model | lr 0.001 | lr 0.002 | best lr |" in out
    assert "| `rmt_nano` | 21.00 ± 1.41 (n=2) | 19.00 ± 0.00 (n=1) | 0.001 |" in out
    assert "| `ret` | 15.00 ± 0.00 (n=1) | 12.00 ± 0.00 (n=1) | 0.001 |" in out
    stall_row = next(line for line in out.splitlines() if line.startswith("| `ret` | 0.002 | 0 |"))
    assert "| +0.120" in stall_row and "| 4 | 0.800 | - | CPU test |" in stall_row  # logit 2 * lr * 1e3 = 4


def test_folders_of_another_protocol_and_non_folders_are_refused(tmp_path: Path):
    lp = _module()
    a = _compare(tmp_path, 1e-3, {("m", 0): (1.0, FALLING)})
    b = _compare(tmp_path, 2e-3, {("m", 0): (1.0, FALLING)}, precision="bf16")
    with pytest.raises(SystemExit, match="differs in: precision"):
        lp.main([str(a), str(b)])
    with pytest.raises(SystemExit, match="not a compare folder"):
        lp.main([str(tmp_path)])


def test_best_lr_waits_for_a_complete_grid(tmp_path: Path, capsys):
    lp = _module()
    a = _compare(tmp_path, 1e-3, {("rmt_nano", 0): (20.0, FALLING), ("rmt_nano", 1): (22.0, FALLING)})
    b = _compare(tmp_path, 2e-3, {("rmt_nano", 0): (23.0, FALLING)})
    with pytest.raises(SystemExit, match="0.001: 2, 0.002: 1"):
        lp.main([str(a), str(b), "--best", "rmt_nano"])
    run = b / "finished-runs" / "rmt_nano" / "seed-0"
    (b / "finished-runs" / "rmt_nano" / "seed-1").mkdir()
    for name in ("metrics.jsonl", "result.json"):
        text = (run / name).read_text()
        (b / "finished-runs" / "rmt_nano" / "seed-1" / name).write_text(text.replace('"seed": 0', '"seed": 1'))
    lp.main([str(a), str(b), "--best", "rmt_nano"])
    assert capsys.readouterr().out.strip() == "0.002"  # 23.0 against 21.0

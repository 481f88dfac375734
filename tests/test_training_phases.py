"""benchmarks/reproduction/training_phases.py: per-phase loss, learning rate, gradient norm and clip share of runs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("training_phases",
                                                  REPO / "benchmarks" / "reproduction" / "training_phases.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(folder: Path, label: str, steps: list[dict]) -> None:
    run = folder / "finished-runs" / label / "seed-0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"label": label, "seed": 0, "test_top1": 12.5, "test_ema_top1": 12.0,
                                                 "machine": "CPU test", "train_images": 640}))
    recs = [{"kind": "step", **s} for s in steps] + [{"kind": "epoch", "epoch": 0, "step": steps[-1]["step"]}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_phase_means_and_missing_gradient_records(tmp_path: Path, capsys):
    tp = _module()
    logged = [{"step": s, "loss": 4.0 - s / 100, "lr": 1e-3, "grad_norm": float(s), "clipped": 1.0 if s > 20 else 0.0}
              for s in (10, 20, 30, 40)]
    _run(tmp_path, "with_norms", logged)
    _run(tmp_path, "old_run", [{k: v for k, v in s.items() if k in ("step", "loss", "lr")} for s in logged])
    tp.main([str(tmp_path), "--phases", "0,25"])
    out = capsys.readouterr().out
    new = out[out.index("with_norms"):]
    assert "top-1 12.50 raw, 12.00 EMA" in new
    # phase 0-25: steps 10, 20 -> loss 3.85, norm 15, none clipped; phase 25-41: steps 30, 40 -> 3.65, 35, all clipped
    assert "0-25            3.850  1.00e-03     15.000     0.0 %" in new
    assert "25-41           3.650  1.00e-03     35.000   100.0 %" in new
    old = out[out.index("old_run"):out.index("with_norms")]
    assert "0-25            3.850  1.00e-03          -         -" in old  # runs from before the norm was logged


def test_empty_folder_and_bad_phases_are_one_line_errors(tmp_path: Path):
    tp = _module()
    with pytest.raises(SystemExit, match="no finished run"):
        tp.main([str(tmp_path)])
    _run(tmp_path, "m", [{"step": 1, "loss": 1.0, "lr": 1e-3}])
    with pytest.raises(SystemExit, match="--phases must be"):
        tp.main([str(tmp_path), "--phases", "0,x"])


def _epochs(folder: Path, label: str, seed: int, curve: list[tuple[float, float]]) -> None:
    run = folder / "finished-runs" / label / f"seed-{seed}"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"label": label, "seed": seed, "test_top1": curve[-1][0]}))
    recs = [{"kind": "step", "step": 1, "loss": 4.0, "lr": 1e-3}]
    recs += [{"kind": "epoch", "epoch": i, "step": i + 1, "test_top1": t, "train_loss": loss}
             for i, (t, loss) in enumerate(curve)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_epoch_table_pairs_gaps_by_seed(tmp_path: Path, capsys):
    tp = _module()
    _epochs(tmp_path, "base", 0, [(10.0, 4.0), (20.0, 3.0)])
    _epochs(tmp_path, "base", 1, [(12.0, 4.2), (22.0, 3.2)])
    _epochs(tmp_path, "new", 0, [(13.0, 3.9), (19.0, 3.1)])
    _epochs(tmp_path, "new", 1, [(13.0, 4.1), (25.0, 3.1)])
    tp.main([str(tmp_path), "--epochs", "base"])
    out = capsys.readouterr().out
    assert out.index("base (seeds 0, 1)") < out.index("new (seeds 0, 1)")
    base = out[:out.index("new (")]
    assert "      1    11.00       4.100" in base and "      2    21.00       3.100" in base
    new = out[out.index("new ("):]
    # epoch 1: gaps +3 and +1 (mean +2); epoch 2: -1 and +3 (mean +1); loss is the mean over the label's own seeds
    assert "      1    13.00       4.000   +2.00  +3.00 +1.00" in new
    assert "      2    22.00       3.100   +1.00  -1.00 +3.00" in new
    with pytest.raises(SystemExit, match="no finished run labelled 'rmt'"):
        tp.main([str(tmp_path), "--epochs", "rmt"])

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

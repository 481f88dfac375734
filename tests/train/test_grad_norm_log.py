"""Step records carry the pre-clip gradient norm (mean and max over the interval) and the share of steps clipped."""
from pathlib import Path

import pytest
import torch

from swinrmt.train import train
from swinrmt.train.metrics import read_jsonl
from swinrmt.train.recipe import load_recipe
from train_tiny_model import tiny_overrides


def _steps(run: Path) -> list[dict]:
    return [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "step"]


def test_logged_norm_is_the_gradients_norm_and_unclipped_runs_have_no_clip_share(tmp_path: Path):
    """log_every_steps=1: each record's norm is that step's norm, measured here from the gradients themselves."""
    seen: list[float] = []

    def probe(trainer) -> None:
        grads = [p.grad.double().flatten() for p in trainer.model.parameters() if p.grad is not None]
        seen.append(torch.linalg.vector_norm(torch.cat(grads)).item())

    recipe = load_recipe("quick", tiny_overrides(epochs=1, **{"optim.clip_grad_norm": "null"}))
    train(recipe, tmp_path / "run", progress=False, step_callback=probe)
    steps = _steps(tmp_path / "run")
    assert len(steps) == len(seen) == 6
    for rec, norm in zip(steps, seen):
        assert rec["grad_norm"] == pytest.approx(norm, rel=1e-5) and rec["grad_norm_max"] == rec["grad_norm"]
        assert "clipped" not in rec  # no clipping, no clip share


def test_clipping_reports_the_norm_before_the_clip_and_the_share_clipped(tmp_path: Path):
    over = {"optim.clip_grad_norm": "1e-6", "log_every_steps": 3}
    train(load_recipe("quick", tiny_overrides(epochs=1, **over)), tmp_path / "tight", progress=False)
    steps = _steps(tmp_path / "tight")
    assert [r["step"] for r in steps] == [3, 6]
    for r in steps:
        assert r["clipped"] == 1.0 and r["grad_norm_max"] >= r["grad_norm"] > 1e-3  # the norm before clipping

    train(load_recipe("quick", tiny_overrides(epochs=1, **{**over, "optim.clip_grad_norm": "1e9"})),
          tmp_path / "loose", progress=False)
    assert [r["clipped"] for r in _steps(tmp_path / "loose")] == [0.0, 0.0]

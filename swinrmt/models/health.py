"""The attention-health probe: per stage, how peaked the attention rows are, how large the content logits grow and
how far the G1 gates close, measured on a few fixed images.

The trainer calls `attention_health` at every step record (`Recipe.health_images`); nothing runs between records.
A probe is one no-grad forward in eval mode (no dropout, no drop-path, no batch-norm update) plus each mixer's
`health` (the plain reference math, `swinrmt.layers.health`), so it neither changes the training nor draws from
its random streams.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..layers.gates import OutputGate
from ..layers.health import HealthSums, add_sums, gate_health

STAGE_KEYS = ("attn_entropy", "attn_peak", "attn_logit_max", "gate_mean", "gate_low")


@torch.no_grad()
def attention_health(model: nn.Module, x: torch.Tensor) -> dict[str, list[float | None]]:
    """Per stage (a list over `model.stages`): attn_entropy (mean normalised row entropy, 1 = uniform over the keys a
    row may see), attn_peak (mean largest row weight), attn_logit_max (largest |q.k|/sqrt(d) before decay, bias,
    masks and nonlinearity), gate_mean (mean G1 gate value) and gate_low (share of gate values below 0.1); None
    where a stage has no attention or no gate. Empty for a model without `stages`."""
    stages = getattr(model, "stages", None)
    if stages is None:
        return {}
    inputs: dict[nn.Module, torch.Tensor] = {}
    gates: dict[int, HealthSums] = {}
    handles = []
    for i, stage in enumerate(stages):
        for m in stage.modules():
            if hasattr(m, "health") and m is not stage:
                handles.append(m.register_forward_pre_hook(lambda mod, args: inputs.__setitem__(mod, args[0])))
            elif isinstance(m, OutputGate):
                def grab(mod: OutputGate, args: tuple, out: Any, i: int = i) -> None:
                    add_sums(gates.setdefault(i, {}), gate_health(mod.scores(args[1])))
                handles.append(m.register_forward_hook(grab))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    out: dict[str, list[float | None]] = {k: [] for k in STAGE_KEYS}
    for i, stage in enumerate(stages):
        sums: HealthSums = {}
        for m in stage.modules():
            if m in inputs:
                add_sums(sums, m.health(inputs[m]))
        rows = float(sums["rows"]) if sums else 0.0
        out["attn_entropy"].append(float(sums["entropy"]) / rows if rows else None)
        out["attn_peak"].append(float(sums["peak"]) / rows if rows else None)
        out["attn_logit_max"].append(float(sums["logit_max"]) if sums else None)
        g = gates.get(i)
        out["gate_mean"].append(float(g["gate_sum"] / g["gate_n"]) if g else None)
        out["gate_low"].append(float(g["gate_low"] / g["gate_n"]) if g else None)
    return out

"""Attention health: how peaked the attention rows are and how large the content logits grow.

A learning rate that is too high for attention shows first in its logits: q.k grows, the rows collapse onto one key
and the gradient norm need not move (the softmax saturates). These sums let the trainer record it per stage
(`swinrmt.models.health`). They are computed from the plain reference math on a few probe images, never inside a
training step, so they cost nothing between records.

Every function returns sums (not means), so a stage's figure is one division over all its blocks and passes.
"""
from __future__ import annotations

from typing import Dict

import torch

HealthSums = Dict[str, torch.Tensor]


def row_health(weights: torch.Tensor, content: torch.Tensor, allowed: torch.Tensor,
               valid_rows: torch.Tensor | None = None) -> HealthSums:
    """Sums over the attention rows of one pass.

    weights (..., n, n): what the row applies to its values (softmax rows, or sigmoid weights, which are renormalised
    here so that a row is a distribution); content (..., n, n): the logit q.k / sqrt(d) before decay, ALiBi, masks and
    the nonlinearity; allowed (broadcastable, bool): the keys a row may see; valid_rows (broadcastable to
    weights[..., 0], bool): rows of real (not padding) queries.

    entropy: the sum of H / log(n_row) over rows with n_row >= 2 keys (1 = uniform over the allowed keys, 0 = one
    key); peak: the sum of each such row's largest weight; rows: their count; logit_max: the largest |content| over
    allowed (query, key) pairs.
    """
    weights, content = weights.float(), content.float()
    allowed = allowed.expand_as(weights)
    n = allowed.sum(-1)
    rows = n >= 2
    if valid_rows is not None:
        rows = rows & valid_rows.expand_as(rows)
    w = weights.masked_fill(~allowed, 0.0)
    p = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    h = -torch.special.xlogy(p, p).sum(-1)
    norm_h = h / torch.log(n.clamp_min(2).float())
    pairs = allowed if valid_rows is None else allowed & valid_rows.expand_as(rows).unsqueeze(-1)
    return {"entropy": (norm_h * rows).sum(), "peak": (p.amax(-1) * rows).sum(), "rows": rows.sum().float(),
            "logit_max": content.abs().masked_fill(~pairs, 0.0).amax()}


def gate_health(gate: torch.Tensor, low: float = 0.1) -> HealthSums:
    """Sums over gate values in (0, 1): their sum, how many fall below `low` (a block shutting its output), count."""
    g = gate.float()
    return {"gate_sum": g.sum(), "gate_low": (g < low).sum().float(), "gate_n": torch.tensor(float(g.numel()))}


def add_sums(total: HealthSums, part: HealthSums) -> HealthSums:
    """Accumulate: maxima stay maxima, everything else adds."""
    for key, val in part.items():
        if key not in total:
            total[key] = val
        elif key.endswith("_max"):
            total[key] = torch.maximum(total[key], val)
        else:
            total[key] = total[key] + val
    return total

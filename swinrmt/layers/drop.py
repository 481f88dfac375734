"""Stochastic depth and LayerScale (the two regularisers RMT's blocks use)."""
from __future__ import annotations

import torch
import torch.nn as nn


class DropPath(nn.Module):
    """Drop the whole residual branch per sample with probability p (scaled so the expectation is unchanged)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)  # scale the (B, 1, ..) mask, not the activation: one pass over x, not two

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Per-channel residual scale, initialised small (1e-6 in RMT-B/L) so deep stages start near identity."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma

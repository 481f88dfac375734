"""RMT's feed-forward network: fc1 -> GELU -> h + DWConv3x3(h) -> fc2 (the conv adds locality inside the FFN)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .conv import DWConv
from .linear import Linear


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, dwconv: bool = True):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim, act="gelu")
        self.dwconv = DWConv(hidden_dim, 3) if dwconv else None
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.fc1(x))
        if self.dwconv is not None:
            h = self.dwconv(h, h)
        return self.drop(self.fc2(h))

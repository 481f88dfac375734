"""RMT's feed-forward network: fc1 -> GELU -> h + DWConv3x3(h) -> fc2 (the conv adds locality inside the FFN)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import kernels
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
        return self.drop(self.fc2(kernels.ffn_hidden(self, x)))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """h + DWConv(h), h = dropout(GELU(fc1 x)): what `kernels.ffn_hidden` computes, in the layers' own ops."""
        h = self.drop(self.fc1(x))
        return h if self.dwconv is None else self.dwconv(h, h)

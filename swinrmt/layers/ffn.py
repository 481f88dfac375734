"""RMT's feed-forward network: fc1 -> GELU -> h + DWConv3x3(h) -> fc2 (the conv adds locality inside the FFN)."""
from __future__ import annotations

import torch
import torch.nn as nn

from . import depthwise
from .conv import DWConv
from .linear import Linear, linear


class ConvFFN(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0, dwconv: bool = True):
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim, act="gelu")
        self.dwconv = DWConv(hidden_dim, 3) if dwconv else None
        self.fc2 = Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def fused(self, x: torch.Tensor) -> bool:
        """Whether GELU, conv and residual run as one depthwise-kernel pass over fc1's output (`layers.depthwise`)."""
        if self.dwconv is None or x.dim() != 4 or (self.drop.p and self.training):
            return False
        w = self.dwconv.conv.weight
        return (self.fc1.weight.dtype == w.dtype == torch.float32 and min(x.shape[1], x.shape[2]) >= w.shape[-1]
                and depthwise.takes(self.fc2.in_features, w.shape[-1], x.device, x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused(x):  # GELU(h) + conv(GELU(h)), GELU(h) recomputed in the backward rather than stored
            h = linear(x, self.fc1.weight, self.fc1.bias)
            conv = self.dwconv.conv
            return self.drop(self.fc2(depthwise.depthwise_conv(h, conv.weight, conv.bias, "self", "gelu")))
        h = self.drop(self.fc1(x))
        if self.dwconv is not None:
            h = self.dwconv(h, h)
        return self.drop(self.fc2(h))

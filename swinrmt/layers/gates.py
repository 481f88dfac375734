"""Input-dependent gates: the G1 output gate (Gated Attention, 2025) and the SwiGLU value gate (SWAT)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import kernels
from .linear import Linear

GATE_MODES = ("elementwise", "headwise")


class OutputGate(nn.Module):
    """Y' = Y * sigmoid(X W_g): lets a block suppress its own output and breaks the low-rank W_V W_O bottleneck.

    `elementwise` projects one gate per channel (the variant the G1 paper found best); `headwise` one scalar per head.
    """

    def __init__(self, dim: int, num_heads: int, mode: str = "elementwise", bias: bool = True):
        super().__init__()
        if mode not in GATE_MODES:
            raise ValueError(f"gate mode {mode!r} is not one of {GATE_MODES}")
        self.mode, self.num_heads = mode, num_heads
        self.proj = Linear(dim, dim if mode == "elementwise" else num_heads, bias=bias)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Gate values in (0, 1), shaped like the projection output (for visualisation and sparsity stats)."""
        return torch.sigmoid(self.proj(x))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return kernels.sigmoid_gate(y, self.proj(x), self.num_heads if self.mode == "headwise" else 0)


def gate_product(y: torch.Tensor, g: torch.Tensor, heads: int = 0) -> torch.Tensor:
    """y * g, with g one value per channel (heads=0) or per head (g (..., heads), y (..., heads * d))."""
    if not heads:
        return y * g
    shape = y.shape
    return (y.view(*shape[:-1], heads, -1) * g.unsqueeze(-1)).view(shape)


class SwiGLUValue(nn.Module):
    """V = (X W_v) * SiLU(X W_vg): SWAT's gated value projection."""

    def __init__(self, dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        out_dim = out_dim or dim
        self.value = Linear(dim, out_dim, bias=bias)
        self.gate = Linear(dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.swiglu(self.value(x), self.gate(x), self.training)

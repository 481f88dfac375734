"""Input-dependent gates: the G1 output gate (Gated Attention, 2025) and the SwiGLU value gate (SWAT)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from . import pointwise
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
        a = self.proj(x)
        heads = self.num_heads if self.mode == "headwise" else 0
        if torch.is_grad_enabled() and (y.requires_grad or a.requires_grad):
            return SigmoidGate.apply(y, a, heads)
        return gate_product(y, torch.sigmoid(a), heads)


def gate_product(y: torch.Tensor, g: torch.Tensor, heads: int = 0) -> torch.Tensor:
    """y * g, with g one value per channel (heads=0) or per head (g (..., heads), y (..., heads * d))."""
    if not heads:
        return y * g
    shape = y.shape
    return (y.view(*shape[:-1], heads, -1) * g.unsqueeze(-1)).view(shape)


class SigmoidGate(torch.autograd.Function):
    """z = y * sigmoid(a), keeping only z and a for the backward, never y.

    Autograd would keep y and sigmoid(a) for the product, and W_O keeps z as its input: three activation-sized tensors
    per gated block. Since dL/da = dz * y * g (1 - g) = dz * z (1 - g) with g = sigmoid(a), the output z (which W_O
    holds anyway) stands in for y, with no division by g: one activation-sized tensor less per gated block, for one
    sigmoid recomputed in the backward. The backward is plain differentiable tensor code on inputs and outputs, so
    double backward works.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, a: torch.Tensor, heads: int) -> torch.Tensor:
        z = gate_product(y, torch.sigmoid(a), heads)
        ctx.save_for_backward(z, a)
        ctx.heads = heads
        return z

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        z, a = ctx.saved_tensors
        heads, g = ctx.heads, torch.sigmoid(a)
        dz_z = dz * z
        if heads:
            dz_z = dz_z.view(*z.shape[:-1], heads, -1).sum(-1)
        return gate_product(dz, g, heads), (dz_z * (1 - g)).to(a.dtype), None


class SwiGLUValue(nn.Module):
    """V = (X W_v) * SiLU(X W_vg): SWAT's gated value projection."""

    def __init__(self, dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        out_dim = out_dim or dim
        self.value = Linear(dim, out_dim, bias=bias)
        self.gate = Linear(dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, g = self.value(x), self.gate(x)
        if pointwise.silu_mul_fits(v, g):  # one pass each way on CPU; keeps v and g, as the checkpoint below does
            return pointwise.silu_mul(v, g)
        if self.training and torch.is_grad_enabled() and (v.requires_grad or g.requires_grad):
            # recompute SiLU(g) in the backward instead of holding it: one activation-sized tensor less per block
            return checkpoint(pointwise.silu_mul_reference, v, g, use_reentrant=False)
        return pointwise.silu_mul_reference(v, g)

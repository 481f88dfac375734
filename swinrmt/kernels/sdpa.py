"""Softmax attention with an additive bias: the one place that picks the kernel.

`scaled_dot_product_attention` is the right call almost everywhere (fused on CPU in float32, fused on CUDA in every
dtype), with one measured exception: on CPU in bfloat16/float16 (autocast or a low-precision model) its fused kernel
with an attention mask runs 3-10x slower than in float32 (torch 2.13, 2 cores; `benchmarks/speed/README.md`), while
the same product written as two matmuls and a softmax runs about 2x faster than the float32 kernel. There the
explicit form is used, with the softmax accumulated in float32 as the fused kernels do. In float32 on CPU, calls over
short sequences that fit `short_attention` (RMT's row/column passes, its 2-D stages) run on that kernel instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers.rotary import FoldedRotary
from . import short_attention as short

LOW_PRECISION = (torch.bfloat16, torch.float16)


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     scale: float | None = None, rotary: FoldedRotary | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + bias) v over the last two axes; `scale` defaults to d^-1/2 as in SDPA.

    `rotary`: q and k rotated by that code first; the short-attention kernel does it as it loads them, every other
    kernel gets rotated copies."""
    bias = bias.to(q.dtype)
    if short.eligible(q, k, v, bias) and short.available():
        return short.short_attention(q, k, v, bias, scale, rotary)
    if rotary is not None:
        q, k = rotary.apply(q), rotary.apply(k)
    if q.device.type == "cpu" and q.dtype in LOW_PRECISION:
        s = q @ k.transpose(-1, -2)
        if scale != 1.0:  # None: the default d^-1/2
            s = s * (q.shape[-1] ** -0.5 if scale is None else scale)
        return torch.softmax(s + bias, dim=-1, dtype=torch.float32).to(v.dtype) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

"""Softmax attention with an additive bias: the one place that picks the kernel.

`scaled_dot_product_attention` is the right call almost everywhere (fused on CPU in float32, fused on CUDA in every
dtype), with one measured exception: on CPU in bfloat16/float16 (autocast or a low-precision model) its fused kernel
with an attention mask runs 3-10x slower than in float32 (torch 2.13, 2 cores; `benchmarks/speed/README.md`), while
the same product written as two matmuls and a softmax runs about 2x faster than the float32 kernel. There the
explicit form is used, with the softmax accumulated in float32 as the fused kernels do. In float32 on CPU, calls over
short sequences that fit `short_attention` (RMT's row/column passes, its 2-D stages) run on that kernel instead.

Off the CPU (CUDA), every call reaches SDPA as a 4-D problem with a broadcastable 4-D float bias (`fused_layout`),
the form its fused memory-efficient and cuDNN kernels accept: Swin's 5-D window attention and the 6-D windowed axial
layout otherwise fall to the math backend, which upcasts bf16 and stores every score. (No call can take the flash
kernel: it accepts no bias, and every pass here has one.) On the CPU nothing changes (the CPU routes above are
measured there, and folding would only add copies). The policy's `flex_attention` (off by default) sends
these calls to FlexAttention instead (`flex.py`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers.rotary import FoldedRotary
from . import flex, policy
from .layout import fused_layout  # noqa: F401  (also the name tests use)
from . import short_attention as short

LOW_PRECISION = (torch.bfloat16, torch.float16)
#: device types whose calls go to SDPA in `fused_layout` (tests add "cpu" to check the layouts on a CPU)
FUSED_LAYOUT_DEVICES = {"cuda"}


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
    if policy.current().flex_attention and flex.takes(q):
        return flex.biased_attention(q, k, v, bias, scale)
    if q.device.type in FUSED_LAYOUT_DEVICES and q.dim() != 4:
        q4, k4, v4, b4 = fused_layout(q, k, v, bias)
        y = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=b4, scale=scale)
        return y.reshape(*q.shape[:-1], v.shape[-1])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

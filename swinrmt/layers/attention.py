"""Softmax attention with an additive bias: the one place that picks the kernel.

`scaled_dot_product_attention` is the right call almost everywhere (fused on CPU in float32, fused on CUDA in every
dtype), with one measured exception: on CPU in bfloat16/float16 (autocast or a low-precision model) its fused kernel
with an attention mask runs 3-10x slower than in float32 (torch 2.13, 2 cores; `benchmarks/speed/README.md`), while
the same product written as two matmuls and a softmax runs about 2x faster than the float32 kernel. There the
explicit form is used, with the softmax accumulated in float32 as the fused kernels do.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOW_PRECISION = (torch.bfloat16, torch.float16)
# CPU float32 training: the fused kernel's backward has a fixed cost per (batch, head) problem that dominates short
# sequences. Up to this many queries, when a backward will run, the explicit form is used instead (its autograd
# backward is plain matmuls): 0.5-0.7x the fused kernel's forward + backward time on the models' 4-16-long axes.
# At 32-64 it gained little (0.86-1.14x per call) and its saved probabilities and operand copies added ~500 MB to
# rmt_tiny's batch-64 training step, so those stay fused. In inference the fused kernel stays everywhere: its output
# comes back in the token layout and its scores never leave the cache, which measured as fast on the whole model
# as the explicit form's quicker calls. `benchmarks/speed/attention_kernels.py` times both on the models' own
# shapes; 0 restores the fused kernel.
EXPLICIT_MAX_LEN = 16


def uses_explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether `biased_attention` computes this product as matmul-softmax-matmul rather than the fused kernel."""
    if q.device.type != "cpu":
        return False
    if q.dtype in LOW_PRECISION:
        return True
    training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    return training and q.shape[-2] <= EXPLICIT_MAX_LEN


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     scale: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + bias) v over the last two axes; `scale` defaults to d^-1/2 as in SDPA."""
    bias = bias.to(q.dtype)
    if not uses_explicit(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    s = q @ k.transpose(-1, -2)
    if scale != 1.0:  # None: the default d^-1/2
        s = s * (q.shape[-1] ** -0.5 if scale is None else scale)
    s = s + bias if s.requires_grad else s.add_(bias)
    if q.dtype in LOW_PRECISION:  # accumulate the softmax in float32, as the fused kernels do
        return torch.softmax(s, dim=-1, dtype=torch.float32).to(v.dtype) @ v
    return torch.softmax(s, dim=-1) @ v

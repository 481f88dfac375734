"""FlexAttention for the softmax passes (policy `flex_attention`, off by default; `SWINRMT_KERNELS=flex`).

Every softmax pass here is softmax(q kᵀ s + bias) v with a float bias that carries the decay (Retention, RMT), the
relative position bias (Swin), the shift mask and the padding mask, the last two as NEG (-1e4) entries. On this
route the call is folded to 4-D (`sdpa.fused_layout`), the bias becomes a `score_mod` (score + bias[h, i, j]) and
its NEG entries a `mask_mod`, so the block mask skips the blocks that are masked whole (cross-window blocks of the
whole-axis passes, at FlexAttention's block size). It computes the reference's function: a masked key's weight is
exactly 0 in both (exp(-1e4) underflows); a query with no unmasked key (a padding query, cropped before use) gets 0
here and a finite row in SDPA, and is never read.

What torch 2.13 supports (measured on this project's 2-core CPU): on the CPU, the compiled forward only; a backward
on the CPU raises ("FlexAttention does not support backward on CPU"), so `takes` keeps training on the CPU on SDPA.
Compiling one shape took about a minute there; the uncompiled form (`COMPILE = False`, what the tests use) is the
same math with the scores materialised. On CUDA forward and backward compile with Triton. Whether this beats the
memory-efficient SDPA kernel on a GPU is not measured yet: `benchmarks/gpu/smoke.py` compares them per family, and
until then the route stays opt-in.
"""
from __future__ import annotations

import functools

import torch

from .layout import fused_layout

#: compile flex_attention (the fused kernel); False: eager, the unfused reference form (tests on a CPU)
COMPILE = True
#: the bias value at or below which a key counts as masked (the mixers' NEG is -1e4)
MASKED_BELOW = -5.0e3


def available() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:  # pragma: no cover - torch < 2.5
        return False
    return True


def takes(q: torch.Tensor) -> bool:
    """Whether this call can take the route: FlexAttention present, and no gradient needed on a CPU (no backward)."""
    if not available():
        return False
    return q.device.type != "cpu" or not (torch.is_grad_enabled() and q.requires_grad)


@functools.cache
def _flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if COMPILE else flex_attention


def biased_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     scale: float | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + bias) v on FlexAttention (`sdpa.biased_attention`'s contract)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q4, k4, v4, b = fused_layout(q, k, v, bias.to(q.dtype))  # b: (1, H', N, M)
    heads, n, m = b.shape[1:]
    b = b.contiguous()
    allowed = b > MASKED_BELOW

    def score_mod(score, bi, h, qi, ki):
        return score + b[0, h, qi, ki]

    def mask_mod(bi, h, qi, ki):
        return allowed[0, h, qi, ki]

    block_mask = create_block_mask(mask_mod, None, heads, n, m, device=q.device)
    fn = flex_attention if torch.compiler.is_compiling() else _flex()
    y = fn(q4, k4, v4, score_mod=score_mod, block_mask=block_mask, scale=scale)
    return y.reshape(*q.shape[:-1], v.shape[-1])

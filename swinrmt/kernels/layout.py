"""Tensor layouts the fused attention kernels take (pure tensor code, below `sdpa` and `flex`)."""
from __future__ import annotations

import math

import torch


def fused_layout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (*batch, N, d) and a bias broadcastable to (*batch, N, M) as one 4-D problem (B', H', N, d) with a
    (1 or B', H', N, M) bias, the layout a fused SDPA kernel takes: the leading batch dims over which the bias is
    constant (size 1) fold into B', the rest into H'. The bias is expanded over H' only where it broadcasts inside it
    (e.g. Swin's (nW, heads, N, N) needs no copy: q (B, nW, heads, N, d) -> (B, nW*heads, N, d), bias
    (1, nW*heads, N, N)); q, k, v are reshaped (a view where their strides allow)."""
    *batch, n, _ = q.shape
    m = k.shape[-2]
    if len(batch) < 1:
        raise ValueError(f"attention needs a batch dim: q {tuple(q.shape)}")
    b = bias.reshape((1,) * (q.dim() - bias.dim()) + tuple(bias.shape))
    lead = 0
    while lead < len(batch) - 1 and b.shape[lead] == 1:
        lead += 1
    outer = math.prod(batch[:lead])
    inner = math.prod(batch[lead:])
    b = b.expand(*b.shape[:lead], *batch[lead:], n, m).reshape(1, inner, n, m)

    def four(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(outer, inner, t.shape[-2], t.shape[-1])

    return four(q), four(k), four(v), b

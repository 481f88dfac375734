"""Swin's windowed multi-head self-attention with a learned relative position bias (the `swin_*` baseline).

Shifted blocks roll the map by M//2 and mask tokens of different pre-roll regions; padded keys are masked too (timm
lets zero padding take part in attention; we do not). Windows adapt per axis to small maps, and the bias table of a
(2M-1)^2 grid serves any smaller window through its centre.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ... import kernels
from .._cache import cached
from ..health import HealthSums, row_health
from ..linear import Linear
from ..windows import (axis_geometry, crop_and_unroll, real_window_queries, roll_and_pad, window_allowed_2d,
                       window_partition, window_reverse)
from .axial import NEG


def relative_position_index(mh: int, mw: int, m: int, device: torch.device | None = None) -> torch.Tensor:
    """(mh*mw, mh*mw) indices into a (2m-1)^2 table of relative offsets."""
    ys, xs = torch.meshgrid(torch.arange(mh, device=device), torch.arange(mw, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + m - 1
    dx = xs[:, None] - xs[None, :] + m - 1
    return dy * (2 * m - 1) + dx


class WindowMSA(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift: bool = False, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.window_size, self.shift = window_size, shift
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def windows(self, x: torch.Tensor):
        """q, k, v (B, nWin, heads, N, d) of the rolled, padded windows, their bias (relative position + mask) and
        geometry."""
        b, h, w, c = x.shape
        gh = axis_geometry(h, self.window_size, self.shift)
        gw = axis_geometry(w, self.window_size, self.shift)
        win = window_partition(roll_and_pad(x, gh, gw), gh, gw)  # (B, nWin, N, C)
        n = gh.window * gw.window
        qkv = self.qkv(win).view(b, -1, n, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)
        idx = cached(("relpos_index", gh.window, gw.window, self.window_size, x.device),
                     lambda: relative_position_index(gh.window, gw.window, self.window_size, x.device))
        rel = self.relative_position_bias_table[idx.reshape(-1)].view(n, n, self.num_heads).permute(2, 0, 1)
        mask = cached(("swin_mask", gh, gw, x.dtype, x.device),
                      lambda: torch.where(window_allowed_2d(gh, gw, x.device), 0.0, NEG).to(x.dtype)[:, None])
        return q, k, v, rel.to(q.dtype) + mask, gh, gw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v, bias, gh, gw = self.windows(x)
        y = kernels.attention(q, k, v, bias)
        y = y.transpose(2, 3).reshape(b, -1, gh.window * gw.window, c)
        y = self.proj(y)
        return crop_and_unroll(window_reverse(y, gh, gw), gh, gw)

    @torch.no_grad()
    def health(self, x: torch.Tensor) -> HealthSums:
        """Row entropy, peak weight and largest content logit (`layers.health`) of the window attention on input x."""
        q, k, _, bias, gh, gw = self.windows(x)
        content = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2)
        allowed = cached(("window_allowed_2d", gh, gw, x.device), lambda: window_allowed_2d(gh, gw, x.device)[:, None])
        return row_health(torch.softmax(content + bias, -1), content, allowed, real_window_queries(gh, gw, x.device))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.num_heads}, window={self.window_size}, shift={self.shift}"

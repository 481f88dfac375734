"""Swin's windowed multi-head self-attention with a learned relative position bias (the `swin_*` baseline).

Shifted blocks roll the map by M//2 and mask tokens of different pre-roll regions; padded keys are masked too (timm
lets zero padding take part in attention; we do not). Windows adapt per axis to small maps, and the bias table of a
(2M-1)^2 grid serves any smaller window through its centre.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ... import kernels
from .._cache import cached
from ..health import HealthSums, row_health
from ..linear import Linear
from ..windows import (AxisGeometry, axis_geometry, crop_and_unroll, real_window_queries, roll_and_pad,
                       window_allowed_2d, window_partition, window_reverse)
from .axial import NEG


def relative_position_index(mh: int, mw: int, m: int, device: torch.device | None = None) -> torch.Tensor:
    """(mh*mw, mh*mw) indices into a (2m-1)^2 table of relative offsets."""
    ys, xs = torch.meshgrid(torch.arange(mh, device=device), torch.arange(mw, device=device), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = ys[:, None] - ys[None, :] + m - 1
    dx = xs[:, None] - xs[None, :] + m - 1
    return dy * (2 * m - 1) + dx


def window_geometry(h: int, w: int, window_size: int, shift: bool) -> tuple[AxisGeometry, AxisGeometry]:
    """The (rows, columns) geometry of an h x w map cut into shifted windows."""
    return axis_geometry(h, window_size, shift), axis_geometry(w, window_size, shift)


def cached_relpos_index(gh: AxisGeometry, gw: AxisGeometry, m: int, device: torch.device) -> torch.Tensor:
    """`relative_position_index` of the (gh.window x gw.window) windows into a (2m-1)^2 table, built once per key."""
    return cached(("relpos_index", gh.window, gw.window, m, device),
                  lambda: relative_position_index(gh.window, gw.window, m, device))


def cached_window_mask(gh: AxisGeometry, gw: AxisGeometry, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(nWin, 1, N, N) additive mask: 0 where a query may use a key, NEG elsewhere (shift regions, padding)."""
    return cached(("swin_mask", gh, gw, dtype, device),
                  lambda: torch.where(window_allowed_2d(gh, gw, device), 0.0, NEG).to(dtype)[:, None])


# torch.fx: the geometry, padding, window layouts and table caches branch on the map size, so a symbolic trace records
# each call as one node (plain calls in eager mode).
for _name in ("window_geometry", "cached_relpos_index", "cached_window_mask", "roll_and_pad", "window_partition",
              "window_reverse", "crop_and_unroll"):
    torch.fx.wrap(_name)
del _name


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
        gh, gw = window_geometry(h, w, self.window_size, self.shift)
        win = window_partition(roll_and_pad(x, gh, gw), gh, gw)  # (B, nWin, N, C)
        n = gh.window * gw.window
        qkv = self.qkv(win).view(b, -1, n, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)
        idx = cached_relpos_index(gh, gw, self.window_size, x.device)
        rel = self.relative_position_bias_table[idx.reshape(-1)].view(n, n, self.num_heads).permute(2, 0, 1)
        return q, k, v, rel.to(q.dtype) + cached_window_mask(gh, gw, x.dtype, x.device), gh, gw

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

"""Window geometry: adaptive window size, cyclic shift, padding, and the per-axis masks they imply.

Swin's shifted-window mask labels every token by the region it came from before the cyclic roll; two tokens may
attend only if they share a region. The label is a pair (row region, column region), so the mask factorises per
axis: a width pass needs only the column labels and a height pass only the row labels. Padding (to a window multiple)
adds a third kind of token that must never be used as a key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._cache import cached

PAD_LABEL = -1


@dataclass(frozen=True)
class AxisGeometry:
    """How one axis of length `length` is cut into windows of `window` after a cyclic roll of `shift`."""

    length: int
    window: int
    shift: int

    @property
    def padded(self) -> int:
        return self.num_windows * self.window

    @property
    def num_windows(self) -> int:
        return math.ceil(self.length / self.window)

    @property
    def pad(self) -> int:
        return self.padded - self.length


def axis_geometry(length: int, window: int, shift: bool) -> AxisGeometry:
    """Adaptive windowing: a window never exceeds the map, and an axis that one window covers is never shifted."""
    if window < 1:
        raise ValueError(f"window size must be >= 1, got {window}")
    win = min(window, length)
    s = win // 2 if (shift and length > win) else 0
    return AxisGeometry(length, win, s)


def axis_labels(geo: AxisGeometry, device: torch.device | None = None) -> torch.Tensor:
    """Region label of every (rolled, padded) position: 0 = original, 1 = wrapped by the roll, -1 = padding."""
    lab = torch.zeros(geo.padded, dtype=torch.long, device=device)
    if geo.shift:
        lab[geo.length - geo.shift:geo.length] = 1
    lab[geo.length:] = PAD_LABEL
    return lab


def axis_allowed(geo: AxisGeometry, device: torch.device | None = None) -> torch.Tensor:
    """(num_windows, window, window) bool: query i may use key j (same region, key not padding)."""
    lab = axis_labels(geo, device).view(geo.num_windows, geo.window)
    return (lab[:, :, None] == lab[:, None, :]) & (lab[:, None, :] != PAD_LABEL)


def cached_axis_allowed(geo: AxisGeometry, device: torch.device) -> torch.Tensor:
    return cached(("axis_allowed", geo, device), lambda: axis_allowed(geo, device))


def window_allowed_2d(gh: AxisGeometry, gw: AxisGeometry, device: torch.device | None = None) -> torch.Tensor:
    """(nH*nW, Mh*Mw, Mh*Mw) bool for full 2-D windows (Swin): both axis labels must agree, key not padding."""
    lh = axis_labels(gh, device).view(gh.num_windows, gh.window)
    lw = axis_labels(gw, device).view(gw.num_windows, gw.window)
    # label pair of every token of every window: (nH, nW, Mh, Mw)
    rows = lh[:, None, :, None].expand(-1, gw.num_windows, -1, gw.window)
    cols = lw[None, :, None, :].expand(gh.num_windows, -1, gh.window, -1)
    rows = rows.reshape(gh.num_windows * gw.num_windows, -1)
    cols = cols.reshape(gh.num_windows * gw.num_windows, -1)
    same = (rows[:, :, None] == rows[:, None, :]) & (cols[:, :, None] == cols[:, None, :])
    valid_key = (rows != PAD_LABEL) & (cols != PAD_LABEL)
    return same & valid_key[:, None, :]


def roll_and_pad(x: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry) -> torch.Tensor:
    """(B, H, W, ...) -> (B, Hp, Wp, ...): cyclic shift towards the origin, then zero-pad at the far end."""
    if gh.shift or gw.shift:
        x = torch.roll(x, shifts=(-gh.shift, -gw.shift), dims=(1, 2))
    if gh.pad or gw.pad:
        tail = [0, 0] * (x.dim() - 3)
        x = F.pad(x, tail + [0, gw.pad, 0, gh.pad])
    return x


def crop_and_unroll(x: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry) -> torch.Tensor:
    """Inverse of `roll_and_pad`."""
    if gh.pad or gw.pad:
        x = x[:, : gh.length, : gw.length]
    if gh.shift or gw.shift:
        x = torch.roll(x, shifts=(gh.shift, gw.shift), dims=(1, 2))
    return x


def window_partition(x: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B, nH*nW, Mh*Mw, C)."""
    b, _, _, c = x.shape
    x = x.view(b, gh.num_windows, gh.window, gw.num_windows, gw.window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, gh.num_windows * gw.num_windows, gh.window * gw.window, c)


def window_reverse(x: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry) -> torch.Tensor:
    """(B, nH*nW, Mh*Mw, C) -> (B, Hp, Wp, C)."""
    b, c = x.shape[0], x.shape[-1]
    x = x.view(b, gh.num_windows, gw.num_windows, gh.window, gw.window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, gh.padded, gw.padded, c)


def window_heads(x: torch.Tensor, gh: AxisGeometry, gw: AxisGeometry, heads: int) -> torch.Tensor:
    """(B, H, W, heads*d) -> (B, nWin, heads, Mh*Mw, d): rolled, padded and cut into windows, one sequence per head."""
    win = window_partition(roll_and_pad(x, gh, gw), gh, gw)
    b, nwin, n, c = win.shape
    return win.view(b, nwin, n, heads, c // heads).transpose(2, 3)


def real_window_queries(gh: AxisGeometry, gw: AxisGeometry, device: torch.device | None = None) -> torch.Tensor:
    """(nWin, 1, Mh*Mw) bool: which window positions hold a real token (not padding)."""
    real = torch.zeros(1, gh.padded, gw.padded, 1, dtype=torch.bool, device=device)
    real[:, :gh.length, :gw.length] = True
    return window_partition(real, gh, gw)[0, :, :, 0].unsqueeze(1)

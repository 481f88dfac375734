"""Fixed (not learned) rotary position codes.

RMT rotates q and k by a sinusoidal code indexed by the flattened position (row * W + col); the gated variants offer
a 1-D code per axial pass indexed by the in-window coordinate, which never depends on the input resolution.
"""
from __future__ import annotations

import torch

from ._cache import cached


def _angles(head_dim: int) -> torch.Tensor:
    if head_dim % 2:
        raise ValueError(f"rotary codes need an even head dim, got {head_dim}")
    ang = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 2, dtype=torch.float64))
    return ang.repeat_interleave(2)


def rotary_tables(positions: int, head_dim: int, dtype: torch.dtype, device: torch.device):
    """(sin, cos), each (positions, head_dim), built once per key."""

    def build():
        idx = torch.arange(positions, dtype=torch.float64)[:, None] * _angles(head_dim)[None]
        return torch.sin(idx).to(device, dtype), torch.cos(idx).to(device, dtype)

    return cached(("rotary", positions, head_dim, dtype, device), build)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """x * cos + rot(x) * sin, with sin/cos broadcast against x's trailing (..., positions, head_dim)."""
    return x * cos + rotate_every_two(x) * sin

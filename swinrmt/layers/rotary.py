"""Fixed (not learned) rotary position codes.

RMT rotates q and k by a sinusoidal code indexed by the flattened position (row * W + col); the gated variants offer
a 1-D code per axial pass indexed by the in-window coordinate, which never depends on the input resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._cache import cached


def _angles(head_dim: int, device: torch.device | None = None) -> torch.Tensor:
    if head_dim % 2:
        raise ValueError(f"rotary codes need an even head dim, got {head_dim}")
    ang = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 2, dtype=torch.float64, device=device))
    return ang.repeat_interleave(2)


def rotary_tables(positions: int, head_dim: int, dtype: torch.dtype, device: torch.device):
    """(sin, cos), each (positions, head_dim), built once per key."""

    def build():
        idx = torch.arange(positions, dtype=torch.float64, device=device)[:, None] * _angles(head_dim, device)[None]
        return torch.sin(idx).to(dtype), torch.cos(idx).to(dtype)

    return cached(("rotary", positions, head_dim, dtype, device), build)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """x * cos + rot(x) * sin, with sin/cos broadcast against x's trailing (..., positions, head_dim)."""
    return x * cos + rotate_every_two(x) * sin


@dataclass(frozen=True)
class FoldedRotary:
    """A fixed rotary code that an attention call applies to q and k itself, instead of the caller writing rotated
    copies (two passes over q and k per block, about 2 % of an rmt_tiny inference step; benchmarks/speed/README.md).

    Row l of every problem of a (n1, n2, L, d) call takes table row `l * step`. That is all an attention pass needs of
    RMT's flat code (position row * W + col): rotated scores depend only on the difference of two positions,
    (R(p) q) . (R(p') k) = q . R(p' - p) k, so a problem's own offset cancels. A width pass (row fixed, col = l) is
    step 1 and a height pass (col fixed, row = l) step W; a 2-D call over the flattened map is step 1.
    `sin` is signed (-sin, +sin per channel pair), so the rotation is x * cos + swap_pairs(x) * sin.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    step: int = 1

    def fits(self, shape: torch.Size) -> bool:
        """Whether a (..., L, d) call reads only rows the tables have."""
        return self.step > 0 and shape[-1] == self.cos.shape[-1] and (shape[-2] - 1) * self.step < self.cos.shape[0]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., L, d) rotated by the code, in tensor ops (what a call does where no kernel takes it)."""
        if not self.fits(x.shape):
            raise ValueError(f"rotary tables of {tuple(self.cos.shape)} do not cover a call of shape {tuple(x.shape)}"
                             f" at step {self.step}")
        rows = slice(0, (x.shape[-2] - 1) * self.step + 1, self.step)
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return x * self.cos[rows].to(x.dtype) + swapped * self.sin[rows].to(x.dtype)


def folded_rotary(positions: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                  step: int = 1) -> FoldedRotary:
    """The flat code of `rotary_tables(positions, head_dim)` as a FoldedRotary (tables built once per key)."""

    def build():
        sin, cos = rotary_tables(positions, head_dim, dtype, device)
        sign = torch.tensor([-1.0, 1.0], dtype=dtype, device=device).repeat(head_dim // 2)
        return cos.contiguous(), (sin * sign).contiguous()

    cos, sin = cached(("rotary_folded", positions, head_dim, dtype, device), build)
    return FoldedRotary(cos, sin, step)

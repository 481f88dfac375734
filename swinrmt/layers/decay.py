"""Per-head spatial decay (RMT's Manhattan prior) and SWAT's balanced ALiBi slopes.

RMT fixes one decay rate per head, gamma_h = 1 - 2^-(a + b*h/N): head 0 decays fastest (very local), the last head
slowest (nearly global). Along one axis the prior is gamma^|dx|; on the 2-D map it is gamma^(|dx|+|dy|), i.e. the
product of the two 1-D priors, which is why a width pass followed by a height pass reproduces it.

Every builder takes the device it builds on: under torch.compile a table is built inside the model's graph, and a
CUDA graph must not hold CPU work (Inductor would compile it to C++ beside the GPU kernels).
"""
from __future__ import annotations

import torch

from ._cache import cached


def decay_rates(num_heads: int, a: float = 2.0, b: float = 4.0, device: torch.device | None = None) -> torch.Tensor:
    """gamma_h = 1 - 2^-(a + b*h/N) for h = 0..N-1 (float64, fast-decaying heads first)."""
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    h = torch.arange(num_heads, dtype=torch.float64, device=device)
    return 1.0 - 2.0 ** (-(a + b * h / num_heads))


def log_decay_rates(num_heads: int, a: float = 2.0, b: float = 4.0,
                    device: torch.device | None = None) -> torch.Tensor:
    """log(gamma_h): the per-unit-distance additive bias of log-space decay (RMT adds it before softmax)."""
    return torch.log(decay_rates(num_heads, a, b, device))


def distance_1d(n: int, device: torch.device | None = None) -> torch.Tensor:
    """|i - j| for positions 0..n-1, as float64 (n, n)."""
    idx = torch.arange(n, dtype=torch.float64, device=device)
    return (idx[:, None] - idx[None, :]).abs()


def signed_distance_1d(n: int, device: torch.device | None = None) -> torch.Tensor:
    """j - i (key minus query): positive for keys to the right / below."""
    idx = torch.arange(n, dtype=torch.float64, device=device)
    return idx[None, :] - idx[:, None]


def manhattan_distance_2d(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """|dy| + |dx| between all pairs of an h x w map flattened row-major: (h*w, h*w)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    ys, xs = ys.reshape(-1).double(), xs.reshape(-1).double()
    return (ys[:, None] - ys[None, :]).abs() + (xs[:, None] - xs[None, :]).abs()


def log_decay_1d(n: int, log_gamma: torch.Tensor) -> torch.Tensor:
    """|i-j| * log(gamma_h): (heads, n, n). Differentiable in `log_gamma` (learnable-decay option)."""
    return distance_1d(n, log_gamma.device).to(log_gamma)[None] * log_gamma[:, None, None]


def log_decay_2d(h: int, w: int, log_gamma: torch.Tensor) -> torch.Tensor:
    """(|dy|+|dx|) * log(gamma_h): (heads, h*w, h*w), the full 2-D Manhattan prior in log space."""
    return manhattan_distance_2d(h, w, log_gamma.device).to(log_gamma)[None] * log_gamma[:, None, None]


def cached_log_decay_2d(h: int, w: int, num_heads: int, a: float, b: float, dtype: torch.dtype,
                        device: torch.device) -> torch.Tensor:
    """The fixed-rate 2-D table, built once per (size, heads, rates, dtype, device)."""
    key = ("log_decay_2d", h, w, num_heads, a, b, dtype, device)
    return cached(key, lambda: log_decay_2d(h, w, log_decay_rates(num_heads, a, b, device)).to(dtype))


def balanced_alibi_slopes(num_heads: int, device: torch.device | None = None) -> torch.Tensor:
    """SWAT's balanced slopes: the first ceil(N/2) heads get -2^-k (favour near tokens), the rest +2^-k (keep far ones).

    k runs 1..half within each group. Because the first heads are also RMT's fast-decay heads, the negative (local)
    slopes land on the local heads and the positive slopes on the slow-decay, long-range heads.
    """
    n_neg = (num_heads + 1) // 2
    n_pos = num_heads - n_neg
    neg = -(2.0 ** -torch.arange(1, n_neg + 1, dtype=torch.float64, device=device))
    pos = 2.0 ** -torch.arange(1, n_pos + 1, dtype=torch.float64, device=device)
    return torch.cat([neg, pos])

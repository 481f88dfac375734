"""RMT's Manhattan self-attention (MaSA), the baseline mixer.

Early stages decompose: a width pass then a height pass over the *whole* map (the windowed axial core with one
window and no shift), log-decay bias before the softmax. The last stage(s) use full 2-D attention with the
Manhattan decay (|dy|+|dx|) log(gamma_h). Both add LCE (5x5 depthwise conv on V) before W_O. RMT also rotates q and k
by a fixed sinusoidal code of the flattened position (`rotary="flat"`, on by default for fidelity).
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from ... import kernels
from ..conv import DWConv
from ..decay import cached_log_decay_2d
from ..health import HealthSums, row_health
from ..linear import Linear
from ..options import check_choice
from ..rotary import rotary_tables
from .axial import qk_norms
from .retention import RetentionMixer

torch.fx.wrap("cached_log_decay_2d")  # torch.fx: the table cache branches on the map size; one node in a trace


class MaSADecomposed(RetentionMixer):
    """Global width-then-height MaSA: Retention without gate, window or shift."""

    def __init__(self, dim: int, num_heads: int, rotary: str = "flat", lce: bool = True, **kw):
        kw.pop("window_size", None), kw.pop("shift", None), kw.pop("gate", None)
        super().__init__(dim, num_heads, window_size=None, shift=False, gate="none", lce=lce, rotary=rotary, **kw)


class MaSA2d(nn.Module):
    """Full 2-D MaSA: softmax(q k^T / sqrt(d) + (|dy|+|dx|) log(gamma_h)) v + LCE(v), then W_O."""

    def __init__(self, dim: int, num_heads: int, decay_a: float = 2.0, decay_b: float = 4.0, rotary: str = "flat",
                 lce: bool = True, qkv_bias: bool = True, qk_norm: bool = False, **unused):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        check_choice("rotary", rotary, ("none", "flat"))
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.decay_a, self.decay_b, self.rotary = float(decay_a), float(decay_b), rotary
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.k = Linear(dim, dim, bias=qkv_bias)
        self.v = Linear(dim, dim, bias=qkv_bias)
        self.q_norm, self.k_norm = qk_norms(self.head_dim, qk_norm)
        self.lce = DWConv(dim, 5) if lce else None
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads, d = self.num_heads, self.head_dim
        q, k, v = self.q(x), self.k(x), self.v(x)
        v_map = v
        q, k, v = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        bias = cached_log_decay_2d(h, w, heads, self.decay_a, self.decay_b, q.dtype, q.device)
        # a 4-D mask: with a 3-D one, CPU SDPA falls back to the unfused math path (and its safe-softmax checks)
        if self.rotary == "flat":  # q and k rotated by the flattened position first
            y = kernels.flat_rotary_attention(q, k, v, bias.unsqueeze(0))
        else:
            y = kernels.attention(q, k, v, bias.unsqueeze(0))
        y = y.transpose(1, 2).reshape(b, h, w, c)
        if self.lce is not None:
            y = self.lce(v_map, y)
        return self.proj(y)

    @torch.no_grad()
    def health(self, x: torch.Tensor) -> HealthSums:
        """Row entropy, peak weight and largest content logit (`layers.health`) of the 2-D attention on input x."""
        b, h, w, c = x.shape
        heads, d = self.num_heads, self.head_dim
        q, k = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (self.q(x), self.k(x)))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary == "flat":
            sin, cos = rotary_tables(h * w, d, q.dtype, q.device)
            q, k = kernels.rotate(q, sin, cos), kernels.rotate(k, sin, cos)
        content = (q * d ** -0.5) @ k.transpose(-1, -2)
        bias = cached_log_decay_2d(h, w, heads, self.decay_a, self.decay_b, q.dtype, q.device)
        allowed = torch.ones(1, dtype=torch.bool, device=x.device)
        return row_health(torch.softmax(content + bias, -1), content, allowed.view(1, 1, 1, 1))

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, heads={self.num_heads}, decay=({self.decay_a}, {self.decay_b}), rotary={self.rotary!r}"
                + (", qk_norm=True" if self.q_norm is not None else ""))

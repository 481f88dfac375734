"""Gated-SwinRMT-Retention: windowed, shifted axial softmax retention with log-space decay, LCE and a G1 gate.

Per pass: softmax(q k^T / sqrt(d) + |delta| log(gamma_h) + shift/pad mask) v; then + LCE(V); then
* sigmoid(G1(X_norm)) (elementwise by default, or one scalar per head); then W_O. With `gate="none"` and one window
covering the map this is exactly RMT's decomposed MaSA. `norm="headnorm"` (off by default) normalises each head's
attention output before LCE, as SWAT does: an option to test whether that steadies windowed retention at a high
learning rate (benchmarks/reproduction/retention-probe).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ... import kernels
from .._cache import cached
from ..decay import log_decay_2d
from ..gates import GATE_MODES, OutputGate
from ..health import HealthSums, row_health
from ..linear import Linear
from ..options import check_choice
from ..windows import crop_and_unroll, real_window_queries, window_allowed_2d, window_heads, window_reverse
from .axial import NEG, AxialMixer, PassTables, softmax_decay_tables

GATE_INPUTS = ("input", "output")
RETENTION_NORMS = ("none", "headnorm")


class RetentionMixer(AxialMixer):
    kind = "softmax"

    def __init__(self, dim: int, num_heads: int, window_size: int | None = 7, shift: bool = False,
                 gate: str = "elementwise", gate_input: str = "input", lce: bool = True, rotary: str = "none",
                 norm: str = "none", **kw):
        super().__init__(dim, num_heads, window_size, shift, lce=lce, rotary=rotary, **kw)
        check_choice("gate", gate, GATE_MODES + ("none",))
        check_choice("gate_input", gate_input, GATE_INPUTS)
        check_choice("norm", norm, RETENTION_NORMS)
        self.v = Linear(dim, dim, bias=kw.get("qkv_bias", True))
        self.gate_input = gate_input
        self.gate = OutputGate(dim, num_heads, gate) if gate != "none" else None
        self.norm = norm
        if norm == "headnorm":
            self.head_norm_weight = nn.Parameter(torch.ones(dim))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.v(x)

    def pass_tables(self, geo, axis, dtype, device) -> PassTables:
        return softmax_decay_tables(self, geo, axis, dtype, device)

    def gate_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return y
        return self.gate(y, x if self.gate_input == "input" else y)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", norm={self.norm!r}"


class Retention2dMixer(RetentionMixer):
    """Retention with full 2-D attention inside each (shifted) window instead of the width and height passes:
    softmax(q k^T / sqrt(d) + (|dy|+|dx|) log(gamma_h) + shift/pad mask) v, then LCE, gate and W_O as before.

    RMT-T attends in 2-D in its last stages, where our windowed families run two 1-D passes over 2-4 keys; this
    option (`decompose=False` for a stage of a Retention model) tests whether that difference matters. One window
    covering the map and no shift is RMT's full 2-D MaSA plus the gate.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int | None = 7, shift: bool = False, **kw):
        super().__init__(dim, num_heads, window_size, shift, **kw)
        check_choice("rotary", self.rotary, ("none", "flat"))  # a window-local code is defined per axis only

    def window_bias(self, gh, gw, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(nWin, heads, n, n): the 2-D log decay inside a window plus the shift/padding mask (built in float64)."""
        def mask():
            return torch.where(window_allowed_2d(gh, gw, device), 0.0, NEG).double()[:, None]

        if self.decay_logit is not None:  # learnable: rebuilt each forward, differentiable in the decay
            decay = log_decay_2d(gh.window, gw.window, self.log_gamma(dtype, device))
            return cached(("retention2d_mask", gh, gw, dtype, device), lambda: mask().to(dtype)) + decay
        key = ("retention2d_bias", gh, gw, self.num_heads, self.decay_a, self.decay_b, dtype, device)
        return cached(key, lambda: (mask() + log_decay_2d(gh.window, gw.window,
                                                          self.log_gamma(torch.float64, device))).to(dtype))

    def qkv_windows(self, x: torch.Tensor):
        b, h, w, c = x.shape
        q, k = self.project_qk(x)
        if self.rotary == "flat":
            q, k = self.flat_rotary(q, k)
        gh, gw = self.geometry(h, w)
        v = self.value(x)
        qw, kw, vw = (window_heads(t.reshape(b, h, w, c), gh, gw, self.num_heads) for t in (q, k, v))
        return qw, kw, vw, v, gh, gw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v, v_map, gh, gw = self.qkv_windows(x)
        y = kernels.attention(q, k, v, self.window_bias(gh, gw, q.dtype, q.device), scale=1.0)  # q is pre-scaled
        y = window_reverse(y.transpose(2, 3).reshape(b, -1, gh.window * gw.window, c), gh, gw)
        y = self.post(crop_and_unroll(y, gh, gw))
        if self.lce is not None:
            y = self.lce(v_map, y)
        return self.proj(self.gate_output(y, x))

    @torch.no_grad()
    def health(self, x: torch.Tensor) -> HealthSums:
        q, k, _, _, gh, gw = self.qkv_windows(x)
        content = q @ k.transpose(-1, -2)
        weights = torch.softmax(content + self.window_bias(gh, gw, q.dtype, q.device), -1)
        allowed = cached(("window_allowed_2d", gh, gw, x.device), lambda: window_allowed_2d(gh, gw, x.device)[:, None])
        return row_health(weights, content, allowed, real_window_queries(gh, gw, x.device))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", attention=2d"

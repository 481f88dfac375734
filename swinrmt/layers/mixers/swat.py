"""Gated-SwinRMT-SWAT: windowed, shifted axial *sigmoid* attention with balanced ALiBi and post-sigmoid decay.

Per pass: A = sigmoid(q k^T / sqrt(d) + b + s_h * dist) * gamma_h^|delta| (masked keys get A = 0), Y = A V with
V = (X W_v) * SiLU(X W_vg). Sigmoid has no normaliser across keys, so an uninformative score can fall to ~0 instead
of being renormalised away; b = -log(n) (n = valid keys of the row) starts every row with total mass ~1. The output
is then normalised per head (`norm="headnorm"`, RetNet-style) rather than per row, which would turn SWAT back into
softmax-like retention. Alternatives: `rowsum`, `n` (divide by the pass length), `none`.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .._cache import cached
from ..decay import balanced_alibi_slopes, decay_rates, distance_1d, signed_distance_1d
from ..gates import GATE_MODES, OutputGate, SwiGLUValue
from ..windows import cached_axis_allowed
from ..options import check_choice
from .axial import AxialMixer, PassTables, broadcast_pass_table

SWAT_NORMS = ("headnorm", "rowsum", "n", "none")
ALIBI_MODES = ("abs", "signed", "none")
SIGMOID_BIASES = ("log_n", "none")


class SwatMixer(AxialMixer):
    kind = "sigmoid"

    def __init__(self, dim: int, num_heads: int, window_size: int | None = 7, shift: bool = False,
                 norm: str = "headnorm", alibi: str = "abs", sigmoid_bias: str = "log_n", lce: bool = False,
                 gate: str = "none", rotary: str = "none", **kw):
        super().__init__(dim, num_heads, window_size, shift, lce=lce, rotary=rotary, **kw)
        check_choice("norm", norm, SWAT_NORMS)
        check_choice("alibi", alibi, ALIBI_MODES)
        check_choice("sigmoid_bias", sigmoid_bias, SIGMOID_BIASES)
        check_choice("gate", gate, GATE_MODES + ("none",))
        self.norm, self.alibi, self.sigmoid_bias = norm, alibi, sigmoid_bias
        self.sigmoid_norm = norm if norm in ("rowsum", "n") else "none"
        self.v = SwiGLUValue(dim, bias=kw.get("qkv_bias", True))
        self.head_norm_weight = nn.Parameter(torch.ones(dim)) if norm == "headnorm" else None
        self.gate = OutputGate(dim, num_heads, gate) if gate != "none" else None

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.v(x)

    def pass_tables(self, geo, axis, dtype, device) -> PassTables:
        rot = self.window_rotary(geo, dtype, device)
        key = ("swat_add", geo, axis, self.num_heads, self.alibi, self.sigmoid_bias, dtype, device)
        add = cached(key, lambda: self._additive(geo, axis, device).to(dtype))
        if self.decay_logit is not None:
            gamma = torch.sigmoid(self.decay_logit).to(device)
            allowed = cached_axis_allowed(geo, device)
            dist = distance_1d(geo.window, device).float()
            mul = gamma[:, None, None, None] ** dist * allowed
            return PassTables(add, broadcast_pass_table(mul, axis).to(dtype), rot)
        key = ("swat_mul", geo, axis, self.num_heads, self.decay_a, self.decay_b, dtype, device)
        return PassTables(add, cached(key, lambda: self._multiplier(geo, axis, device).to(dtype)), rot)

    def _additive(self, geo, axis, device: torch.device) -> torch.Tensor:
        """b + balanced ALiBi: (heads, nwin, M, M) in the pass's broadcast shape."""
        heads = self.num_heads
        allowed = cached_axis_allowed(geo, device)
        add = torch.zeros(heads, geo.num_windows, geo.window, geo.window, dtype=torch.float64, device=device)
        if self.alibi != "none":
            dist = distance_1d(geo.window, device) if self.alibi == "abs" else signed_distance_1d(geo.window, device)
            add = add + balanced_alibi_slopes(heads, device)[:, None, None, None] * dist
        if self.sigmoid_bias == "log_n":
            n = allowed.sum(-1, keepdim=True).clamp(min=1).double()
            add = add - torch.log(n)
        return broadcast_pass_table(add, axis)

    def _multiplier(self, geo, axis, device: torch.device) -> torch.Tensor:
        """gamma_h^|delta| on allowed keys, 0 elsewhere: (heads, nwin, M, M) in the pass's broadcast shape."""
        gamma = decay_rates(self.num_heads, self.decay_a, self.decay_b, device)
        allowed = cached_axis_allowed(geo, device)
        mul = gamma[:, None, None, None] ** distance_1d(geo.window, device) * allowed
        return broadcast_pass_table(mul, axis)

    def gate_output(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y if self.gate is None else self.gate(y, x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", norm={self.norm!r}, alibi={self.alibi!r}, bias={self.sigmoid_bias!r}"

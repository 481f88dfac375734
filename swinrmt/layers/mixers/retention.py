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

from ..gates import GATE_MODES, OutputGate
from ..linear import Linear
from ..options import check_choice
from .axial import AxialMixer, PassTables, softmax_decay_tables

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

"""The projection layer: `nn.Linear` whose product runs on the fastest correct kernel (`kernels.linear`)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import kernels


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict, same init) whose forward runs `kernels.linear`.

    `act="gelu"` applies the exact GELU to the output (the FFN's fc1): in float32 CPU inference fused into the oneDNN
    GEMM, which skips a pass over the FFN's widest activation.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, act: str | None = None, **kw):
        if act not in (None, "gelu"):
            raise ValueError(f"Linear act must be None or 'gelu', got {act!r}")
        super().__init__(in_features, out_features, bias, **kw)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.linear(x, self.weight, self.bias, self.act)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", act={self.act}" if self.act else "")

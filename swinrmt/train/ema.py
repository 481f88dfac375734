"""Exponential moving average of model weights (buffers such as BatchNorm statistics are copied, not averaged)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEma(nn.Module):
    """Keeps `module`, a frozen copy updated as ema = d * ema + (1 - d) * model after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self._param_names = {name for name, _ in self.module.named_parameters()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One lerp of every parameter and one copy of every buffer, each as one multi-tensor (`torch._foreach_*`)
        call: a fused kernel per group of tensors on CUDA instead of a launch per tensor; on CPU the same per-tensor
        lerp and copy as before (bit for bit)."""
        d = self.current_decay()
        ema_state = self.module.state_dict()
        ema_p, model_p, ema_b, model_b = [], [], [], []
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if name in self._param_names:
                ema_p.append(target)
                model_p.append(value.detach().to(target.dtype))
            else:
                ema_b.append(target)
                model_b.append(value)
        if ema_p:
            torch._foreach_lerp_(ema_p, model_p, 1.0 - d)
        if ema_b:
            torch._foreach_copy_(ema_b, model_b)
        self.num_updates += 1

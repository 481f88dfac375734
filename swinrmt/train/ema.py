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
        d = self.current_decay()
        ema_state = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if name in self._param_names:
                target.lerp_(value.detach().to(target.dtype), 1.0 - d)
            else:
                target.copy_(value)
        self.num_updates += 1

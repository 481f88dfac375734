"""Optimizer with the usual no-decay groups, and a per-step warmup + cosine/step learning-rate schedule.

The schedule is a pure function of the step, so its whole state is one integer: resuming cannot drift.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from .recipe import OptimCfg, SchedCfg

# Parameters whose name contains one of these never get weight decay, whatever their shape: decay rates and
# positional tables are priors, not weights to shrink towards zero.
NO_DECAY_KEYWORDS = ("decay", "gamma", "slope", "alibi", "pos_embed", "relative_position_bias_table")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed weights, and norms/biases/1-D/decay-rate parameters (plus `model.no_weight_decay()`)."""
    skip: set[str] = set()
    if hasattr(model, "no_weight_decay"):
        skip = set(model.no_weight_decay())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name in skip or any(k in name for k in NO_DECAY_KEYWORDS):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# Devices where PyTorch has fused AdamW / SGD kernels that this project has run.
FUSED_DEVICES = ("cpu", "cuda")


def fused_ok(params: list[torch.Tensor]) -> bool:
    """Whether `fused=True` applies: every parameter a floating tensor on a device of FUSED_DEVICES.

    Fused, each parameter's whole update is one kernel. PyTorch's CPU default (its foreach default is CUDA-only) is
    a Python-level loop of several ops per parameter: rmt_tiny's AdamW step takes 26 ms that way and 9 ms fused
    (benchmarks/speed/optimizer_step.py at 862583f; `ab_switch.py fused_optimizer`), 2-3 % of its training step at
    stem 4.
    """
    return bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)


def build_optimizer(model: nn.Module, cfg: OptimCfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    fused = fused_ok([p for g in groups for p in g["params"]]) or None  # None: PyTorch's default implementation
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused)
    raise ValueError(f"unknown optimizer {cfg.name!r}")  # pragma: no cover - the recipe validates it


class Scheduler:
    """Sets the learning rate of every group before each optimizer step from (step, steps_per_epoch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedCfg, base_lr: float, epochs: int,
                 steps_per_epoch: int) -> None:
        self.optimizer, self.cfg, self.base_lr = optimizer, cfg, base_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = epochs * self.steps_per_epoch
        if cfg.warmup_frac is not None:
            self.warmup = min(round(cfg.warmup_frac * self.total), self.total)
        else:
            self.warmup = min(round(cfg.warmup_epochs * self.steps_per_epoch), self.total)
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        cfg, base = self.cfg, self.base_lr
        if step < self.warmup:
            t = step / self.warmup
            return base * (cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * t)
        if cfg.name == "cosine":
            span = max(1, self.total - self.warmup)
            t = min(1.0, (step - self.warmup) / span)
            return cfg.min_lr + 0.5 * (base - cfg.min_lr) * (1 + math.cos(math.pi * t))
        epoch = step / self.steps_per_epoch
        return base * cfg.decay_rate ** math.floor(epoch / cfg.decay_epochs)

    def step(self) -> None:
        """Advance one optimizer step (call after `optimizer.step()`)."""
        self.step_count += 1
        self._apply()

    @property
    def lr(self) -> float:
        return self.lr_at(self.step_count)

    def _apply(self) -> None:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()


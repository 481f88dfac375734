"""A tiny registered model for trainer tests: no BatchNorm (so DDP equals single-process training exactly), but with
dropout and drop-path so that restoring the random streams on resume is actually exercised.

Imported by conftest.py (in-process tests) and by run_cli.py (subprocesses, torchrun).
"""
from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from swinrmt import register_model

TINY = "train_test_tiny"


class _Block(nn.Module):
    def __init__(self, dim: int, drop_path: float, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.norm(x))
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, img_size: int = 32, in_chans: int = 3, dim: int = 16,
                 drop_path_rate: float = 0.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, dim, kernel_size=4, stride=4)
        self.blocks = nn.ModuleList([_Block(dim, drop_path_rate, dropout) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("SWINRMT_TEST_STEP_DELAY", "0"))
        if delay and self.training:
            time.sleep(delay)  # lets a test kill a run reliably in the middle of an epoch
        x = self.stem(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.grad_checkpointing and self.training else blk(x)
        return self.head(self.norm(x).mean(1))


@register_model("train_test", num_classes=10, img_size=32)
def train_test_tiny(**kwargs: Any) -> TinyNet:
    return TinyNet(**kwargs)


@register_model("train_test", num_classes=10, img_size=32)
def train_test_tiny_bn(**kwargs: Any) -> nn.Module:
    """Same, with a BatchNorm after the stem (for the SyncBatchNorm warning path)."""
    net = TinyNet(**kwargs)
    net.stem = nn.Sequential(net.stem, nn.BatchNorm2d(net.stem.out_channels))
    return net


def tiny_overrides(**extra: object) -> list[str]:
    """A few-second digits recipe on the tiny model."""
    base = {"model.name": TINY, "data.limit_train": 48, "data.limit_test": 40, "batch_size": 8,
            "epochs": 2, "log_every_steps": 1, "img_size": 16, "optim.lr": "3e-3", "sched.warmup_epochs": 0.5}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]

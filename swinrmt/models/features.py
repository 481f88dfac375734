"""`features_only=True`: the four stage maps (NCHW) for detection / segmentation necks."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class FeatureInfo(list):
    """timm-compatible list of {num_chs, reduction, module} with the usual accessors."""

    def channels(self) -> list[int]:
        return [f["num_chs"] for f in self]

    def reduction(self) -> list[int]:
        return [f["reduction"] for f in self]

    def module_name(self) -> list[str]:
        return [f["module"] for f in self]


class FeatureExtractor(nn.Module):
    """Wraps a backbone; forward returns [stage maps at out_indices], each (B, C_i, H/r_i, W/r_i)."""

    def __init__(self, model: nn.Module, out_indices: Sequence[int] = (0, 1, 2, 3)):
        super().__init__()
        n = len(model.stages)
        idx = [i % n for i in out_indices] if all(-n <= i < n for i in out_indices) else None
        if not idx:
            raise ValueError(f"out_indices must be stage indices in [-{n}, {n}), got {tuple(out_indices)}")
        self.model = model
        self.out_indices = tuple(idx)
        self.feature_info = FeatureInfo(model.feature_info[i] for i in self.out_indices)
        # The classifier is not part of a feature extractor: drop it so its parameters don't idle without gradients.
        for name in ("head_proj", "head_norm", "head_drop", "head"):
            if hasattr(model, name):
                setattr(model, name, nn.Identity())
        self.model.stages = model.stages[: max(self.out_indices) + 1]
        self.default_cfg = getattr(model, "default_cfg", {})
        self.pretrained_cfg = self.default_cfg

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, self.out_indices, intermediates_only=True)

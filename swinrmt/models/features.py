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
        self.model = model
        # Drops the stages past the last wanted one and the classifier (its parameters would idle without gradients).
        self.out_indices = tuple(model.prune_intermediate_layers(list(out_indices), prune_head=True))
        self.feature_info = FeatureInfo(model.feature_info[i] for i in self.out_indices)
        self.default_cfg = getattr(model, "default_cfg", {})
        self.pretrained_cfg = self.default_cfg

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x, self.out_indices, intermediates_only=True)

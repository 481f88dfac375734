"""Swin Transformer (Liu et al., 2021): the second, independent baseline, with its own macro.

Patch embedding (conv k = s = stem stride) -> 4 stages (patch merging + blocks of pre-norm windowed MSA with relative
position bias, every second block shifted) -> LayerNorm -> average pool -> classifier. Any input size works: maps are
padded to a window multiple inside attention and to an even size before patch merging.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..layers.drop import DropPath
from ..layers.linear import Linear
from ..layers.mixers import WindowMSA
from ..registry import register_model
from ..layers.options import check_choice
from .backbone import (GLOBAL_POOLS, BackboneAPI, Stage, _init_weights, _like, _linspace, _per_stage, default_geometry,
                       factory_kwargs)


def pad_to_multiple(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero-pad an NCHW map at the bottom / right to a multiple of `patch`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % patch, (-w) % patch
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x


def pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) map at the bottom / right to even H and W (for 2x2 patch merging)."""
    h, w = x.shape[1:3]
    if h % 2 or w % 2:
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    return x


# torch.fx: the padding decisions branch on the map size, so a symbolic trace records each call as one node.
torch.fx.wrap("pad_to_multiple")
torch.fx.wrap("pad_to_even")


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(pad_to_multiple(x, self.patch)).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LayerNorm -> Linear(4C, 2C)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = pad_to_even(x)
        x = x.reshape(b, x.shape[1] // 2, 2, x.shape[2] // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = Linear(dim, hidden), Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift: bool, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = WindowMSA(dim, num_heads, window_size, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinTransformer(BackboneAPI):
    @factory_kwargs
    def __init__(self, num_classes: int = 1000, img_size: int | Sequence[int] = 224, in_chans: int = 3,
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int | None = None, patch_size: int | None = None, mlp_ratio: float = 4.0,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.2, global_pool: str = "avg"):
        super().__init__()
        check_choice("global_pool", global_pool, GLOBAL_POOLS)
        self.global_pool = global_pool
        auto_stride, auto_window = default_geometry(img_size)
        self.patch_size = auto_stride if patch_size is None else patch_size
        self.window_size = auto_window if window_size is None else window_size
        if self.window_size < 1 or self.patch_size < 1:
            raise ValueError(f"window_size and patch_size must be >= 1, got {self.window_size}, {self.patch_size}")
        self.num_classes, self.in_chans = num_classes, in_chans
        depths, heads = _per_stage(depths, "depths"), _per_stage(num_heads, "num_heads")
        dims = [embed_dim * 2 ** i for i in range(4)]
        dpr = _linspace(drop_path_rate, sum(depths))
        self.stem = PatchEmbed(in_chans, dims[0], self.patch_size)
        self.stages = nn.ModuleList()
        self.feature_info = []
        k, reduction = 0, self.patch_size
        for i in range(4):
            down = nn.Identity() if i == 0 else PatchMerging(dims[i - 1], dims[i])
            reduction *= 1 if i == 0 else 2
            blocks = [SwinBlock(dims[i], heads[i], self.window_size, j % 2 == 1, mlp_ratio, dpr[k + j])
                      for j in range(depths[i])]
            k += depths[i]
            self.stages.append(Stage(down, blocks))
            self.feature_info.append({"num_chs": dims[i], "reduction": reduction, "module": f"stages.{i}"})
        self.norm = nn.LayerNorm(dims[-1])
        self.num_features = self.head_hidden_size = dims[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self.head = Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            check_choice("global_pool", global_pool, GLOBAL_POOLS)
            self.global_pool = global_pool
        self.num_classes = num_classes
        # the new head joins the model where it is: same device, dtype and train / eval mode
        self.head = (Linear(self.num_features, num_classes, **_like(self)) if num_classes > 0
                     else nn.Identity()).train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.global_pool:  # timm's global_pool="": keep the map, classify per position
            x = self.head_drop(x)
            return x if pre_logits else self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)


SWIN_SIZES: dict[str, dict[str, Any]] = {
    "nano": dict(embed_dim=32, depths=(2, 2, 4, 2), num_heads=(1, 2, 4, 8), drop_path_rate=0.05),
    "tiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "small": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
}


@register_model("swin", num_classes=100, img_size=64)
def swin_nano(**kwargs: Any) -> SwinTransformer:
    return SwinTransformer(**{**SWIN_SIZES["nano"], **kwargs})


@register_model("swin")
def swin_tiny(**kwargs: Any) -> SwinTransformer:
    return SwinTransformer(**{**SWIN_SIZES["tiny"], **kwargs})


@register_model("swin")
def swin_small(**kwargs: Any) -> SwinTransformer:
    return SwinTransformer(**{**SWIN_SIZES["small"], **kwargs})

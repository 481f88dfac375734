"""Convolutional pieces of the RMT macro: stem, downsampling, CPE and LCE. All take and return (B, H, W, C)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import kernels


class DWConv(nn.Module):
    """Depthwise k x k conv (odd k, same padding) on a channels-last (B, H, W, C) map; CPE uses k = 3, LCE k = 5."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"DWConv needs an odd kernel size (same padding), got {kernel_size}")
        self.conv = nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """conv(x), plus `residual` if given (x itself for CPE and the ConvFFN's conv, the attention output for LCE)."""
        return kernels.depthwise_conv(x, self.conv, residual)


class ConvStem(nn.Module):
    """RMT's stem: four 3x3 conv-BN(-GELU) layers; stride 4 (two stride-2 convs), or 2 for small inputs."""

    def __init__(self, in_chans: int, dim: int, stride: int = 4):
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"stem stride must be 2 or 4, got {stride}")
        half = dim // 2
        s2 = 2 if stride == 4 else 1
        self.stride = stride
        self.proj = nn.Sequential(
            nn.Conv2d(in_chans, half, 3, 2, 1), nn.BatchNorm2d(half), nn.GELU(),
            nn.Conv2d(half, half, 3, 1, 1), nn.BatchNorm2d(half), nn.GELU(),
            nn.Conv2d(half, dim, 3, s2, 1), nn.BatchNorm2d(dim), nn.GELU(),
            nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last in: oneDNN convolves NHWC without reorders (~25 % faster stem on CPU), and the output
        # permute to the (B, H, W, C) token layout becomes a free view
        x = x.contiguous(memory_format=torch.channels_last)
        layers = list(self.proj)
        for i in range(0, len(layers), 3):  # (conv, BN, GELU) x 3, then (conv, BN)
            x = kernels.conv_bn(x, layers[i], layers[i + 1], gelu=i + 2 < len(layers))
        return x.permute(0, 2, 3, 1)


class ConvDownsample(nn.Module):
    """3x3 stride-2 conv + BN between stages (RMT's patch merging)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv_bn(x.permute(0, 3, 1, 2), self.reduction, self.norm).permute(0, 2, 3, 1)

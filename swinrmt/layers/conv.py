"""Convolutional pieces of the RMT macro: stem, downsampling, CPE and LCE. All take and return (B, H, W, C)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import depthwise, eager
from .eager import needs_grad, plain_eager_fp32_cpu


# Whether depthwise convs in float32 CPU training take `DepthwiseConv2d`'s weight gradient (the switch of
# benchmarks/speed/ab_switch.py).
FAST_WEIGHT_GRAD = torch.backends.mkldnn.is_available()
# Whether this torch build has oneDNN's fused convolution op (every x86 CPU wheel does; Inductor uses it).
HAVE_FUSED_CONV = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """dL/dW (C, 1, kh, kw) of a stride-1, same-padded depthwise conv, on the oneDNN kernels that are fast.

    oneDNN's depthwise weight gradient is fast only for kernels at most 3 wide, and only where the conv does not pad
    a map smaller than the kernel: aten's 5x5 weight + bias gradient takes 7-15x its forward on rmt_tiny's maps, and
    a 3x3 one on a 2x2 map 12-19x (torch 2.13, 2 cores). So the kernel's columns go in groups of at most 3, each over
    its own shifted copy of the input, and small maps are padded first: 2-4x less time per conv
    (benchmarks/speed/dwconv_backward.py). Built from differentiable ops, so double backward works.
    """
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    ph, pw = kh // 2, kw // 2
    small = min(h, w) < max(kh, kw)
    parts = []
    for c0 in range(0, kw, 3):
        n = min(3, kw - c0)
        left = pw - c0  # tap c0 + t reads input column j + c0 + t - pw; a negative pad crops
        if kw <= 3 and not small:
            xs, pad = x, [ph, pw]
        else:
            xs = F.pad(x, (left, n - 1 - left) + ((ph, ph) if small else (0, 0)))
            pad = [0 if small else ph, 0]
        shape_only = x.new_empty(c, 1, kh, n)
        parts.append(torch.ops.aten.convolution_backward(
            grad, xs, shape_only, None, [1, 1], pad, [1, 1], False, [0, 0], c, [False, True, False])[1])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class DepthwiseConv2d(torch.autograd.Function):
    """A stride-1, same-padded depthwise conv whose weight gradient is `depthwise_weight_grad`.

    The forward and the input gradient are the aten convolution's; `tests/layers/test_conv.py` holds the gradients
    equal to aten's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, 1, (weight.shape[-2] // 2, weight.shape[-1] // 2), 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        kh, kw = weight.shape[-2:]
        c = weight.shape[0]
        gx = gw = gb = None
        if need_x:
            gx = torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [kh // 2, kw // 2], [1, 1], False,
                                                     [0, 0], c, [True, False, False])[0]
        if need_w:
            gw = depthwise_weight_grad(grad, x, kh, kw)
        if need_b and ctx.has_bias:  # not through oneDNN, which computes it with the weight gradient
            gb = grad.sum((0, 2, 3))
        return gx, gw, gb


class DWConv(nn.Module):
    """Depthwise k x k conv (odd k, same padding) on a channels-last (B, H, W, C) map; CPE uses k = 3, LCE k = 5."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"DWConv needs an odd kernel size (same padding), got {kernel_size}")
        self.conv = nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """conv(x), plus `residual` if given (x itself for CPE and the ConvFFN's conv, the attention output for LCE).

        In float32 on CPU, swinrmt's depthwise kernel where it fits: conv, bias and residual in one pass, and
        x + conv(x) as one input of the autograd graph, so its gradient needs no separate accumulation
        (`layers.depthwise`).
        Otherwise, with a residual in float32 CPU inference, one oneDNN conv with the add fused.
        """
        w, b = self.conv.weight, self.conv.bias
        if depthwise.eligible(x, w, None if residual is x else residual):
            return depthwise.depthwise_conv(x, w, b, "self" if residual is x else residual)
        k = w.shape[-1]
        if (residual is not None and eager.FUSE_INFERENCE and HAVE_FUSED_CONV and not needs_grad(x, w, b, residual)
                and plain_eager_fp32_cpu(x, w, residual) and x.dim() == 4 and residual.shape == x.shape
                and residual.is_contiguous()):
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x.permute(0, 3, 1, 2), residual.permute(0, 3, 1, 2), w, b, [k // 2] * 2, [1, 1], [1, 1], w.shape[0],
                "add", None, None, [], None).permute(0, 2, 3, 1)
        y = x.permute(0, 3, 1, 2)
        if (FAST_WEIGHT_GRAD and w.requires_grad and torch.is_grad_enabled() and plain_eager_fp32_cpu(y, w)
                and y.dim() == 4 and (k > 3 or min(y.shape[-2:]) < k)):
            # only where aten's weight gradient is slow (see depthwise_weight_grad)
            y = DepthwiseConv2d.apply(y, w, b).permute(0, 2, 3, 1)
        else:
            y = self.conv(y).permute(0, 2, 3, 1)
        return y if residual is None else residual + y


def fold_bn_inference(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """Whether conv -> BN (-> GELU) on x may run as one oneDNN conv with the BN folded into its weights: float32 CPU
    inference (BN on its running statistics), plain eager, fusion on (`eager.FUSE_INFERENCE`)."""
    return (eager.FUSE_INFERENCE and HAVE_FUSED_CONV and not bn.training and bn.running_mean is not None
            and bn.affine and not needs_grad(x, conv.weight, conv.bias, bn.weight, bn.bias)
            and plain_eager_fp32_cpu(x, conv.weight) and x.dim() == 4 and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple))


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, gelu: bool = False) -> torch.Tensor:
    """BN(conv(x)) (then exact GELU) as one oneDNN conv: in eval BN is a fixed per-channel affine map, so it folds into
    the conv's weight and bias (w * s, (b - mean) * s + beta, s = gamma / sqrt(var + eps)), and GELU runs as the conv's
    post-op. Skips two passes over each stem and downsampling output; the caller checks `fold_bn_inference`."""
    s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight * s.view(-1, 1, 1, 1)
    b = (conv.bias - bn.running_mean if conv.bias is not None else -bn.running_mean) * s + bn.bias
    return torch.ops.mkldnn._convolution_pointwise(x, w, b, list(conv.padding), list(conv.stride),
                                                   list(conv.dilation), conv.groups, "gelu" if gelu else "none", [],
                                                   "none" if gelu else "")


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
        if not fold_bn_inference(x, layers[0], layers[1]):
            return self.proj(x).permute(0, 2, 3, 1)
        for i in range(0, len(layers), 3):  # (conv, BN, GELU) x 3, then (conv, BN)
            x = conv_bn(x, layers[i], layers[i + 1], gelu=i + 2 < len(layers))
        return x.permute(0, 2, 3, 1)


class ConvDownsample(nn.Module):
    """3x3 stride-2 conv + BN between stages (RMT's patch merging)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        if fold_bn_inference(x, self.reduction, self.norm):
            return conv_bn(x, self.reduction, self.norm).permute(0, 2, 3, 1)
        return self.norm(self.reduction(x)).permute(0, 2, 3, 1)

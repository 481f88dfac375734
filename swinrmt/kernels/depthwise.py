"""Depthwise convs with their elementwise neighbours fused, on CPU in float32: a small C++ kernel.

Each RMT block runs three depthwise convs (CPE 3x3, LCE 5x5, the ConvFFN's 3x3 on its widest activation) and around
them elementwise passes: x + conv(x) (CPE), conv(v) + y (LCE), GELU(h) + conv(GELU(h)) (ConvFFN). On 2 cores oneDNN's
depthwise kernel runs these maps at about 30 GFLOP/s, its weight gradient for 5x5 kernels at 7-15x its forward, and
each elementwise op (GELU, its gradient, the add, the gradient accumulation of the residual) is another pass over
the map. `csrc/depthwise_conv.cpp` does the conv, bias, residual and GELU in one pass forward; the input gradient
(with the residual's and GELU's) in one more; and the weight and bias gradients in a third, recomputing GELU(h) rather
than storing it, so the ConvFFN keeps one hidden-sized tensor for its backward instead of two.

A fast path only: `kernels.depthwise_conv` and `kernels.ffn_hidden` call it when `eligible` says the call fits
(float32 CPU maps whose pixels are C apart, C a multiple of 16, kernels 3/5/7 no larger than the map, plain eager
mode, no autocast; in inference only 3x3 kernels, since oneDNN's 5x5 forward is faster:
benchmarks/speed/depthwise_kernel.py at 862583f); otherwise PyTorch's ops run, and `tests/layers/test_depthwise.py`
holds the two equal in values and all gradients. The kernel's backward is once-differentiable (double backward raises). The policy's `depthwise` field switches it.
"""
from __future__ import annotations

import ctypes

import torch
from torch.autograd.function import once_differentiable

from . import build, policy
from .eager import needs_grad, plain_eager

KERNEL_SIZES = (3, 5, 7)


def _pixels_packed(t: torch.Tensor) -> bool:
    """(B, H, W, C) with channels contiguous and pixels C apart (rows and images may be strided)."""
    return t.dim() == 4 and t.stride(-1) == 1 and t.stride(-2) == t.shape[-1]


def takes(channels: int, kernel_size: int, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether a conv of this width and kernel on this device and dtype runs on the kernel here (builds it on the first
    call). Lets a caller pick its layout (the ConvFFN: fc1 without its GELU) knowing which kernel follows."""
    return (policy.current().depthwise and device.type == "cpu" and dtype == torch.float32 and channels % 16 == 0
            and kernel_size in KERNEL_SIZES and not torch.is_autocast_enabled("cpu") and plain_eager()
            and build.available())


def eligible(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None = None) -> bool:
    """Whether conv(x) (+ residual) fits the kernel: cheap checks, then the build (first call only)."""
    if not policy.current().depthwise or x.device.type != "cpu" or x.dtype != torch.float32 or not _pixels_packed(x):
        return False
    if x.numel() == 0:  # the kernel divides by the batch's extent: an empty batch takes aten's path (empty result)
        return False
    c, k = x.shape[-1], weight.shape[-1]
    if c % 16 or weight.shape != (c, 1, k, k) or k not in KERNEL_SIZES or weight.dtype != torch.float32:
        return False
    if residual is not None and (residual.shape != x.shape or residual.dtype != torch.float32
                                 or residual.stride(-1) != 1 or residual.device.type != "cpu"):
        return False
    if min(x.shape[1], x.shape[2]) < k:  # maps smaller than the kernel: aten's path (pre-padded) measured faster
        return False
    if k > 3 and not needs_grad(x, weight, residual):  # inference: oneDNN's 5x5 forward measured faster
        return False
    if torch.is_autocast_enabled("cpu") or not plain_eager():
        return False
    return build.available()


def _taps(weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """(C, 1, K, K) -> (K*K, C), tap-major: one 16-channel block of every tap is a row of vector loads."""
    w = weight.detach()
    return (w.flip(-1, -2) if flip else w).reshape(w.shape[0], -1).t().contiguous()


def _run_forward(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor | None,
                 self_res: bool, act: bool, post: torch.Tensor | None, lib=None) -> torch.Tensor:
    b, h, w, c = x.shape
    out = torch.empty(b, h, w, c, dtype=x.dtype)
    r = residual if residual is not None else x
    p = post if post is not None else x
    strides = (ctypes.c_int64 * 10)(x.stride(0), x.stride(1), r.stride(0), r.stride(1), r.stride(2), p.stride(0),
                                    p.stride(1), out.stride(0), out.stride(1), out.stride(2))
    ptr = (lambda t: None if t is None else t.data_ptr())
    rc = (lib or build.load()).dwconv_forward(x.data_ptr(), taps.data_ptr(), ptr(bias), ptr(residual), int(self_res),
                                           int(act), ptr(post), out.data_ptr(), b, h, w, c, round(taps.shape[0] ** 0.5),
                                           strides, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"depthwise conv kernel: unsupported shape {tuple(x.shape)}")
    return out


class FusedDepthwiseConv(torch.autograd.Function):
    """bias + conv(a) + residual, a = GELU(x) or x, residual none / a itself / another map. Saves x and the weight."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, self_res: bool, act: bool):
        bias_ = None if bias is None else bias.detach().contiguous()
        out = _run_forward(x, _taps(weight), bias_, residual, self_res, act, None)
        ctx.save_for_backward(x, weight)
        ctx.lib = build.load()  # the forward's library
        ctx.self_res, ctx.act, ctx.has_bias, ctx.has_res = self_res, act, bias is not None, residual is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        g = grad if _pixels_packed(grad) else grad.contiguous()
        gx = gw = gb = None
        if need_x:  # conv^T(g) (+ g for a self residual), times GELU'(x) for act
            gx = _run_forward(g, _taps(weight, flip=True), None, None, ctx.self_res, False, x if ctx.act else None,
                              ctx.lib)
        if need_w or need_b:
            b, h, w, c = x.shape
            k = weight.shape[-1]
            dwb = torch.empty(k * k + 1, c, dtype=x.dtype)
            strides = (ctypes.c_int64 * 4)(x.stride(0), x.stride(1), g.stride(0), g.stride(1))
            rc = ctx.lib.dwconv_weight_grad(x.data_ptr(), g.data_ptr(), int(ctx.act), dwb.data_ptr(), b, h, w, c, k,
                                            strides, torch.get_num_threads())
            if rc != 0:
                raise RuntimeError(f"depthwise conv kernel: unsupported shape {tuple(x.shape)}")
            gw = dwb[:-1].t().reshape(weight.shape) if need_w else None
            gb = dwb[-1].clone() if need_b and ctx.has_bias else None
        gr = grad if need_r and ctx.has_res else None
        return gx, gw, gb, gr, None, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   residual: torch.Tensor | str | None = None, act: str | None = None) -> torch.Tensor:
    """bias + depthwise_conv(a) + residual on the kernel, a = GELU(x) (act="gelu") or x; residual "self" adds a
    itself. x is (B, H, W, C); the caller checks `eligible` first."""
    if act not in (None, "gelu"):
        raise ValueError(f"depthwise_conv act must be None or 'gelu', got {act!r}")
    self_res = isinstance(residual, str)
    if self_res and residual != "self":
        raise ValueError(f"depthwise_conv residual must be a tensor, 'self' or None, got {residual!r}")
    res = None if self_res else residual
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias, res)):
        return FusedDepthwiseConv.apply(x, weight, bias, res, self_res, act == "gelu")
    b = None if bias is None else bias.contiguous()
    return _run_forward(x, _taps(weight), b, res, self_res, act == "gelu", None)


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
              residual: torch.Tensor | str | None = None, act: str | None = None) -> torch.Tensor:
    """What `depthwise_conv` computes, in PyTorch ops (the tests' reference)."""
    a = torch.nn.functional.gelu(x) if act == "gelu" else x
    k = weight.shape[-1]
    y = torch.nn.functional.conv2d(a.permute(0, 3, 1, 2), weight, bias, 1, k // 2, 1, weight.shape[0])
    y = y.permute(0, 2, 3, 1)
    if residual is None:
        return y
    return y + (a if isinstance(residual, str) else residual)

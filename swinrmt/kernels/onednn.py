"""oneDNN routes of PyTorch's own ops: the projections' GEMM, fused inference post-ops, depthwise weight gradients.

## Projections

On CPU, `F.linear` in float32 runs on MKL's sgemm, which takes a slower code path on AMD CPUs. oneDNN, which PyTorch
already ships for its convolutions, runs the projections faster on both AMD EPYCs measured here: on 2 cores of an
AVX-512 one a large square product 20 % faster (218 against 181 GFLOP/s) and rmt_tiny's projections 12 % faster in
all; on an AVX2 one rmt_tiny's inference steps took 0.73x as long (benchmarks/speed/gemm_kernels.py at 862583f
and ab_switch.py; figures in benchmarks/speed/README.md). So `linear` sends float32 CPU projections to oneDNN
(`torch.ops.mkldnn._linear_pointwise`, the op Inductor's CPU backend uses) and everything else to `F.linear`, which is
the reference: `tests/layers/test_linear.py` holds the two equal in values and gradients. The policy's
`onednn_linear` field switches it (`SWINRMT_KERNELS=no-onednn`: `F.linear` everywhere, e.g. to compare on an Intel
CPU, where only AMD was measured here).

In training the projection runs through `OneDNNLinear`: oneDNN for the forward, and, from `CONV1X1_MIN_ROWS` rows on,
the input gradient as oneDNN's backward of the same product seen as a 1x1 convolution over channels-last maps, which
reads x, W and the output gradient in place. The weight gradient goes the same way only where the CPU has AVX-512
(`CONV1X1_WEIGHT_GRAD`): there `mm` (MKL) was slower on it (rmt_tiny's shapes: 451 against 401 ms per step), but on
the AVX2 EPYC oneDNN's weight gradient ran at a quarter of mm's rate and made training steps 1.5-1.7x as long.
Below `CONV1X1_MIN_ROWS`, with create_graph (double backward) and with the policy's `conv1x1_grads` off, the gradients
are matmuls.

## Convolutions
Depthwise convs in float32 CPU training take `depthwise_weight_grad` where aten's weight gradient is slow (policy
`dw_weight_grad`); in float32 CPU inference (policy `fuse_inference`) a conv's residual add, and the stem's and
downsampling's BN and GELU, run as oneDNN post-ops of the conv.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import eager, policy
from .eager import needs_grad, plain_eager_fp32_cpu

# Whether this torch build has oneDNN's linear and fused convolution ops (every x86 CPU wheel does; Inductor uses them).
HAVE_MKLDNN = torch.backends.mkldnn.is_available()  # once: Dynamo cannot trace the call
HAVE_ONEDNN_LINEAR = HAVE_MKLDNN and hasattr(torch.ops.mkldnn, "_linear_pointwise")
HAVE_FUSED_CONV = HAVE_MKLDNN and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
# Whether the weight gradient is oneDNN's 1x1-convolution backward too (else mm): only on AVX-512 (module docstring).
CONV1X1_WEIGHT_GRAD = eager.cpu_has_avx512()


def onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this projection may run on oneDNN: float32 on CPU, eager, no autocast, mode or transform active."""
    # plain_eager_fp32_cpu first: under a tracer, x.numel() would be recorded
    return (HAVE_ONEDNN_LINEAR and policy.current().onednn_linear and plain_eager_fp32_cpu(x, weight) and x.dim() >= 2
            and x.numel() > 0)


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


# conv1x1_grads splits the rows by sample from this many rows per sample on (see its docstring).
MIN_ROWS_PER_SAMPLE = 16
# The gradients go to conv1x1_grads from this many rows (tokens x batch) on; with fewer, mm measured as fast per call
# and the whole stem-4 step (1024 rows and fewer) ran 1-4 % slower with them (benchmarks/speed/ab_switch.py).
CONV1X1_MIN_ROWS = 4096


def conv1x1_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool = True,
                  need_w: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Input and weight gradients of x W^T, computed as oneDNN's backward of a 1x1 convolution.

    x (..., in) and grad (..., out) are viewed as channels-last (N, rows / N, 1, C) maps, so oneDNN reads them where
    they lie; the weight is the (out, in, 1, 1) kernel. N is the leading (batch) dimension where each sample has at
    least `MIN_ROWS_PER_SAMPLE` rows; with fewer, one map of all rows measured faster (gemm_kernels.py --stem-stride 4).
    """
    n_out, n_in = weight.shape
    lead = x.shape[0] if x.dim() > 2 and x.numel() // n_in >= MIN_ROWS_PER_SAMPLE * x.shape[0] else 1
    xv = x.reshape(lead, -1, 1, n_in).permute(0, 3, 1, 2)
    gv = grad.reshape(lead, -1, 1, n_out).permute(0, 3, 1, 2)
    gx, gw, _ = torch.ops.aten.convolution_backward(gv, xv, weight.reshape(n_out, n_in, 1, 1), None, [1, 1], [0, 0],
                                                    [1, 1], False, [0, 0], 1, [need_x, need_w, False])
    return (gx.permute(0, 2, 3, 1).reshape(x.shape) if need_x else None,
            gw.reshape(n_out, n_in) if need_w else None)


class OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN for the forward and both gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.conv1x1 = bias is not None, policy.current().conv1x1_grads
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = gw = gb = None
        rows = grad.numel() // grad.shape[-1]
        big = ctx.conv1x1 and rows >= CONV1X1_MIN_ROWS and not torch.is_grad_enabled()  # enabled: create_graph
        conv_x, conv_w = need_x and big, need_w and big and CONV1X1_WEIGHT_GRAD
        if conv_x or conv_w:
            gx, gw = conv1x1_grads(grad, x, weight, conv_x, conv_w)
        if need_x and not conv_x:  # few rows, or create_graph=True (stay differentiable)
            gx = grad.matmul(weight)
        if need_w and not conv_w:
            gw = grad.reshape(-1, grad.shape[-1]).t().mm(x.reshape(-1, x.shape[-1]))
        if need_b and ctx.has_bias:
            gb = grad.sum(tuple(range(grad.dim() - 1)))  # no reshape: a strided grad is not copied for it
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` on the fastest correct kernel (see the module docstring)."""
    if not onednn_ok(x, weight):
        return F.linear(x, weight, bias)
    if needs_grad(x, weight, bias):
        return OneDNNLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.gelu(F.linear(x, weight, bias))` (exact GELU); in float32 CPU inference one oneDNN GEMM with GELU fused, which
    skips a pass over the FFN's widest activation."""
    # the cheap check first
    if policy.current().fuse_inference and not needs_grad(x, weight, bias) and onednn_ok(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return F.gelu(linear(x, weight, bias))


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """dL/dW (C, 1, kh, kw) of a stride-1, same-padded depthwise conv, on the oneDNN kernels that are fast.

    oneDNN's depthwise weight gradient is fast only for kernels at most 3 wide, and only where the conv does not pad
    a map smaller than the kernel: aten's 5x5 weight + bias gradient takes 7-15x its forward on rmt_tiny's maps, and
    a 3x3 one on a 2x2 map 12-19x (torch 2.13, 2 cores). So the kernel's columns go in groups of at most 3, each over
    its own shifted copy of the input, and small maps are padded first: 2-4x less time per conv
    (benchmarks/speed/dwconv_backward.py at 862583f). Built from differentiable ops, so double backward works.
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


def fold_bn_inference(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """Whether conv -> BN (-> GELU) on x may run as one oneDNN conv with the BN folded into its weights: float32 CPU
    inference (BN on its running statistics), plain eager, the policy's `fuse_inference` on."""
    return (policy.current().fuse_inference and HAVE_FUSED_CONV and not bn.training and bn.running_mean is not None
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


def conv_add(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """residual + depthwise_conv(x) on channels-last (B, H, W, C) maps as one oneDNN conv with the add fused (float32
    CPU inference; the caller checks `conv_add_fits`)."""
    k = weight.shape[-1]
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x.permute(0, 3, 1, 2), residual.permute(0, 3, 1, 2), weight, bias, [k // 2] * 2, [1, 1], [1, 1],
        weight.shape[0], "add", None, None, [], None).permute(0, 2, 3, 1)


def conv_add_fits(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> bool:
    return (residual is not None and policy.current().fuse_inference and HAVE_FUSED_CONV
            and not needs_grad(x, weight, bias, residual) and plain_eager_fp32_cpu(x, weight, residual)
            and x.dim() == 4 and residual.shape == x.shape and residual.is_contiguous())


def weight_grad_fits(y: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a depthwise conv of the (B, C, H, W) map y takes `DepthwiseConv2d`: float32 CPU training, where aten's
    weight gradient is slow (kernels wider than 3, or maps smaller than the kernel; see `depthwise_weight_grad`)."""
    k = weight.shape[-1]
    return (policy.current().dw_weight_grad and HAVE_MKLDNN and weight.requires_grad
            and torch.is_grad_enabled() and plain_eager_fp32_cpu(y, weight) and y.dim() == 4
            and (k > 3 or min(y.shape[-2:]) < k))

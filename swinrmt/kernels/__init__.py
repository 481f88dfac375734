"""The boundary between the model math and the speed machinery.

`swinrmt.layers` states what each layer computes and calls the functions below for the operations that have faster
routes than the plain PyTorch code. Each function here computes exactly what its reference computes (named in its
docstring; the tests hold every route to it) and picks a route from the device, dtype, grad mode, shape and the
policy (`policy.py`: one switch per route, `SWINRMT_KERNELS`, `use(...)`, `reference()`):

| operation | reference | routes |
|---|---|---|
| `linear` | `F.linear` (+ exact GELU) | oneDNN GEMM, 1x1-conv gradients, GELU post-op (`onednn.py`) |
| `attention` | softmax(q kᵀ s + bias) v (SDPA) | C++ short-attention kernel; explicit form in CPU bf16 (`sdpa.py`) |
| `flat_rotary_attention` | `attention` of q, k rotated by RMT's flat code | the kernel rotates them as it loads them |
| `axial_attention` | the mixer's `attention` (windowed axial passes) | whole-axis, unrolled, kernel, merged windows |
| `depthwise_conv` | `nn.Conv2d` (+ residual) | C++ fused kernel, oneDNN add post-op, grouped weight gradient |
| `ffn_hidden` | `ConvFFN.hidden` | GELU, conv and residual in one C++ kernel pass |
| `conv_bn` | BN(conv(x)) (+ GELU) | BN folded into one oneDNN conv in inference |
| `swiglu`, `head_rms_norm` | v SiLU(g); per-head RMS norm | C++ kernels, checkpointed SiLU (`pointwise.py`) |
| `sigmoid_gate` | y sigmoid(a) | an autograd function that keeps the output, not y |
| `rotate` | `rotary.apply_rotary` | one complex multiply (`rotate.py`) |

The C++ sources are in `csrc/`, built and loaded by `build.py`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.fx
import torch.nn.functional as F

from ..layers import rotary
from . import depthwise, onednn, policy, short_attention
from .sdpa import biased_attention as attention
from .axial import axial_attention
from .pointwise import head_rms_norm, sigmoid_gate, swiglu
from .policy import Policy, current, reference, use
from .eager import needs_grad
from .rotate import rotate

__all__ = ["Policy", "attention", "axial_attention", "conv_bn", "current", "depthwise_conv", "ffn_fused", "ffn_hidden",
           "flat_rotary_attention", "head_rms_norm", "linear", "reference", "rotate", "sigmoid_gate", "swiglu", "use"]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           act: str | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, then the exact GELU with act="gelu"."""
    return onednn.linear_gelu(x, weight, bias) if act == "gelu" else onednn.linear(x, weight, bias)


def depthwise_conv(x: torch.Tensor, conv: nn.Conv2d, residual: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x) on a channels-last (B, H, W, C) map (a same-padded depthwise `nn.Conv2d`), plus `residual` if given.

    In float32 on CPU, swinrmt's depthwise kernel where it fits: conv, bias and residual in one pass, and x + conv(x)
    as one input of the autograd graph, so its gradient needs no separate accumulation. Otherwise, with a residual in
    float32 CPU inference, one oneDNN conv with the add fused; in float32 CPU training, the grouped weight gradient
    where aten's is slow.
    """
    w, b = conv.weight, conv.bias
    if depthwise.eligible(x, w, None if residual is x else residual):
        return depthwise.depthwise_conv(x, w, b, "self" if residual is x else residual)
    if onednn.conv_add_fits(x, residual, w, b):
        return onednn.conv_add(x, residual, w, b)
    y = x.permute(0, 3, 1, 2)
    if onednn.weight_grad_fits(y, w):
        y = onednn.DepthwiseConv2d.apply(y, w, b).permute(0, 2, 3, 1)
    else:
        y = conv(y).permute(0, 2, 3, 1)
    return y if residual is None else residual + y


def ffn_hidden(ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`ffn.hidden(x)` (GELU(fc1 x), then h + DWConv(h)); where the depthwise kernel takes it (`ffn_fused`), GELU,
    conv and residual run as one pass over fc1's output, GELU(h) recomputed in the backward rather than stored."""
    if not ffn_fused(ffn, x):
        return ffn.hidden(x)
    conv = ffn.dwconv.conv
    h = onednn.linear(x, ffn.fc1.weight, ffn.fc1.bias)
    return depthwise.depthwise_conv(h, conv.weight, conv.bias, "self", "gelu")


def ffn_fused(ffn: nn.Module, x: torch.Tensor) -> bool:
    """Whether `ffn_hidden` runs as one depthwise-kernel pass: not with dropout in training (it sits between GELU and
    the conv), float32, maps no smaller than the kernel, and the kernel on for this width."""
    conv = ffn.dwconv.conv if ffn.dwconv is not None else None
    if conv is None or x.dim() != 4 or (ffn.drop.p and ffn.training):
        return False
    return (ffn.fc1.weight.dtype == conv.weight.dtype == torch.float32
            and min(x.shape[1], x.shape[2]) >= conv.weight.shape[-1]
            and depthwise.takes(ffn.fc2.in_features, conv.weight.shape[-1], x.device, x.dtype))


def conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, gelu: bool = False) -> torch.Tensor:
    """bn(conv(x)), then the exact GELU with `gelu`; in float32 CPU inference one oneDNN conv with BN folded in."""
    if onednn.fold_bn_inference(x, conv, bn):
        return onednn.conv_bn(x, conv, bn, gelu=gelu)
    y = bn(conv(x))
    return F.gelu(y) if gelu else y


def flat_rotary_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`attention` of q and k (..., N, d) rotated by RMT's flat code over the N positions (`rotary.rotary_tables`).

    In inference on the short-attention kernel (policy `fold_rotary`), the kernel rotates them as it loads them,
    so no rotated copies are written."""
    n, d = q.shape[-2:]
    if policy.current().fold_rotary and not needs_grad(q, k) and short_attention.takes(n, d, q.dtype, q.device):
        return attention(q, k, v, bias, rotary=rotary.folded_rotary(n, d, q.dtype, q.device))
    sin, cos = rotary.rotary_tables(n, d, q.dtype, q.device)
    return attention(rotate(q, sin, cos), rotate(k, sin, cos), v, bias)


# torch.fx: every function above picks its route from shapes, dtypes, devices and the policy, which a symbolic trace
# cannot branch on. Wrapped, a trace (torch.fx.symbolic_trace, timm's and torchvision's feature extraction) records each
# call as one node that runs the function itself, so a traced model takes the routes the eager one takes. The wrap only
# patches these names while a trace runs: eager calls are the plain functions.
for _name in ("attention", "axial_attention", "conv_bn", "depthwise_conv", "ffn_hidden", "flat_rotary_attention",
              "head_rms_norm", "linear", "rotate", "sigmoid_gate", "swiglu"):
    torch.fx.wrap(_name)
del _name

"""Linear layers with the faster CPU GEMM: the one place that picks the matrix-multiply kernel of a projection.

On CPU, `F.linear` in float32 runs on MKL's sgemm, which takes a slower code path on AMD CPUs. oneDNN, which PyTorch
already ships for its convolutions, runs a large square product about 20 % faster on 2 cores of an AMD EPYC (218
against 181 GFLOP/s) and rmt_tiny's projections 12 % faster in all (benchmarks/speed/gemm_kernels.py; figures in
benchmarks/speed/README.md). So `linear` sends float32 CPU projections to oneDNN
(`torch.ops.mkldnn._linear_pointwise`, the op Inductor's CPU backend uses) and everything else to `F.linear`, which is
the reference: `tests/layers/test_linear.py` holds the two equal in values and gradients. Only AMD was measured here;
`SWINRMT_CPU_LINEAR=aten` keeps `F.linear` everywhere (to compare on another CPU).

In training the projection runs through `OneDNNLinear`: oneDNN for the forward and, from `DX_MIN_ROWS` rows on, for
the input gradient (a linear with the transposed weight); `mm` for the weight gradient, where oneDNN needs transposed
copies of both operands and measured 1.6x slower. Its backward is itself differentiable (double backward works).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .eager import plain_eager_fp32_cpu

CHOICES = ("onednn", "aten")


def kernel_from_env(value: str | None) -> bool:
    """SWINRMT_CPU_LINEAR: "onednn" (default) or "aten" (F.linear everywhere, e.g. to compare on an Intel CPU, where
    only AMD was measured here)."""
    value = (value or "onednn").strip().lower()
    if value not in CHOICES:
        raise ValueError(f"SWINRMT_CPU_LINEAR={value!r} is not valid; accepted: {', '.join(CHOICES)}")
    return value == "onednn"


# The input gradient goes to oneDNN from this many rows (tokens x batch) on; below, the transposed-weight copy it
# needs costs more than it saves (benchmarks/speed/gemm_kernels.py --stem-stride 4: 1024 rows and fewer lost).
DX_MIN_ROWS = 4096
# Whether this torch build has oneDNN's linear op (every x86 CPU wheel does).
HAVE_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# Whether float32 CPU projections may use oneDNN; also the switch of benchmarks/speed/ab_switch.py.
ONEDNN = kernel_from_env(os.environ.get("SWINRMT_CPU_LINEAR")) and HAVE_ONEDNN_LINEAR


def onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this projection may run on oneDNN: float32 on CPU, eager, no autocast, mode or transform active."""
    # plain_eager_fp32_cpu first: under a tracer, x.numel() would be recorded
    return ONEDNN and plain_eager_fp32_cpu(x, weight) and x.dim() >= 2 and x.numel() > 0


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with oneDNN GEMMs for the forward and the input gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        g2 = grad.reshape(-1, grad.shape[-1])
        gx = gw = gb = None
        if need_x:
            if torch.is_grad_enabled() or g2.shape[0] < DX_MIN_ROWS:  # create_graph=True: stay differentiable
                gx = grad.matmul(weight)
            else:
                gx = _onednn(grad, weight.t().contiguous(), None)
        if need_w:
            gw = g2.t().mm(x.reshape(-1, x.shape[-1]))
        if need_b and ctx.has_bias:
            gb = g2.sum(0)
        return gx, gw, gb


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` on the fastest correct kernel (see the module docstring)."""
    if not onednn_ok(x, weight):
        return F.linear(x, weight, bias)
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return OneDNNLinear.apply(x, weight, bias)
    return _onednn(x, weight, bias)


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict, same init) whose forward runs `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)

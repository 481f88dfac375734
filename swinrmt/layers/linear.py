"""Linear layers with the faster CPU GEMM: the one place that picks the matrix-multiply kernel of a projection.

On CPU, `F.linear` in float32 runs on MKL's sgemm, which takes a slower code path on AMD CPUs. oneDNN, which PyTorch
already ships for its convolutions, runs the projections faster on both AMD EPYCs measured here: on 2 cores of an
AVX-512 one a large square product 20 % faster (218 against 181 GFLOP/s) and rmt_tiny's projections 12 % faster in
all; on an AVX2 one rmt_tiny's inference steps took 0.73x as long (benchmarks/speed/gemm_kernels.py and ab_switch.py;
figures in benchmarks/speed/README.md). So `linear` sends float32 CPU projections to oneDNN
(`torch.ops.mkldnn._linear_pointwise`, the op Inductor's CPU backend uses) and everything else to `F.linear`, which is
the reference: `tests/layers/test_linear.py` holds the two equal in values and gradients. `SWINRMT_CPU_LINEAR`
= `auto` (default) or `onednn` picks oneDNN, `aten` forces `F.linear` (e.g. to compare on an Intel CPU, where only
AMD was measured here).

In training the projection runs through `OneDNNLinear`: oneDNN for the forward, and, from `CONV1X1_MIN_ROWS` rows on,
the input gradient as oneDNN's backward of the same product seen as a 1x1 convolution over channels-last maps, which
reads x, W and the output gradient in place. The weight gradient goes the same way only where the CPU has AVX-512
(`CONV1X1_WEIGHT_GRAD`): there `mm` (MKL) was slower on it (rmt_tiny's shapes: 451 against 401 ms per step), but on
the AVX2 EPYC oneDNN's weight gradient ran at a quarter of mm's rate and made training steps 1.5-1.7x as long.
Below `CONV1X1_MIN_ROWS`, and with create_graph (double backward), the gradients are matmuls.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import eager
from .eager import needs_grad, plain_eager_fp32_cpu

def kernel_from_env(value: str | None) -> bool:
    """SWINRMT_CPU_LINEAR: "auto" or "onednn" (oneDNN, the default), or "aten" (F.linear everywhere)."""
    return eager.env_switch("SWINRMT_CPU_LINEAR", value, "onednn", "aten")


# Whether this torch build has oneDNN's linear op (every x86 CPU wheel does).
HAVE_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
# Whether float32 CPU projections may use oneDNN; also the switch of benchmarks/speed/ab_switch.py.
ONEDNN = kernel_from_env(os.environ.get("SWINRMT_CPU_LINEAR")) and HAVE_ONEDNN_LINEAR
# Whether the weight gradient is oneDNN's 1x1-convolution backward too (else mm): only on AVX-512 (module docstring).
CONV1X1_WEIGHT_GRAD = eager.cpu_has_avx512()


def onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this projection may run on oneDNN: float32 on CPU, eager, no autocast, mode or transform active."""
    # plain_eager_fp32_cpu first: under a tracer, x.numel() would be recorded
    return ONEDNN and plain_eager_fp32_cpu(x, weight) and x.dim() >= 2 and x.numel() > 0


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
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        gx = gw = gb = None
        rows = grad.numel() // grad.shape[-1]
        big = rows >= CONV1X1_MIN_ROWS and not torch.is_grad_enabled()  # grad enabled here: create_graph=True
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
    if eager.FUSE_INFERENCE and not needs_grad(x, weight, bias) and onednn_ok(x, weight):  # the cheap check first
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return F.gelu(linear(x, weight, bias))


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict, same init) whose forward runs `linear`.

    `act="gelu"` applies the exact GELU to the output (the FFN's fc1): in float32 CPU inference fused into the oneDNN
    GEMM (`linear_gelu`), which skips a pass over the FFN's widest activation.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, act: str | None = None, **kw):
        if act not in (None, "gelu"):
            raise ValueError(f"Linear act must be None or 'gelu', got {act!r}")
        super().__init__(in_features, out_features, bias, **kw)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act == "gelu":
            return linear_gelu(x, self.weight, self.bias)
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", act={self.act}" if self.act else "")

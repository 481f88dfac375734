"""Linear layers with the faster CPU GEMM: the one place that picks the matrix-multiply kernel of a projection.

On CPU, `F.linear` in float32 runs on MKL's sgemm. oneDNN, which PyTorch already ships for its convolutions, runs the
same products 10-25 % faster on the projection shapes of these models, and a large square product about 20 % faster
(210-219 GFLOP/s against 163-188 on 2 cores of an AMD EPYC; benchmarks/speed/README.md). MKL takes a slower code
path on non-Intel CPUs; oneDNN does not. So `linear` sends float32 CPU projections to oneDNN
(`torch.ops.mkldnn._linear_pointwise`, the op Inductor's CPU backend uses) and everything else to `F.linear`, which is
the reference: `tests/layers/test_linear.py` holds the two equal in values and gradients.

In training the projection runs through `OneDNNLinear`: oneDNN for the forward and for the input gradient (a
linear with the transposed weight), `mm` for the weight gradient. oneDNN needs transposed copies of the activations to
compute the weight gradient, which made it 1.6x slower there. Its backward is itself differentiable (double
backward works).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Switch for benchmarks (benchmarks/speed/ab_switch.py) and debugging: False sends every projection to F.linear.
ONEDNN = True


def onednn_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this projection may run on oneDNN: float32 on CPU, eager, no autocast, mode or transform active."""
    if not ONEDNN or torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False  # compilers pick their own kernels; tracers and exporters must see aten::linear
    if torch.onnx.is_in_onnx_export() or torch.is_autocast_enabled("cpu"):
        return False  # autocast would not cast the oneDNN op's inputs
    if torch._C._len_torch_dispatch_stack() > 0:
        return False  # a dispatch mode (the FLOP counter, fake tensors) expects aten's ops
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() < 2 or x.numel() == 0 or not torch._C._get_mkldnn_enabled():
        return False
    return not torch._C._are_functorch_transforms_active()


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
            if torch.is_grad_enabled():  # create_graph=True: stay differentiable
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

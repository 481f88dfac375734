"""SWAT's SiLU-gated value and per-head RMS norm, one pass each way on CPU in float32: a small C++ kernel.

SWAT's mixer wraps its attention in two elementwise steps: the SwiGLU value v * SiLU(g) (`gates.SwiGLUValue`) and the
head norm, an RMS norm over each head's channels times a learned weight (`SwatMixer.post`). PyTorch runs the first as
two ops forward and, with the SiLU recomputed in the backward to save memory, four more backward; `F.rms_norm` on CPU
is a composite of about six ops forward and ten backward. Each op is a pass over an activation-sized tensor: on
gated_swinrmt_swat_tiny (batch 64, 64 px) the two took about 5 % of a training step. `csrc/pointwise.cpp` does each
in one pass forward and one backward, saving what PyTorch's versions save (v and g; x and one scale per head).

A fast path only: `silu_mul` (after `silu_mul_fits`) and `head_rms_norm` run the kernel on contiguous float32 CPU
tensors in plain eager mode (head dims a multiple of 16 for the norm), else PyTorch's ops run (`silu_mul_reference`,
`head_rms_norm_reference`); `tests/layers/test_pointwise.py` holds the two equal in values and gradients. The backward
is once-differentiable. The policy's `pointwise` field switches it.

Beside the kernel, two autograd routes that save memory: the SwiGLU value recomputes SiLU(g) in the backward where
the kernel does not run (`silu_mul`), and the G1 gate's backward reads its output instead of keeping its input
(`SigmoidGate`, policy `lean_gate`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ..layers import gates
from . import build, policy
from .eager import needs_grad, plain_eager


def _fits(*tensors: torch.Tensor) -> bool:
    """Whether the kernel may take these tensors: cheap checks first, then the mode checks and the build."""
    if not policy.current().pointwise or any(t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous()
                          for t in tensors):
        return False
    return not torch.is_autocast_enabled("cpu") and plain_eager() and build.available()


def silu_mul_reference(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return v * F.silu(g)


def _silu_mul(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    z = torch.empty_like(v)
    build.load().silu_mul_forward(v.data_ptr(), g.data_ptr(), z.data_ptr(), v.numel(), torch.get_num_threads())
    return z


class SiLUMul(torch.autograd.Function):
    """z = v SiLU(g), keeping v and g (the SiLU is recomputed in the one backward pass)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v, g)
        ctx.lib = build.load()  # the forward's library
        return _silu_mul(v, g)

    @staticmethod
    @once_differentiable
    def backward(ctx, dz: torch.Tensor):
        v, g = ctx.saved_tensors
        dz = dz.contiguous()
        dv, dg = torch.empty_like(v), torch.empty_like(g)
        ctx.lib.silu_mul_backward(v.data_ptr(), g.data_ptr(), dz.data_ptr(), dv.data_ptr(), dg.data_ptr(),
                                             v.numel(), torch.get_num_threads())
        return dv, dg


def silu_mul_fits(v: torch.Tensor, g: torch.Tensor) -> bool:
    """Whether v * SiLU(g) runs on the kernel (callers with their own PyTorch version, e.g. checkpointed, ask first)."""
    return v.shape == g.shape and _fits(v, g)


def silu_mul(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """v * SiLU(g) on the kernel; the caller checks `silu_mul_fits` first (and runs its own PyTorch version if not)."""
    return SiLUMul.apply(v, g) if needs_grad(v, g) else _silu_mul(v, g)


def head_rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, head_dim: int, eps: float) -> torch.Tensor:
    shape = x.shape  # head_dim a Python int: exporters need rms_norm's normalized shape constant
    return F.rms_norm(x.view(*shape[:-1], -1, head_dim), (head_dim,), eps=eps).view(shape) * weight


def _head_rms_norm(x: torch.Tensor, weight: torch.Tensor, heads: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's forward: y and the per-head scales r (rows, heads)."""
    c = x.shape[-1]
    rows = x.numel() // c
    y, rstd = torch.empty_like(x), torch.empty(rows, heads, dtype=x.dtype)
    rc = build.load().head_rms_norm_forward(x.data_ptr(), weight.data_ptr(), y.data_ptr(), rstd.data_ptr(), rows, c,
                                            c // heads, eps, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"head RMS norm kernel: unsupported shape {tuple(x.shape)} with {heads} heads")
    return y, rstd


class HeadRMSNorm(torch.autograd.Function):
    """y = x r w per head (r = 1 / sqrt(mean(x^2) + eps)), keeping x and r."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, heads: int, eps: float) -> torch.Tensor:
        y, rstd = _head_rms_norm(x, weight, heads, eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.heads, ctx.lib = heads, build.load()  # the forward's library
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        x, weight, rstd = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        dy = dy.contiguous()
        c = x.shape[-1]
        dx = torch.empty_like(x)
        dw = torch.empty_like(weight) if need_w else None
        ctx.lib.head_rms_norm_backward(x.data_ptr(), weight.data_ptr(), rstd.data_ptr(), dy.data_ptr(), dx.data_ptr(),
                                       None if dw is None else dw.data_ptr(), x.numel() // c, c, c // ctx.heads,
                                       torch.get_num_threads())
        return (dx if need_x else None), dw, None, None


def head_rms_norm(x: torch.Tensor, weight: torch.Tensor, head_dim: int, eps: float) -> torch.Tensor:
    """RMS norm over each group of `head_dim` channels of x (..., C), times weight (C,): the kernel where it fits, else
    PyTorch's ops. x need not be contiguous (the kernel path copies it)."""
    if (head_dim % 16 or x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0 or not _fits(weight)
            or x.shape[-1] % head_dim or weight.shape != (x.shape[-1],)):
        return head_rms_norm_reference(x, weight, head_dim, eps)
    heads = x.shape[-1] // head_dim
    x = x.contiguous()
    if needs_grad(x, weight):
        return HeadRMSNorm.apply(x, weight, heads, eps)
    return _head_rms_norm(x, weight, heads, eps)[0]


class SigmoidGate(torch.autograd.Function):
    """z = y * sigmoid(a), keeping only z and a for the backward, never y.

    Autograd would keep y and sigmoid(a) for the product, and W_O keeps z as its input: three activation-sized tensors
    per gated block. Since dL/da = dz * y * g (1 - g) = dz * z (1 - g) with g = sigmoid(a), the output z (which W_O
    holds anyway) stands in for y, with no division by g: one activation-sized tensor less per gated block, for one
    sigmoid recomputed in the backward. The backward is plain differentiable tensor code on inputs and outputs, so
    double backward works.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, a: torch.Tensor, heads: int) -> torch.Tensor:
        z = gates.gate_product(y, torch.sigmoid(a), heads)
        ctx.save_for_backward(z, a)
        ctx.heads = heads
        return z

    @staticmethod
    def backward(ctx, dz: torch.Tensor):
        z, a = ctx.saved_tensors
        heads, g = ctx.heads, torch.sigmoid(a)
        dz_z = dz * z
        if heads:
            dz_z = dz_z.view(*z.shape[:-1], heads, -1).sum(-1)
        return gates.gate_product(dz, g, heads), (dz_z * (1 - g)).to(a.dtype), None


def sigmoid_gate(y: torch.Tensor, a: torch.Tensor, heads: int = 0) -> torch.Tensor:
    """y * sigmoid(a) (one gate per channel, or per head with `heads`), through `SigmoidGate` under autograd."""
    if policy.current().lean_gate and torch.is_grad_enabled() and (y.requires_grad or a.requires_grad):
        return SigmoidGate.apply(y, a, heads)
    return gates.gate_product(y, torch.sigmoid(a), heads)


def swiglu(v: torch.Tensor, g: torch.Tensor, training: bool) -> torch.Tensor:
    """v * SiLU(g): on the kernel where it fits (one pass each way, keeps v and g), else PyTorch's ops, in training
    with SiLU(g) recomputed in the backward instead of held (one activation-sized tensor less per block)."""
    if silu_mul_fits(v, g):
        return silu_mul(v, g)
    if training and torch.is_grad_enabled() and (v.requires_grad or g.requires_grad):
        return checkpoint(silu_mul_reference, v, g, use_reentrant=False)
    return silu_mul_reference(v, g)

"""Softmax attention with an additive bias (and SWAT's sigmoid attention) over short sequences, on CPU in float32:
a small C++ kernel.

RMT-style attention runs thousands of independent small problems per call: one per image row or column and head in
the decomposed passes (e.g. 8192 problems of 32 positions x head dim 16 in rmt_tiny's first stage at 64 px), one per
image and head in the full 2-D stages. PyTorch's fused CPU kernel is built for long sequences and reaches about 30
GFLOP/s on these; the explicit matmul form writes the score tensor out and reads it back, and its autograd keeps the
probabilities. `csrc/short_attention.cpp` keeps each problem in registers and L1, and its backward recomputes the
probabilities from the row log-sum-exp, so it saves what the fused kernel saves (q, k, v, output, log-sum-exp) and
training memory is unchanged. On rmt_tiny's own calls it takes 0.25-0.93x the fused kernel's time forward and
0.38-0.85x forward + backward (`benchmarks/speed/attention_kernels.py`, git history at 862583f). The same kernel
runs SWAT's sigmoid passes (`sigmoid_attention`: weights sigmoid(S) x a multiplier table, no normaliser; it saves
only q, k, v and the tables).
Inside a problem, K^T is built by W x W register transposes (W = 16 floats on AVX-512, 8 elsewhere: `csrc/vec.h`) and
the softmax runs on W rows at a time, transposed, so row maxima and sums are elementwise (1.1-1.6x per call on warm
data); across problems, the rows of the problem 4 ahead are prefetched, which the token layout's strided rows need on
cold data (1.2-1.4x on the width passes). In inference a `rotary.FoldedRotary` lets it rotate q and k as it loads
them (RMT's flat code), so the mixers write no rotated copies. Figures: benchmarks/speed/README.md (the attention-kernel tables).

It is a fast path only: `kernels.attention` (and SWAT's `axial.fast_axial_sigmoid`) call it when `eligible` says the
call fits (float32 CPU tensors, lengths 4-64 in powers of two, head dim 16/32/64, constant tables, plain eager mode),
and PyTorch's kernel (or the explicit sigmoid path) otherwise. It is built with swinrmt's other CPU kernels
(`build`: compiled at first use, cached; without a compiler, one warning and PyTorch's kernel). The policy's
`short_attention` field switches it.
"""
from __future__ import annotations

import ctypes

import torch
from torch.autograd.function import once_differentiable

from ..layers.rotary import FoldedRotary
from . import build, policy
from .eager import plain_eager

HEAD_DIMS = (16, 32, 64)
LENGTHS = (4, 8, 16, 32, 64)


def available() -> bool:
    """Whether the kernel is on and built (builds it on the first call)."""
    return policy.current().short_attention and build.available()


def takes(length: int, head_dim: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether attention over `length` positions at this head dim, dtype and device runs on the kernel here (on, in
    plain eager mode, built: builds it on the first call). Lets callers pick a layout knowing which kernel follows."""
    return (policy.current().short_attention and device.type == "cpu" and dtype == torch.float32
            and length in LENGTHS and head_dim in HEAD_DIMS and not torch.is_autocast_enabled("cpu") and plain_eager()
            and available())


def eligible(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
             mul: torch.Tensor | None = None) -> bool:
    """Whether a call fits the kernel (cheap checks; does not build it): `biased_attention`'s, or with `mul` a
    sigmoid pass's."""
    if not policy.current().short_attention or q.device.type != "cpu" or q.dim() != 4:
        return False
    n1, n2, length, d = q.shape
    if q.numel() == 0:  # an empty batch takes the reference route (an empty result)
        return False
    if length not in LENGTHS or d not in HEAD_DIMS or k.shape != q.shape or v.shape != q.shape:
        return False
    tables = (bias,) if mul is None else (bias, mul)
    if any(t.dtype != torch.float32 or t.stride(-1) != 1 or t.device.type != "cpu" for t in (q, k, v) + tables):
        return False
    for t in tables:
        if t.dim() != 4 or t.shape[2:] != (length, length) or t.shape[0] not in (1, n1) or t.shape[1] not in (1, n2):
            return False
        if t.requires_grad and torch.is_grad_enabled():  # a learnable table: its gradient is PyTorch's job
            return False
    return not torch.is_autocast_enabled("cpu") and plain_eager()


def set_prefetch(ahead: int) -> int:
    """How many problems ahead the kernel prefetches q, k, v rows (0: off; built with 4); returns the previous value.
    For before/after measurements (benchmarks/speed/ab_switch.py kernel_prefetch)."""
    lib = build.load()
    if lib is None:
        raise RuntimeError("the short-attention kernel is not built here")
    return lib.short_attention_set_prefetch(int(ahead))


def _strides(*tensors: torch.Tensor) -> ctypes.Array:
    """(n1, n2, row) element strides of each operand; 0 on a broadcast (size-1) dimension."""
    out = []
    for t in tensors:
        out += [0 if t.shape[0] == 1 else t.stride(0), 0 if t.shape[1] == 1 else t.stride(1), t.stride(2)]
    return (ctypes.c_int64 * len(out))(*out)


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mul: torch.Tensor | None,
             scale: float, keep_lse: bool, rotary: FoldedRotary | None = None
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    n1, n2, length, d = q.shape
    out = torch.empty_like(q)  # q's layout: the token order when q is a strided view of it
    lse = torch.empty(n1, n2, length, dtype=torch.float32) if keep_lse and mul is None else None
    rot = (None, None, 0) if rotary is None else (rotary.cos.data_ptr(), rotary.sin.data_ptr(), rotary.step)
    lib = build.load()
    rc = lib.short_attention_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), bias.data_ptr(),
                                     None if mul is None else mul.data_ptr(), out.data_ptr(),
                                     None if lse is None else lse.data_ptr(), n1, n2, length, d,
                                     _strides(q, k, v, bias, out), _strides(bias if mul is None else mul), *rot,
                                     scale, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"short attention kernel: unsupported shape {tuple(q.shape)}")
    return out, lse


class ShortAttention(torch.autograd.Function):
    """Softmax attention (mul None) or SWAT's sigmoid attention (weights sigmoid(S) * mul) on the kernel. Saves what
    the backward recomputes from: q, k, v, the tables and, for softmax, the output and row log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v, bias, mul, scale: float):
        out, lse = _forward(q, k, v, bias, mul, scale, keep_lse=True)
        ctx.sigmoid, ctx.scale, ctx.lib = mul is not None, scale, build.load()  # the forward's library
        ctx.save_for_backward(q, k, v, bias, *((mul,) if mul is not None else (out, lse)))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q, k, v, bias, *rest = ctx.saved_tensors
        mul, out, lse = (rest[0], None, None) if ctx.sigmoid else (None, *rest)
        n1, n2, length, d = q.shape
        grad = grad if grad.stride(-1) == 1 else grad.contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        ptr = (lambda t: None if t is None else t.data_ptr())
        rc = ctx.lib.short_attention_backward(q.data_ptr(), k.data_ptr(), v.data_ptr(), bias.data_ptr(), ptr(mul),
                                          ptr(out), grad.data_ptr(), ptr(lse), dq.data_ptr(), dk.data_ptr(),
                                          dv.data_ptr(), n1, n2, length, d,
                                          _strides(q, k, v, bias, grad if out is None else out, grad, dq, dk, dv),
                                          _strides(bias if mul is None else mul), ctx.scale, torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"short attention kernel: unsupported shape {tuple(q.shape)}")
        return dq, dk, dv, None, None, None


def _apply(q, k, v, bias, mul, scale):
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return ShortAttention.apply(q, k, v, bias, mul, scale)
    return _forward(q, k, v, bias, mul, scale, keep_lse=False)[0]


def rotary_fits(rotary: FoldedRotary, q: torch.Tensor) -> bool:
    """Whether the kernel can rotate q and k of this call by `rotary` as it loads them (float32 contiguous tables that
    cover the call)."""
    return (rotary.fits(q.shape) and all(t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"
                                         for t in (rotary.cos, rotary.sin)))


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                    scale: float | None = None, rotary: FoldedRotary | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + bias) v on the kernel; the caller checks `eligible` and `available` first.

    `rotary`: q and k are first rotated by that code; in inference the kernel does it as it loads them (no rotated
    copies), with autograd the rotated copies are made here (the backward runs on them)."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if rotary is not None:
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        if grad or not rotary_fits(rotary, q):
            q, k = rotary.apply(q), rotary.apply(k)
        else:
            return _forward(q, k, v, bias, None, scale, keep_lse=False, rotary=rotary)[0]
    return _apply(q, k, v, bias, None, scale)


def sigmoid_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, add: torch.Tensor, mul: torch.Tensor,
                      scale: float = 1.0) -> torch.Tensor:
    """(sigmoid(q kᵀ · scale + add) · mul) v on the kernel (SWAT's pass, no row normaliser); the caller checks
    `eligible(q, k, v, add, mul)` and `available` first."""
    return _apply(q, k, v, add, mul, float(scale))

"""Which implementation runs: one policy, read from the environment once, switchable for a block of code.

Every speed route of `swinrmt.kernels` asks `current()` whether it may run, instead of reading module globals. The
policy lives in a `contextvars.ContextVar`, so `use(...)` changes it for the calling thread or asyncio task only, and
leaves it as it was on exit, even after an exception. Every field on (`auto`) is the default; `reference()` turns
every route off: the plain PyTorch code the tests hold each route to.

`SWINRMT_KERNELS` picks the starting policy: `auto` (the default), `reference`, `no-cpp` (swinrmt's C++ kernels off,
everything else on), `no-onednn` (projections on `F.linear` instead of oneDNN: to compare on a CPU where MKL may be
the faster GEMM) or `flex` (`auto` with the softmax passes on FlexAttention, `flex.py`: opt-in until measured on a
GPU).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

ENV = "SWINRMT_KERNELS"


@dataclass(frozen=True)
class Policy:
    """One switch per speed route (all True: `auto`); `benchmarks/speed/ab_switch.py` turns one off at a time."""

    # swinrmt's C++ kernels (swinrmt/kernels/csrc), each on its own
    short_attention: bool = True  # softmax / sigmoid attention over short sequences
    depthwise: bool = True  # depthwise convs with bias, residual and GELU fused
    pointwise: bool = True  # SWAT's SiLU-gated value and head RMS norm
    # oneDNN routes of PyTorch's own ops
    onednn_linear: bool = True  # float32 CPU projections on oneDNN rather than F.linear (MKL)
    conv1x1_grads: bool = True  # projection gradients as oneDNN's 1x1-convolution backward
    dw_weight_grad: bool = True  # depthwise weight gradients in column groups of at most 3
    fuse_inference: bool = True  # inference: GELU into fc1, residual adds into convs, BN folded into convs
    # layouts of the windowed axial attention (`kernels.axial`)
    whole_axis: bool = True  # passes along the whole padded axis, the windows folded into block-diagonal tables
    windowed_if_two_windows: bool = True  # ... except softmax inference with 2 windows per axis (measured faster)
    unroll_shifted: bool = True  # whole-axis passes over unpadded maps: the shift in the tables, not a roll
    fold_rotary: bool = True  # inference: RMT's flat rotary applied by the kernel as it loads q and k
    sigmoid_groups: bool = True  # explicit sigmoid passes over merged windows (head dim <= 16)
    lean_sigmoid: bool = True  # SWAT training: recompute scores and head norm in the backward (checkpoint)
    # autograd and elementwise forms
    lean_gate: bool = True  # the G1 gate's backward from its output (no copy of y kept)
    complex_rotary: bool = True  # rotary as one complex multiply
    # FlexAttention for the softmax passes (`flex.py`): off until a GPU measurement makes it a default; not in `auto`
    flex_attention: bool = False
    # the C++ library: sources (None: this package's csrc; an A/B of two revisions' kernels sets another) and flags
    # added to the build's (e.g. ("-mno-avx512f",): the 8-float vectors on an AVX-512 CPU)
    kernel_sources: Path | None = None
    kernel_flags: tuple[str, ...] = ()

    @property
    def cpp(self) -> bool:
        """Whether any C++ kernel may run."""
        return self.short_attention or self.depthwise or self.pointwise


AUTO = Policy()
REFERENCE = Policy(**{f.name: False for f in dataclasses.fields(Policy) if f.type in ("bool", bool)})
NAMED = {
    "auto": AUTO,
    "reference": REFERENCE,
    "no-cpp": dataclasses.replace(AUTO, short_attention=False, depthwise=False, pointwise=False),
    "no-onednn": dataclasses.replace(AUTO, onednn_linear=False, conv1x1_grads=False),
    "flex": dataclasses.replace(AUTO, flex_attention=True),  # the softmax passes on FlexAttention (opt-in)
}


def from_env(value: str | None) -> Policy:
    """The policy `SWINRMT_KERNELS=value` names (None or empty: `auto`); a one-line ValueError otherwise."""
    name = (value or "auto").strip().lower()
    if name not in NAMED:
        raise ValueError(f"{ENV}={value!r} is not valid; accepted: {', '.join(NAMED)}")
    return NAMED[name]


_POLICY: contextvars.ContextVar[Policy] = contextvars.ContextVar("swinrmt_kernels_policy",
                                                                 default=from_env(os.environ.get(ENV)))


@torch.compiler.assume_constant_result
def current() -> Policy:
    """The policy in force here (this thread / task). torch.compile reads it once, while tracing (Dynamo cannot trace
    a ContextVar): a compiled model keeps the routes it was traced under until `torch._dynamo.reset()`."""
    return _POLICY.get()


@contextlib.contextmanager
def use(policy: Policy | str | None = None, **fields) -> Iterator[Policy]:
    """Run a block under `policy` (a Policy or a name of NAMED; None: the current one) with `fields` changed."""
    base = current() if policy is None else (from_env(policy) if isinstance(policy, str) else policy)
    unknown = set(fields) - {f.name for f in dataclasses.fields(Policy)}
    if unknown:
        raise ValueError(f"unknown kernel policy field(s) {sorted(unknown)}; fields: "
                         f"{', '.join(f.name for f in dataclasses.fields(Policy))}")
    new = dataclasses.replace(base, **fields) if fields else base
    token = _POLICY.set(new)
    try:
        yield new
    finally:
        _POLICY.reset(token)


def reference() -> contextlib.AbstractContextManager[Policy]:
    """Plain PyTorch code inside the block: every route of `swinrmt.kernels` off (tests, FLOP counts, debugging)."""
    return use(REFERENCE)


def run_under(policy: Policy, fn, *args):
    """fn(*args) under `policy`: for code autograd runs later (a checkpoint's recompute), so it takes the routes the
    forward took whatever policy is in force at backward time. Under torch.compile the trace has already fixed the
    routes (see `current`), and Dynamo cannot set a ContextVar."""
    if torch.compiler.is_compiling():
        return fn(*args)
    token = _POLICY.set(policy)
    try:
        return fn(*args)
    finally:
        _POLICY.reset(token)

"""FLOP counting shared by `swinrmt bench` and `swinrmt models`.

Convention (the one the public RMT / Swin papers use): FLOPs = 2 x multiply-accumulates of the *forward* pass, counted
by `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention), with the math attention backend
forced, because fused CPU attention kernels are not in the counter's table and would count as zero. Elementwise ops
(softmax, GELU, norms, the decay bias add) are not counted, as usual. A training step is counted as 3 x forward (the
backward is not counted directly: the counter treats a depthwise-conv backward as a dense conv).

By default the count runs on the `meta` device (shapes only, no arithmetic), so even the 78 M `*_paper` models at
224 px count in well under a second and nothing is allocated.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

TRAIN_FLOPS_FACTOR = 3  # forward + backward (~2x forward), the usual convention


def _input_shape(input_size: int | Sequence[int], in_chans: int, batch: int) -> tuple[int, ...]:
    if isinstance(input_size, int):
        return (batch, in_chans, input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if len(size) == 2:
        return (batch, in_chans) + size
    if len(size) == 3:
        return (batch,) + size
    if len(size) == 4:
        return size
    raise ValueError(f"input_size must be an int, (H, W), (C, H, W) or (B, C, H, W), got {input_size!r}")


def _count(model: nn.Module, x: torch.Tensor, by_module: bool):
    from .kernels import reference

    counter = FlopCounterMode(display=False, depth=None if by_module else 1)
    # the reference path: count the model's math, not the fast path's (uncounted) block-diagonal padding work
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), reference(), counter:
        model(x)
    return counter


def count_forward_flops(model: nn.Module, input_size: int | Sequence[int] = 224, batch: int = 1,
                        device: str | torch.device = "meta", by_module: bool = False):
    """FLOPs (2 x MACs) of one eval-mode forward pass of `batch` images; returns an int.

    `input_size`: an int side, (H, W), (C, H, W) or a full (B, C, H, W) shape. `device="meta"` (default) runs on
    shapes only, through `torch.func.functional_call` with meta copies of the parameters and buffers, so the model is
    neither copied nor modified; if a model cannot run on meta, it falls back to a real forward on the model's own
    device. With `by_module=True` returns `(total, {module_name: flops})` (the counter's per-module breakdown).
    """
    in_chans = getattr(model, "in_chans", 3)
    shape = _input_shape(input_size, in_chans, batch)
    was_training = model.training
    model.eval()
    try:
        counter = None
        if str(device) == "meta":
            try:
                state = {n: torch.empty_like(t, device="meta") for n, t in
                         list(model.named_parameters()) + list(model.named_buffers())}
                x = torch.empty(shape, device="meta")

                class _Meta(nn.Module):  # functional_call needs a module; this one just forwards
                    def __init__(self, inner):
                        super().__init__()
                        self.inner = inner

                    def forward(self, inp):
                        return torch.func.functional_call(self.inner, state, (inp,), strict=False)

                counter = _count(_Meta(model), x, by_module)
            except (NotImplementedError, RuntimeError):
                counter = None
        if counter is None:
            p = next(iter(model.parameters()), None)
            dev = p.device if p is not None else torch.device("cpu")
            counter = _count(model, torch.zeros(shape, device=dev), by_module)
    finally:
        model.train(was_training)
    total = int(counter.get_total_flops())
    if not by_module:
        return total
    per = {}
    for name, ops in counter.get_flop_counts().items():
        per[name.replace("_Meta.inner", "").lstrip(".") or "Global"] = int(sum(ops.values()))
    return total, per


def count_train_flops(model: nn.Module, input_size: int | Sequence[int] = 224, batch: int = 1,
                      device: str | torch.device = "meta") -> int:
    """FLOPs of one training step (forward + backward) = TRAIN_FLOPS_FACTOR x forward."""
    return TRAIN_FLOPS_FACTOR * count_forward_flops(model, input_size, batch, device)


def format_flops(flops: float) -> str:
    """Human-readable FLOPs: 1.23 GFLOP, 456.7 MFLOP, ..."""
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.2f} {unit}"
    return f"{flops:.0f} FLOP"

"""What the per-kernel benchmark scripts of this folder share: arguments, the model, one recording forward, a timer."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
import torch.nn as nn

from swinrmt.layers import eager
from swinrmt.registry import create_model
from swinrmt.runtime import keep_freed_memory


def parse_args(doc: str, count: str, default: int) -> argparse.Namespace:
    """The model arguments plus one count (`--repeats` or `--steps`); applies the allocator setting bench uses."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--stem-stride", type=int, default=None, help="4: the public RMT-T layout at 64 px")
    p.add_argument(f"--{count}", type=int, default=default)
    a = p.parse_args()
    keep_freed_memory()
    return a


def build_model(a: argparse.Namespace) -> nn.Module:
    kwargs = {"stem_stride": a.stem_stride} if a.stem_stride else {}
    return create_model(a.model, num_classes=100, img_size=a.img_size, **kwargs).eval()


def one_forward(model: nn.Module, a: argparse.Namespace) -> None:
    """One inference forward of a random batch: what the scripts record their calls from. Fused inference is off for
    it, so every projection and depthwise conv passes where the scripts record (as in training)."""
    fuse, eager.FUSE_INFERENCE = eager.FUSE_INFERENCE, False
    try:
        with torch.inference_mode():
            model(torch.randn(a.batch, 3, a.img_size, a.img_size))
    finally:
        eager.FUSE_INFERENCE = fuse


def model_label(a: argparse.Namespace) -> str:
    return a.model + (f" stem {a.stem_stride}" if a.stem_stride else "") + f", batch {a.batch} at {a.img_size} px"


def best_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best time (ms) of each function; they alternate within each repeat, so load drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: min(v) * 1e3 for k, v in times.items()}

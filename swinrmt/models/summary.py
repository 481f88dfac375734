"""`swinrmt models`: every registered model with its parameter count and forward FLOPs at its default input size.

Models are built on the meta device (shapes only), so the whole catalogue, 78 M models included, lists in seconds.
FLOPs are counted by `torch.utils.flop_counter` (see `swinrmt.flops`): 2 x MACs of one forward pass.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from ..flops import count_forward_flops
from ..registry import create_model, get_entry, list_models


def summarize(name: str, img_size: int | None = None, num_classes: int | None = None) -> dict[str, Any]:
    """Parameters and forward FLOPs of one registered model at its default (or the given) input size."""
    entry = get_entry(name)
    size = img_size or entry.default_cfg["img_size"]
    with torch.device("meta"):
        model = create_model(name, img_size=size, num_classes=num_classes)
    flops = count_forward_flops(model, size, device="meta")
    return {
        "model": name, "family": entry.family, "img_size": size, "num_classes": model.num_classes,
        "params": sum(p.numel() for p in model.parameters()), "flops": flops, "macs": flops // 2,
        "stem_stride": getattr(model, "stem_stride", getattr(model, "patch_size", None)),
        "window": model.window_size,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*_nano'")
    p.add_argument("--img-size", type=int, default=None, help="count at this input size instead of the default")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}; see `swinrmt models`")
    rows = [summarize(n, args.img_size, args.num_classes) for n in names]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    print(f"{'model':34s} {'params':>9s} {'GFLOPs':>8s} {'GMACs':>7s} {'input':>6s} {'classes':>7s} "
          f"{'stem':>4s} {'window':>6s}")
    for r in rows:
        print(f"{r['model']:34s} {r['params'] / 1e6:8.2f}M {r['flops'] / 1e9:8.2f} {r['macs'] / 1e9:7.2f} "
              f"{r['img_size']:>6d} {r['num_classes']:>7d} {r['stem_stride']:>4d} {r['window']:>6d}")
    print("FLOPs = 2 x MACs of one forward pass (torch.utils.flop_counter, math attention backend).")
    return 0

"""What the per-kernel benchmark scripts of this folder share: the model arguments and the interleaved best-of timer."""
from __future__ import annotations

import argparse
import time
from typing import Callable


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--stem-stride", type=int, default=None, help="4: the public RMT-T layout at 64 px")


def model_kwargs(a: argparse.Namespace) -> dict:
    return {"stem_stride": a.stem_stride} if a.stem_stride else {}


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

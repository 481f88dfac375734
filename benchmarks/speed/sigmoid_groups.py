"""SWAT's sigmoid passes over merged windows against one window per pass, on each of a model's own mixers.

    python benchmarks/speed/sigmoid_groups.py --model gated_swinrmt_swat_tiny [--img-size 64] [--batch 64]
                                              [--stem-stride 4] [--repeats 4]

One forward records every `SwatMixer` call (input shape, shift); each distinct mixer is then timed alone, in float32
on CPU, inference (forward) and training (forward + backward, the lean checkpointed path), with
`axial.SIGMOID_GROUP_LENGTH` = 0 (one window per pass, the plain layout) against 8, 16 (the default) and 32, merging
regardless of head dim. The settings alternate within each repeat and the best repeat is kept. This is the table
behind `SIGMOID_GROUP_MAX_HEAD_DIM` in `swinrmt/layers/mixers/axial.py`. Since the seventh session the short-attention
kernel takes SWAT's passes where it fits, and the merge applies only where it does not (no compiler, norm "rowsum",
learnable decay, other lengths); so this script turns the kernel off and times the explicit path it describes.
"""
from __future__ import annotations

import torch

from _common import best_ms, build_model, model_label, parse_args
from swinrmt.layers import short_attention
from swinrmt.layers.mixers import axial
from swinrmt.layers.mixers.swat import SwatMixer

LENGTHS = (0, 8, 16, 32)


def main() -> None:
    a = parse_args(__doc__, "repeats", 4)
    short_attention.ENABLED = False  # the explicit sigmoid path, where the merge applies
    model = build_model(a).train()
    calls: dict = {}

    def record(mod, inp):
        calls.setdefault((tuple(inp[0].shape), mod.shift, mod.head_dim), mod)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, SwatMixer)]
    with torch.no_grad():
        model(torch.randn(a.batch, 3, a.img_size, a.img_size))
    for h in hooks:
        h.remove()
    if not calls:
        raise SystemExit(f"{a.model} has no SWAT mixers: pass --model gated_swinrmt_swat_tiny (or another SWAT model)")
    prev = (axial.SIGMOID_GROUP_LENGTH, axial.SIGMOID_GROUP_MAX_HEAD_DIM)
    axial.SIGMOID_GROUP_MAX_HEAD_DIM = 1 << 30  # merge at every head dim here, to measure where it pays
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats}, ms per mixer call")
    cols = " | ".join(f"{mode} {n}" for mode in ("infer", "train") for n in LENGTHS)
    print(f"| input (B, H, W, C) | shift | head dim | {cols} | train {LENGTHS[2]} / 0 |")
    print("|---|---|---:|" + "---:|" * (2 * len(LENGTHS) + 1))
    try:
        for (shape, shift, head_dim), mod in calls.items():
            x = torch.randn(shape, requires_grad=True)
            g = torch.randn(shape)
            fns = {}
            for n in LENGTHS:
                fns[("infer", n)] = lambda n=n: _infer(mod, x, n)
                fns[("train", n)] = lambda n=n: _train(mod, x, g, n)
            ms = best_ms(fns, a.repeats)
            cells = " | ".join(f"{ms[(mode, n)]:.1f}" for mode in ("infer", "train") for n in LENGTHS)
            ratio = ms[("train", LENGTHS[2])] / ms[("train", 0)]
            print(f"| {shape} | {shift} | {head_dim} | {cells} | {ratio:.2f} |")
    finally:
        axial.SIGMOID_GROUP_LENGTH, axial.SIGMOID_GROUP_MAX_HEAD_DIM = prev


def _infer(mod: SwatMixer, x: torch.Tensor, length: int) -> None:
    axial.SIGMOID_GROUP_LENGTH = length
    with torch.no_grad():
        mod(x)


def _train(mod: SwatMixer, x: torch.Tensor, g: torch.Tensor, length: int) -> None:
    axial.SIGMOID_GROUP_LENGTH = length
    mod(x).backward(g)


if __name__ == "__main__":
    main()

"""Depthwise-conv forward against its input and weight gradients, on a model's own depthwise convs (CPE, LCE, FFN).

    python benchmarks/speed/dwconv_backward.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]

One forward records every depthwise conv's input shape and kernel size; each is then timed alone in float32 on CPU
(channels-last, as the blocks run them, on the kernel torch picks: oneDNN): the forward, the input gradient and the
weight + bias gradient (`aten.convolution_backward` with one output mask each), best of the repeats. This is where
the stem-4 training step loses the most time outside the GEMMs; the 5x5 weight gradient stands out.
"""
from __future__ import annotations

import collections

import torch
import torch.nn as nn
import torch.nn.functional as F

from _common import best_ms, build_model, model_label, one_forward, parse_args


def depthwise_calls(a) -> collections.Counter:
    m = build_model(a)
    calls: collections.Counter = collections.Counter()

    def hook(mod, inp, out):
        calls[(tuple(inp[0].shape), mod.kernel_size[0])] += 1

    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and mod.groups == mod.in_channels > 1:
            mod.register_forward_hook(hook)
    one_forward(m, a)
    return calls


def main() -> None:
    a = parse_args(__doc__, "repeats", 5)
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats}, ms per call")
    print("| input (B, C, H, W) | kernel | calls | forward | input grad | weight grad | weight grad / forward |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    for (shape, k), count in sorted(depthwise_calls(a).items()):
        b, c, h, w = shape
        x = torch.randn(b, h, w, c).permute(0, 3, 1, 2)  # channels-last, as DWConv passes its (B, H, W, C) map
        g = torch.randn(b, h, w, c).permute(0, 3, 1, 2)
        weight, bias = torch.randn(c, 1, k, k), torch.randn(c)

        def grads(mask):
            return torch.ops.aten.convolution_backward(g, x, weight, [c], [1, 1], [k // 2] * 2, [1, 1], False,
                                                       [0, 0], c, mask)

        r = best_ms({"fwd": lambda: F.conv2d(x, weight, bias, padding=k // 2, groups=c),
                     "gin": lambda: grads([True, False, False]), "gw": lambda: grads([False, True, True])}, a.repeats)
        fwd, gin, gw = r["fwd"], r["gin"], r["gw"]
        for name, v in (("forward", fwd), ("input grad", gin), ("weight grad", gw)):
            totals[name] += v * count
        print(f"| {shape} | {k}x{k} | {count} | {fwd:.2f} | {gin:.2f} | {gw:.2f} | {gw / fwd:.1f} |")
    print("| total per step | | | " + " | ".join(f"{v:.1f}" for v in totals.values()) + " | |")


if __name__ == "__main__":
    main()

"""Depthwise-conv forward against its input and weight gradients, on a model's own depthwise convs (CPE, LCE, FFN).

    python benchmarks/speed/dwconv_backward.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]

One forward records every depthwise conv's input shape and kernel size; each is then timed alone in float32 on CPU
(channels-last, as the blocks run them, on the kernel torch picks: oneDNN): the forward, the input gradient and the
weight + bias gradient (`aten.convolution_backward` with one output mask each), best of the repeats; then the weight +
bias gradient as `DWConv` computes it in training where aten's is slow (`swinrmt.layers.conv.depthwise_weight_grad`
and a plain sum; elsewhere DWConv leaves the convolution to aten, so that column repeats aten's figure).
"""
from __future__ import annotations

import collections

import torch
import torch.nn as nn
import torch.nn.functional as F

from swinrmt.layers.conv import depthwise_weight_grad

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
    print("| input (B, C, H, W) | kernel | calls | forward | input grad | weight grad, aten | weight grad / forward "
          "| weight grad, DWConv | aten / DWConv |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    for (shape, k), count in sorted(depthwise_calls(a).items()):
        b, c, h, w = shape
        x = torch.randn(b, h, w, c).permute(0, 3, 1, 2)  # channels-last, as DWConv passes its (B, H, W, C) map
        g = torch.randn(b, h, w, c).permute(0, 3, 1, 2)
        weight, bias = torch.randn(c, 1, k, k), torch.randn(c)

        def grads(mask):
            return torch.ops.aten.convolution_backward(g, x, weight, [c], [1, 1], [k // 2] * 2, [1, 1], False,
                                                       [0, 0], c, mask)

        fns = {"fwd": lambda: F.conv2d(x, weight, bias, padding=k // 2, groups=c),
               "gin": lambda: grads([True, False, False]), "gw": lambda: grads([False, True, True])}
        fast = k > 3 or min(h, w) < k  # where DWConv takes its own weight gradient (swinrmt.layers.conv)
        if fast:
            fns["ours"] = lambda: (depthwise_weight_grad(g, x, k, k), g.sum((0, 2, 3)))
        r = best_ms(fns, a.repeats)
        r.setdefault("ours", r["gw"])
        fwd, gin, gw, ours = r["fwd"], r["gin"], r["gw"], r["ours"]
        for name, v in (("forward", fwd), ("input grad", gin), ("weight grad, aten", gw),
                        ("weight grad, DWConv", ours)):
            totals[name] += v * count
        print(f"| {shape} | {k}x{k} | {count} | {fwd:.2f} | {gin:.2f} | {gw:.2f} | {gw / fwd:.1f} | {ours:.2f} "
              f"| {gw / ours:.1f} |")
    t = totals
    print(f"| total per step | | | {t['forward']:.1f} | {t['input grad']:.1f} | {t['weight grad, aten']:.1f} | "
          f"| {t['weight grad, DWConv']:.1f} | {t['weight grad, aten'] / t['weight grad, DWConv']:.1f} |")


if __name__ == "__main__":
    main()

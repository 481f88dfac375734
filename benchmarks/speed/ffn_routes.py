"""The ConvFFN's two float32 inference routes on a model's own FFN shapes, and the parts of each.

    python benchmarks/speed/ffn_routes.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]
                                          [--repeats 8]

Route "kernel": fc1 on oneDNN, then swinrmt's depthwise kernel runs GELU(h) + conv(GELU(h)) in one pass, then fc2.
Route "oneDNN": fc1 with GELU as oneDNN's post-op, oneDNN's depthwise conv with the residual fused, then fc2 (what
runs with `depthwise.ENABLED = False`). The FFN shapes (tokens, dim, hidden) are read off the model by one forward;
each is timed as the whole module on both routes and as its parts (fc1, fc1 + GELU, the depthwise pass, the same pass
without GELU, fc2), beside a 2048^3 matmul, alternating within each repeat (best repeat kept). Totals weight each shape
by its count.
"""
from __future__ import annotations

import collections

import torch

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.layers import depthwise
from swinrmt.layers import linear as L
from swinrmt.layers.ffn import ConvFFN


def ffn_shapes(a) -> collections.Counter:
    """(input shape, the first ConvFFN of that shape) -> how many ConvFFN calls of that shape one forward makes."""
    m = build_model(a)
    shapes: collections.Counter = collections.Counter()
    mods = {}

    def hook(mod, inp, out):
        shapes[tuple(inp[0].shape)] += 1
        mods.setdefault(tuple(inp[0].shape), mod)

    handles = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, ConvFFN)]
    try:
        one_forward(m, a)
    finally:
        for h in handles:
            h.remove()
    return collections.Counter({(shape, mods[shape]): n for shape, n in shapes.items()})


def main() -> None:
    a = parse_args(__doc__, "repeats", 8)
    torch.manual_seed(0)
    print(f"{model_label(a)}, {torch.get_num_threads()} threads, inference; best of {a.repeats} (ms; GFLOP/s of the "
          "two products)")
    print("| input | count | kernel route | oneDNN route | ratio | fc1 | fc1 + GELU | depthwise pass | its conv + "
          "residual alone | fc2 | 2048^3 matmul GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    sq, sq2 = torch.randn(2048, 2048), torch.randn(2048, 2048)

    def route(mod, x, on: bool):
        depthwise.ENABLED = on
        try:
            return mod(x)
        finally:
            depthwise.ENABLED = True

    with torch.inference_mode():
        for (shape, mod), count in sorted(ffn_shapes(a).items(), key=lambda kv: -kv[0][0][1]):
            x = torch.randn(shape)
            fc1, fc2, conv = mod.fc1, mod.fc2, mod.dwconv.conv
            h = L._onednn(x, fc1.weight, fc1.bias)
            r = best_ms({
                "kernel": lambda: route(mod, x, True), "onednn": lambda: route(mod, x, False),
                "fc1": lambda: L._onednn(x, fc1.weight, fc1.bias),
                "fc1 gelu": lambda: torch.ops.mkldnn._linear_pointwise(x, fc1.weight, fc1.bias, "gelu", [], "none"),
                "dw": lambda: depthwise.depthwise_conv(h, conv.weight, conv.bias, "self", "gelu"),
                "dw plain": lambda: depthwise.depthwise_conv(h, conv.weight, conv.bias, "self", None),
                "fc2": lambda: L._onednn(h, fc2.weight, fc2.bias),
                "square": lambda: sq @ sq2}, a.repeats)
            for k, v in r.items():
                totals[k] += v * count
            gflop = 2 * x.numel() * fc1.out_features / 1e9  # each of fc1, fc2
            print(f"| {tuple(shape)} | {count} | {r['kernel']:.1f} | {r['onednn']:.1f} | {r['kernel'] / r['onednn']:.3f} "
                  f"| {r['fc1']:.1f} ({gflop / r['fc1'] * 1e3:.0f}) | {r['fc1 gelu']:.1f} | {r['dw']:.1f} "
                  f"| {r['dw plain']:.1f} "
                  f"| {r['fc2']:.1f} ({gflop / r['fc2'] * 1e3:.0f}) | {2 * 2048 ** 3 / r['square'] / 1e6:.0f} |")
    print(f"| per step | | {totals['kernel']:.0f} | {totals['onednn']:.0f} | {totals['kernel'] / totals['onednn']:.3f} "
          f"| {totals['fc1']:.0f} | {totals['fc1 gelu']:.0f} | {totals['dw']:.0f} | {totals['dw plain']:.0f} "
          f"| {totals['fc2']:.0f} | |")


if __name__ == "__main__":
    main()

"""swinrmt's depthwise kernel against PyTorch's ops, on a model's own depthwise convs: CPE (x + conv(x)), LCE
(conv(v) + y) and the ConvFFN (fc1, GELU, GELU(h) + conv(GELU(h)), fc2), inference and training (forward + backward).

    python benchmarks/speed/depthwise_kernel.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]
                                                [--repeats 8]

One forward records each block's map shape (the input of every ConvFFN); each module of that width is then timed alone
with `swinrmt.layers.depthwise.ENABLED` on and off, alternating within each repeat (best repeat kept). "off" is what
ran before the kernel: oneDNN's conv (with the residual add fused in inference), aten's GELU and adds, and in training
`DWConv`'s grouped 5x5 weight gradient. The totals weight each shape by its number of blocks: per-step time of these
modules, per side. In inference the LCE's 5x5 conv stays on oneDNN (the kernel measured slower there), so its
columns read the same.
"""
from __future__ import annotations

import collections

import torch

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.layers import depthwise
from swinrmt.layers.conv import DWConv
from swinrmt.layers.ffn import ConvFFN


def block_maps(a) -> collections.Counter:
    """(B, H, W, C, hidden) -> number of blocks, read off the ConvFFN inputs of one forward."""
    m = build_model(a)
    maps: collections.Counter = collections.Counter()
    for mod in m.modules():
        if isinstance(mod, ConvFFN):
            mod.register_forward_hook(lambda mod, inp, out: maps.update([tuple(inp[0].shape) + (mod.fc2.in_features,)]))
    one_forward(m, a)
    return maps


def switched(fn):
    return {"on": lambda: (setattr(depthwise, "ENABLED", True), fn()), "off": lambda: (
        setattr(depthwise, "ENABLED", False), fn())}


def main() -> None:
    a = parse_args(__doc__, "repeats", 8)
    torch.manual_seed(0)
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats}, ms per call (on = the kernel)")
    print("| map (B, H, W, C) | hidden | blocks | mode | CPE off | CPE on | LCE off | LCE on | ConvFFN off "
          "| ConvFFN on |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    for (b, h, w, c, hidden), count in sorted(block_maps(a).items()):
        cpe, lce, ffn = DWConv(c, 3), DWConv(c, 5), ConvFFN(c, hidden)
        for mode in ("infer", "train"):
            train = mode == "train"
            x = torch.randn(b, h, w, c, requires_grad=train)
            y = torch.randn(b, h, w, c, requires_grad=train)
            g = torch.randn(b, h, w, c)
            ffn.train(train)

            def run(out):
                if train:
                    out.backward(g)

            with torch.set_grad_enabled(train):
                row = []
                for name, fn in (("CPE", lambda: run(cpe(x, x))), ("LCE", lambda: run(lce(x, y))),
                                 ("ConvFFN", lambda: run(ffn(x)))):
                    t = best_ms(switched(fn), a.repeats)
                    row += [t["off"], t["on"]]
                    totals[(mode, name, "off")] += count * t["off"]
                    totals[(mode, name, "on")] += count * t["on"]
            depthwise.ENABLED = True
            print(f"| {(b, h, w, c)} | {hidden} | {count} | {mode} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    for mode in ("infer", "train"):
        cells = [f"{totals[(mode, n, s)]:.1f}" for n in ("CPE", "LCE", "ConvFFN") for s in ("off", "on")]
        off = sum(totals[(mode, n, "off")] for n in ("CPE", "LCE", "ConvFFN"))
        on = sum(totals[(mode, n, "on")] for n in ("CPE", "LCE", "ConvFFN"))
        print(f"| total per step | | | {mode} | " + " | ".join(cells) + f" |  (all three: {off:.0f} -> {on:.0f} ms)")


if __name__ == "__main__":
    main()

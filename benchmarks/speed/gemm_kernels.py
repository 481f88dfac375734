"""MKL (aten's mm / F.linear) against oneDNN on a model's own projection shapes, plus a large square product.

    python benchmarks/speed/gemm_kernels.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]
                                            [--repeats 8]

The shapes are read off the model: one forward at the given batch records every projection's (rows, in, out) and
how often it occurs (each `swinrmt.layers.linear.linear` call). Each product is timed for the forward (F.linear
against oneDNN's linear), the input gradient (grad @ W against oneDNN's linear with W^T) and the weight gradient
(grad^T @ x on mm), each also as oneDNN's backward of a 1x1 convolution (`linear.conv1x1_grads`, what
`OneDNNLinear` runs; oneDNN's linear would need transposed copies of both operands for the weight gradient). Kernels
alternate within each repeat, and the best repeat is kept, so load on a shared machine hits both alike. The totals
weight each shape by its count in the model: that is the projection time of one step, per kernel. This is why
`swinrmt.layers.linear` picks oneDNN.
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.layers import linear as L


def onednn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")


def projection_shapes(a) -> collections.Counter:
    """(rows, in, out) -> count over one inference forward, read where every projection passes: `linear._onednn`."""
    m = build_model(a)
    shapes: collections.Counter = collections.Counter()
    run = L._onednn

    def record(x, weight, bias):
        shapes[(x.numel() // x.shape[-1], weight.shape[1], weight.shape[0])] += 1
        return run(x, weight, bias)

    L._onednn = record
    try:
        one_forward(m, a)
    finally:
        L._onednn = run
    return shapes


def main() -> None:
    a = parse_args(__doc__, "repeats", 8)
    torch.manual_seed(0)
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats} (ms, GFLOP/s)")
    print("| rows x in x out | count | fwd F.linear | fwd oneDNN | dX mm | dX oneDNN | dX conv1x1 | dW mm "
          "| dW conv1x1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    with torch.inference_mode():
        for (rows, k, n), count in sorted(projection_shapes(a).items()):
            x, w, b, g = torch.randn(rows, k), torch.randn(n, k), torch.randn(n), torch.randn(rows, n)
            lead = a.batch if rows % a.batch == 0 else 1  # the model's activations lead with the batch
            xb, gb = x.view(lead, -1, k), g.view(lead, -1, n)  # as conv1x1_grads receives them
            r = best_ms({"fwd F.linear": lambda: F.linear(x, w, b), "fwd oneDNN": lambda: onednn(x, w),
                         "dX mm": lambda: g.mm(w), "dX oneDNN": lambda: onednn(g, w.t().contiguous()),
                         "dX conv1x1": lambda: L.conv1x1_grads(gb, xb, w, True, False),
                         "dW mm": lambda: g.t().mm(x), "dW conv1x1": lambda: L.conv1x1_grads(gb, xb, w, False, True)},
                        a.repeats)
            gflop = 2 * rows * k * n / 1e9
            cells = " | ".join(f"{v:.2f} ({gflop / v * 1e3:.0f})" for v in r.values())
            print(f"| {rows} x {k} x {n} | {count} | {cells} |")
            for name, v in r.items():
                totals[name] += v * count
        print("| total per step (ms) | | " + " | ".join(f"{v:.0f}" for v in totals.values()) + " |")
        n = 2048
        x, y = torch.randn(n, n), torch.randn(n, n)
        yt = y.t().contiguous()
        r = best_ms({"aten mm": lambda: x @ y, "oneDNN": lambda: onednn(x, yt)}, a.repeats)
        print(f"\nsquare {n}^3: " + ", ".join(f"{k} {2 * n ** 3 / v / 1e6:.0f} GFLOP/s" for k, v in r.items()))


if __name__ == "__main__":
    main()

"""The stem's and the downsampling layers' dense 3x3 convs in float32 inference, against the matmul peak.

    python benchmarks/speed/dense_convs.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]
                                           [--repeats 6]

One forward records the input of the stem and of every downsampling layer; each module is then timed alone as the
model runs it (BN folded into the conv, GELU fused: one oneDNN conv per layer), alternating with a 2048^3 matmul
within each repeat (best repeat kept), and its FLOPs (the counter's, 2 x MACs) divided by its time. A layer near 100 %
runs at the matmul peak, so it is not where inference loses its MFU.
"""
from __future__ import annotations

import torch

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.flops import count_forward_flops
from swinrmt.layers.conv import ConvDownsample, ConvStem


def main() -> None:
    a = parse_args(__doc__, "repeats", 6)
    torch.manual_seed(0)
    model = build_model(a)
    _, per_module = count_forward_flops(model, a.img_size, batch=a.batch, by_module=True)
    inputs: dict[str, torch.Tensor] = {}
    handles = [mod.register_forward_pre_hook(lambda mod, inp, name=name: inputs.setdefault(name, inp[0].clone()))
               for name, mod in model.named_modules() if isinstance(mod, (ConvStem, ConvDownsample))]
    one_forward(model, a)
    for h in handles:
        h.remove()
    modules = dict(model.named_modules())
    sq, sq2 = torch.randn(2048, 2048), torch.randn(2048, 2048)
    print(f"{model_label(a)}, {torch.get_num_threads()} threads, inference; best of {a.repeats}")
    print("| module | input | GFLOP | ms | GFLOP/s | 2048^3 matmul GFLOP/s | share of the matmul's rate |")
    print("|---|---|---:|---:|---:|---:|---:|")
    total_flops = total_ms = 0.0
    with torch.inference_mode():
        for name, x in inputs.items():
            mod = modules[name]
            r = best_ms({"conv": lambda: mod(x), "square": lambda: sq @ sq2}, a.repeats)
            gflop = per_module[name] / 1e9
            peak = 2 * 2048 ** 3 / r["square"] / 1e6
            total_flops, total_ms = total_flops + gflop, total_ms + r["conv"]
            print(f"| {name} | {tuple(x.shape)} | {gflop:.2f} | {r['conv']:.1f} | {gflop / r['conv'] * 1e3:.0f} "
                  f"| {peak:.0f} | {gflop / r['conv'] * 1e3 / peak:.0%} |")
    print(f"| all | | {total_flops:.2f} | {total_ms:.1f} | {total_flops / total_ms * 1e3:.0f} | | |")


if __name__ == "__main__":
    main()

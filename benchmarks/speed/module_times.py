"""Where an inference step spends its time, per module type, timed without the profiler.

    python benchmarks/speed/module_times.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]

torch.profiler inflates small and memory-bound ops several-fold on this machine (it showed 52 ms for a GELU that
takes 5 ms), so this times modules with forward hooks and `time.perf_counter` instead. Each module's time is its
*self* time: what its children took is subtracted, so a mixer's row is its attention core, rotary and glue (and the
q projection, a function call with the scale folded into the weight), and its other projections count under Linear.
GFLOP/s per row uses the FLOP counter's per-module figures (2 x MACs). Inference only: hooks see no backward.
Inference fuses work into oneDNN ops that run inside one module, so the rows follow them: `DWConv` is the depthwise
convs (CPE, LCE, the ConvFFN's) with the residual add fused in, and their FLOPs (the counter sees the inner Conv2d,
which is not timed apart); `Conv2d` is the dense convs (stem, downsampling); `Linear` includes the fc1's fused GELU.
"""
from __future__ import annotations

import collections
import time

import torch

from _common import build_model, model_label, parse_args
from swinrmt.flops import count_forward_flops
from swinrmt.layers.conv import DWConv


def main() -> None:
    a = parse_args(__doc__, "steps", 4)
    model = build_model(a)
    _, per_module = count_forward_flops(model, a.img_size, batch=a.batch, by_module=True)
    names = {mod: name for name, mod in model.named_modules()}
    self_time: collections.Counter = collections.Counter()
    self_flops: collections.Counter = collections.Counter()
    stack: list[list[float]] = []  # [start, time spent in children]

    def pre(mod, inp):
        stack.append([time.perf_counter(), 0.0])

    def post(mod, inp, out):
        start, children = stack.pop()
        total = time.perf_counter() - start
        self_time[type(mod).__name__] += total - children
        if stack:
            stack[-1][1] += total

    inner = {m.conv for m in model.modules() if isinstance(m, DWConv)}  # timed and counted with their DWConv
    for mod in model.modules():
        if mod is not model and mod not in inner:
            mod.register_forward_pre_hook(pre)
            mod.register_forward_hook(post)
    def counted(mod) -> int:
        """FLOPs the counter attributes to `mod`; containers it never calls (ModuleList) sum their children."""
        name = names[mod]
        return per_module[name] if name in per_module else sum(counted(c) for c in mod.children())

    # a module's own FLOPs: its count minus what its children account for
    for mod, name in names.items():
        if mod is not model and name in per_module:
            self_flops[type(mod).__name__] += per_module[name] - sum(counted(c) for c in mod.children())
    for conv in inner:
        self_flops["DWConv"] += counted(conv)
        self_flops["Conv2d"] -= counted(conv)
    x = torch.randn(a.batch, 3, a.img_size, a.img_size)
    with torch.inference_mode():
        model(x)
        self_time.clear()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            model(x)
        step = (time.perf_counter() - t0) / a.steps
    print(f"{model_label(a)}, inference, {torch.get_num_threads()} threads: {step * 1e3:.0f} ms per step "
          f"(mean of {a.steps}, hooks included)")
    print("| module type (self time) | ms per step | share | GFLOP | GFLOP/s |")
    print("|---|---:|---:|---:|---:|")
    for kind, t in sorted(self_time.items(), key=lambda kv: -kv[1]):
        ms = t / a.steps * 1e3
        if ms < 0.5:
            continue
        gflop = self_flops.get(kind, 0) / 1e9
        rate = f"{gflop / (ms / 1e3):.0f}" if gflop > 0.05 else "-"
        print(f"| {kind} | {ms:.1f} | {100 * ms / (step * 1e3):.0f} % | {gflop:.2f} | {rate} |")


if __name__ == "__main__":
    main()

"""PyTorch's fused SDPA kernel, the explicit matmul-softmax-matmul form and swinrmt's short-attention kernel, on a
model's own attention calls.

    python benchmarks/speed/attention_kernels.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]

One forward at the given batch records every `biased_attention` call (shapes, strides and bias); each distinct call
is then timed alone, in float32 on CPU, forward only (inference) and forward + backward (training), for each kernel.
The kernels alternate within each repeat and the best repeat is kept. These are the calls in isolation. The
explicit form's training calls are faster on short axes, but its autograd keeps the probabilities and contiguous
copies of the strided q/k/v views: used up to 16 queries it raised gated_swinrmt_retention_tiny's training memory to
1.21x rmt_tiny's (run_cpu_00ce41b_section1.log), and up to 64 queries rmt_tiny's by 500 MB
(run_cpu_d0d0930_section1.log), for 2-5 % of step time. So float32 kept the fused kernel (benchmarks/speed/README.md)
until the seventh session's short-attention kernel (`swinrmt.layers.short_attention`), which saves what the fused
kernel saves; it is timed where it takes the call ("-" elsewhere), through the same autograd function the models use.
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.layers import attention, short_attention
from swinrmt.layers.mixers import axial, masa, window_msa

USERS = (axial, masa, window_msa)  # the modules that call biased_attention


def explicit(q, k, v, bias):
    s = q @ k.transpose(-1, -2)
    s = s + bias if s.requires_grad else s.add_(bias)
    return torch.softmax(s, dim=-1) @ v


def fused(q, k, v, bias):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def short(q, k, v, bias):
    return short_attention.short_attention(q, k, v, bias, 1.0)


def record_calls(a) -> collections.Counter:
    m = build_model(a)
    calls: collections.Counter = collections.Counter()
    run = attention.biased_attention

    def record(q, k, v, bias, scale=None, rotary=None):  # timed below without a folded rotary code
        calls[tuple((tuple(t.shape), t.stride()) for t in (q, k, v, bias))] += 1
        return run(q, k, v, bias, scale, rotary)

    for mod in USERS:
        mod.biased_attention = record
    try:
        one_forward(m, a)
    finally:
        for mod in USERS:
            mod.biased_attention = run
    return calls


def strided(shape, stride, requires_grad=False) -> torch.Tensor:
    """A tensor with the recorded shape and strides (a view of a fresh buffer, as the mixers pass them)."""
    size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
    buf = torch.randn(size)
    t = buf.as_strided(shape, stride)
    return t.detach().requires_grad_() if requires_grad else t


def main() -> None:
    a = parse_args(__doc__, "repeats", 6)
    torch.manual_seed(0)
    have_short = short_attention.available()
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats}, ms per call; short = swinrmt's "
          f"kernel ({'built' if have_short else 'not built here'}), ratio = short / fused")
    print("| q shape | calls | infer fused | infer explicit | infer short | ratio | train fused | train explicit "
          "| train short | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    for spec, count in record_calls(a).items():
        (qs, qst), (ks, kst), (vs, vst), (bs, bst) = spec
        q, k, v = strided(qs, qst), strided(ks, kst), strided(vs, vst)
        bias = torch.randn(bs)
        kernels = {"fused": fused, "explicit": explicit}
        if have_short and short_attention.eligible(q, k, v, bias):
            kernels["short"] = short
        with torch.inference_mode():
            inf = best_ms({n: (lambda f=f: f(q, k, v, bias)) for n, f in kernels.items()}, a.repeats)
        ql, kl, vl = strided(qs, qst, True), strided(ks, kst, True), strided(vs, vst, True)
        g = torch.randn(qs[:-1] + vs[-1:])
        trn = best_ms({n: (lambda f=f: f(ql, kl, vl, bias).backward(g)) for n, f in kernels.items()},
                      max(2, a.repeats // 2))
        cells = []
        for name, r in (("infer", inf), ("train", trn)):
            r.setdefault("short", r["fused"])  # where the kernel does not take the call, the model runs the fused one
            for kname, val in r.items():
                totals[f"{name} {kname}"] += val * count
            took = "short" in kernels
            cells += [f"{r['fused']:.2f}", f"{r['explicit']:.2f}", f"{r['short']:.2f}" if took else "-",
                      f"{r['short'] / r['fused']:.2f}" if took else "-"]
        print(f"| {qs} | {count} | " + " | ".join(cells) + " |")
    t = totals
    print("| total per step (short: the kernel where it takes the call) | | " + " | ".join(
        f"{t[f'{m} fused']:.0f} | {t[f'{m} explicit']:.0f} | {t[f'{m} short']:.0f} | "
        f"{t[f'{m} short'] / t[f'{m} fused']:.2f}" for m in ("infer", "train")) + " |")


if __name__ == "__main__":
    main()

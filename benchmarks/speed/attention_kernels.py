"""The fused SDPA kernel against the explicit matmul-softmax-matmul form, on a model's own attention calls.

    python benchmarks/speed/attention_kernels.py [--model rmt_tiny] [--img-size 64] [--batch 64] [--stem-stride 4]

One forward at the given batch records every `biased_attention` call (shapes, strides and bias); each distinct call
is then timed alone, in float32 on CPU, forward only (inference) and forward + backward (training), for both kernels.
The kernels alternate within each repeat and the best repeat is kept. These are the calls in isolation. The
explicit form's training calls are faster on short axes, but its autograd keeps the probabilities and contiguous
copies of the strided q/k/v views: used up to 16 queries it raised gated_swinrmt_retention_tiny's training memory to
1.21x rmt_tiny's (run_cpu_00ce41b_section1.log), and up to 64 queries rmt_tiny's by 500 MB
(run_cpu_d0d0930_section1.log), for 2-5 % of step time. So float32 keeps the fused kernel (benchmarks/speed/README.md).
"""
from __future__ import annotations

import collections

import torch
import torch.nn.functional as F

from _common import best_ms, build_model, model_label, one_forward, parse_args
from swinrmt.layers import attention
from swinrmt.layers.mixers import axial, masa, window_msa

USERS = (axial, masa, window_msa)  # the modules that call biased_attention


def explicit(q, k, v, bias):
    s = q @ k.transpose(-1, -2)
    s = s + bias if s.requires_grad else s.add_(bias)
    return torch.softmax(s, dim=-1) @ v


def fused(q, k, v, bias):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def record_calls(a) -> collections.Counter:
    m = build_model(a)
    calls: collections.Counter = collections.Counter()
    run = attention.biased_attention

    def record(q, k, v, bias, scale=None):
        calls[tuple((tuple(t.shape), t.stride()) for t in (q, k, v, bias))] += 1
        return run(q, k, v, bias, scale)

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
    print(f"{model_label(a)}, {torch.get_num_threads()} threads; best of {a.repeats}, ms per call")
    print("| q shape | calls | infer fused | infer explicit | ratio | train fused | train explicit | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals: collections.Counter = collections.Counter()
    for spec, count in record_calls(a).items():
        (qs, qst), (ks, kst), (vs, vst), (bs, bst) = spec
        q, k, v = strided(qs, qst), strided(ks, kst), strided(vs, vst)
        bias = torch.randn(bs)
        with torch.inference_mode():
            inf = best_ms({"fused": lambda: fused(q, k, v, bias), "explicit": lambda: explicit(q, k, v, bias)},
                          a.repeats)
        ql, kl, vl = strided(qs, qst, True), strided(ks, kst, True), strided(vs, vst, True)
        g = torch.randn(qs[:-1] + vs[-1:])
        trn = best_ms({"fused": lambda: fused(ql, kl, vl, bias).backward(g),
                       "explicit": lambda: explicit(ql, kl, vl, bias).backward(g)}, max(2, a.repeats // 2))
        for name, r in (("infer", inf), ("train", trn)):
            for kname, val in r.items():
                totals[f"{name} {kname}"] += val * count
        print(f"| {qs} | {count} | {inf['fused']:.2f} | {inf['explicit']:.2f} | {inf['explicit'] / inf['fused']:.2f} "
              f"| {trn['fused']:.2f} | {trn['explicit']:.2f} | {trn['explicit'] / trn['fused']:.2f} |")
    t = totals
    print(f"| total per step | | {t['infer fused']:.0f} | {t['infer explicit']:.0f} | "
          f"{t['infer explicit'] / t['infer fused']:.2f} | {t['train fused']:.0f} | {t['train explicit']:.0f} | "
          f"{t['train explicit'] / t['train fused']:.2f} |")


if __name__ == "__main__":
    main()

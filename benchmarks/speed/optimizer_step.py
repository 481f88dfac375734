"""The optimizer step of a model, on PyTorch's three AdamW / SGD implementations side by side.

    python benchmarks/speed/optimizer_step.py [--model rmt_tiny] [--repeats 10]

The trainer's parameter groups (`swinrmt.train.optim.param_groups`) with random gradients; each implementation steps
its own copy of the parameters, alternating within each repeat; best time per step in ms. `loop` is PyTorch's CPU
default (one Python-level update per parameter), `foreach` its CUDA default (multi-tensor ops), `fused` one kernel
per parameter, which `build_optimizer` picks wherever every parameter is on a device with the kernel (`fused_ok`).
"""
from __future__ import annotations

import torch

from _common import best_ms, build_model, model_label, parse_args
from swinrmt.train.optim import param_groups

IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
OPTIMIZERS = {"adamw": lambda g, kw: torch.optim.AdamW(g, lr=1e-4, **kw),
              "sgd": lambda g, kw: torch.optim.SGD(g, lr=1e-4, momentum=0.9, **kw)}


def main() -> None:
    a = parse_args(__doc__, "repeats", 10)
    model = build_model(a)
    n = sum(p.numel() for p in model.parameters())
    print(f"{model_label(a)} ({n / 1e6:.1f} M parameters, {len(list(model.parameters()))} tensors), "
          f"{torch.get_num_threads()} threads; best of {a.repeats}, ms per step")
    print("| optimizer | " + " | ".join(IMPLEMENTATIONS) + " | fused / loop |")
    print("|---|" + "---:|" * (len(IMPLEMENTATIONS) + 1))
    base = param_groups(model, 0.05)  # the trainer's groups
    for name, make in OPTIMIZERS.items():
        steps = {}
        for impl, kw in IMPLEMENTATIONS.items():  # each on its own copy of the parameters, with random gradients
            copies = {id(p): p.detach().clone().requires_grad_() for p in model.parameters()}
            for c in copies.values():
                c.grad = torch.randn_like(c)
            groups = [{**g, "params": [copies[id(p)] for p in g["params"]]} for g in base]
            steps[impl] = make(groups, kw).step
        ms = best_ms(steps, a.repeats)
        cells = " | ".join(f"{ms[k]:.1f}" for k in IMPLEMENTATIONS)
        print(f"| {name} | {cells} | {ms['fused'] / ms['loop']:.2f} |")


if __name__ == "__main__":
    main()

"""Where a bench step spends its time: torch.profiler over the same step `swinrmt bench` times.

    python benchmarks/speed/profile_step.py --model rmt_tiny --mode train --img-size 64 --batch 64 [--bf16] [--top 25]

Prints the operators sorted by self CPU time (and their share of the profiled steps), so speed work starts from the
profile, not from guesses. Run it on an idle machine: the profile of a loaded one mixes in the other processes.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from swinrmt.bench import _Runner
from swinrmt.runtime import keep_freed_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--stem-stride", type=int, default=None)
    a = p.parse_args()
    keep_freed_memory()  # as `swinrmt bench` and the trainer run
    kwargs = {"stem_stride": a.stem_stride} if a.stem_stride else {}
    r = _Runner(a.model, a.mode, "bf16" if a.bf16 else "fp32", a.img_size, a.batch, torch.device("cpu"), 100,
                model_kwargs=kwargs)
    r.step()  # warm-up: caches, allocator, oneDNN primitives
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps):
            r.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"{a.model} {a.mode} {'bf16' if a.bf16 else 'fp32'} batch {a.batch} @ {a.img_size} px, "
          f"{a.steps} steps, {total / 1e3 / a.steps:.0f} ms/step of operator self time")
    print(f"{'operator':48s} {'calls':>6s} {'ms/step':>9s} {'share':>6s}")
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: a.top]:
        print(f"{e.key[:48]:48s} {e.count // a.steps:6d} {e.self_cpu_time_total / 1e3 / a.steps:9.1f} "
              f"{100 * e.self_cpu_time_total / total:5.1f}%")


if __name__ == "__main__":
    main()

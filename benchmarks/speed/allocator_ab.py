"""The CPU allocator setting, before/after, in plain processes (no benchmark harness around the steps).

    python benchmarks/speed/allocator_ab.py [--model rmt_tiny] [--rounds 3] [--steps 6]

Alternates fresh processes under SWINRMT_CPU_ALLOCATOR=default and =retain. Each process builds the model, runs 2
warm-up steps, then times `--steps` steps (batch 64 at 64 px, fp32, as the trainer or an evaluation would) and
reports minor page faults per step. `swinrmt bench` understates the default allocator's cost: its own peak-matmul
measurements between steps raise glibc's dynamic mmap threshold, which hides part of the faulting a trainer sees.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys
import torch
from swinrmt import runtime
on = runtime.keep_freed_memory()
from swinrmt.bench import _Runner
name, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
runner = _Runner(name, mode, "fp32", 64, 64, torch.device("cpu"), 100)  # the step `swinrmt bench` times
for _ in range(2):
    runner.step()
times, faults = [], []
for _ in range(steps):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times.append(runner.step())
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"kept": on, "median_ms": 1e3 * statistics.median(times), "best_ms": 1e3 * min(times),
                  "faults_per_step": statistics.median(faults)}))
"""


def run(alloc: str, model: str, mode: str, steps: int) -> dict:
    env = {**os.environ, "SWINRMT_CPU_ALLOCATOR": alloc}
    out = subprocess.run([sys.executable, "-c", CHILD, model, mode, str(steps)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    a = p.parse_args()
    print("| mode | allocator | step ms, median per process | best step ms | page faults / step | median ratio |")
    print("|---|---|---|---|---:|---:|")
    for mode in ("infer", "train"):
        res: dict[str, list[dict]] = {"default": [], "retain": []}
        for _ in range(a.rounds):
            for alloc in res:
                res[alloc].append(run(alloc, a.model, mode, a.steps))
        base = statistics.median(r["median_ms"] for r in res["default"])
        for alloc, rs in res.items():
            med = statistics.median(r["median_ms"] for r in rs)
            meds = ", ".join(f"{r['median_ms']:.0f}" for r in rs)
            bests = ", ".join(f"{r['best_ms']:.0f}" for r in rs)
            print(f"| {mode} | {alloc} | {meds} | {bests} | "
                  f"{statistics.median(r['faults_per_step'] for r in rs):.0f} | {med / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()

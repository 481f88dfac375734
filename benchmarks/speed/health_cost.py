"""What the attention-health record costs a training run: one probe against the training steps between two records.

    python benchmarks/speed/health_cost.py [--models ...] [--img-size 64] [--batch 64] [--images 16] [--every 50]

For each model, a training step (forward, backward, AdamW) and a probe (`swinrmt.models.health.attention_health` on
`--images` images) are timed alternately in one process, so a shared machine's drift hits both alike; the cost is the
median probe time over `--every` median steps (the trainer probes once per step record). With `health_images: 0`
the trainer never calls the probe, so the record costs nothing when off. Pause background runs first
(benchmarks/reproduction/paused.sh).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import swinrmt
from swinrmt.compare import machine
from swinrmt.models.health import attention_health


def measure(name: str, img_size: int, batch: int, images: int, rounds: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = swinrmt.create_model(name, num_classes=100, img_size=img_size).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, img_size, img_size), torch.randint(0, 100, (batch,))
    probe = torch.randn(images, 3, img_size, img_size)
    steps, probes = [], []
    for i in range(rounds + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t1 = time.perf_counter()
        attention_health(model, probe)
        t2 = time.perf_counter()
        if i:  # the first round builds tables and kernels
            steps.append(t1 - t0)
            probes.append(t2 - t1)
    return statistics.median(steps), statistics.median(probes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["rmt_nano", "gated_swinrmt_retention_nano",
                                                   "gated_swinrmt_swat_nano"])
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=16, help="probe images (the recipe's health_images)")
    p.add_argument("--every", type=int, default=50, help="steps per record (the recipe's log_every_steps)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# {machine()}; batch {a.batch} at {a.img_size} px, fp32; probe on {a.images} images every {a.every} steps")
    print("| model | step (ms) | probe (ms) | probe / step | cost per step record interval |")
    print("|---|---:|---:|---:|---:|")
    for name in a.models:
        step, probe = measure(name, a.img_size, a.batch, a.images, a.rounds)
        print(f"| `{name}` | {step * 1e3:.0f} | {probe * 1e3:.0f} | {probe / step:.3f} | "
              f"{100 * probe / (a.every * step):.2f} % |")


if __name__ == "__main__":
    main()

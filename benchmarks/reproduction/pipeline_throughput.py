"""End-to-end training throughput of a recipe, data loading included: one run on all threads against N one-thread
runs side by side, each with the image files decoded every epoch and with the decode-once cache.

Prints, per configuration, images/s summed over the concurrent runs (from each run's epoch record: images seen /
epoch wall time, data included) and the share of the step spent waiting on data. All configurations run in this
one invocation, one after another, on the same machine: compare the ratios, not the absolute rates across machines.

    python benchmarks/reproduction/pipeline_throughput.py --data ../shared/data/cifar10-jpeg.tar.gz \\
        --recipe converge-cifar10-cpu --model rmt_nano --images 12800
    python benchmarks/reproduction/pipeline_throughput.py --data ../shared/data/tiny-imagenet-100.tar.gz \
        --recipe converge-tin100-cpu --model rmt_nano --images 6400 --set precision=fp32
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _runs(args: argparse.Namespace, out: Path, jobs: int, threads: int, cache: bool) -> list[dict]:
    procs = []
    for j in range(jobs):
        run = out / f"j{jobs}-t{threads}-{'cache' if cache else 'files'}-{j}"
        cmd = [sys.executable, "-m", "swinrmt", "train", "--recipe", args.recipe, "--out", str(run), "--no-progress",
               "--model", args.model, "--set", f"data.name={args.data}", "epochs=1",
               f"data.limit_train={args.images}", "data.limit_test=256", f"cpu_threads={threads}",
               f"data.decode_cache={str(cache).lower()}", "log_every_steps=10", "ckpt_every_steps=0",
               "sched.warmup_epochs=0", f"seed={j}", *args.set]
        procs.append((run, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    rows = []
    for run, p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"training failed ({run}):\n{err[-2000:]}")
        recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        steps = [r for r in recs if r["kind"] == "step"][1:]  # the first interval holds the loader's start-up
        epoch = next(r for r in recs if r["kind"] == "epoch")
        rows.append({"img_per_s": epoch["img_per_s"],
                     "data_wait": sum(r["data_wait"] for r in steps) / max(1, len(steps))})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--recipe", default="converge-cifar10-cpu")
    p.add_argument("--model", default="rmt_nano")
    p.add_argument("--images", type=int, default=12800, help="training images per run (one epoch over a subset)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides for every run, e.g. precision=fp32 (to compare precisions per layout)")
    p.add_argument("--configs", nargs="*", default=None, metavar="JOBSxTHREADS:DATA",
                   help="layouts to run, e.g. 2x1:cache 1x2:files (default: all four on --threads)")
    args = p.parse_args()
    n = args.threads
    configs = [(1, n, False), (1, n, True), (n, 1, False), (n, 1, True)] if n > 1 else [(1, 1, False), (1, 1, True)]
    if args.configs:
        try:
            configs = [(int(c.split("x")[0]), int(c.split("x")[1].split(":")[0]), c.split(":")[1] == "cache")
                       for c in args.configs]
        except (IndexError, ValueError):
            raise SystemExit(f"--configs takes JOBSxTHREADS:cache|files, got {args.configs}") from None
    print(f"{args.model}, recipe {args.recipe} {' '.join(args.set)}, {args.images} images per run, {n} threads in all")
    print(f"{'jobs x threads':>14} {'data':>6} {'img/s (sum)':>12} {'data wait':>10} {'wall s':>7}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for jobs, threads, cache in configs:
            t0 = time.perf_counter()
            rows = _runs(args, Path(tmp), jobs, threads, cache)
            rate = sum(r["img_per_s"] for r in rows)
            base = base or rate
            wait = sum(r["data_wait"] for r in rows) / len(rows)
            print(f"{jobs:>6} x {threads:<6} {'cache' if cache else 'files':>6} {rate:>12.0f} {100 * wait:>9.1f}% "
                  f"{time.perf_counter() - t0:>7.0f}   ({rate / base:.2f}x the first row)", flush=True)


if __name__ == "__main__":
    main()

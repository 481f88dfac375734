"""Median step time per (allocator, mode) over the section-6 runs of run_cpu.sh, and the retain/default ratio.

    python benchmarks/speed/allocator_summary.py benchmarks/speed/allocator/*.json
"""
import json
import statistics
import sys
from collections import defaultdict


def main(paths: list[str]) -> None:
    steps = defaultdict(list)  # (allocator, mode) -> median step ms of each run
    best = defaultdict(list)  # (allocator, mode) -> fastest step ms of each run
    mfu = defaultdict(list)
    for p in paths:
        rep = json.load(open(p))
        alloc = "retain" if rep["config"].get("cpu_allocator", "default") != "default" else "default"
        for r in rep["results"]:
            steps[alloc, r["mode"]].append(r["step_ms"])
            best[alloc, r["mode"]].append(min(r["step_ms_all"]))
            mfu[alloc, r["mode"]].append(r["mfu"])
    print("| mode | allocator | runs | step ms (median over runs of the run's median) | ratio | best step ms "
          "(median over runs) | ratio | MFU (median) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for mode in sorted({m for _, m in steps}):
        base, base_best = statistics.median(steps["default", mode]), statistics.median(best["default", mode])
        for alloc in ("default", "retain"):
            s, b = statistics.median(steps[alloc, mode]), statistics.median(best[alloc, mode])
            print(f"| {mode} | {alloc} | {len(steps[alloc, mode])} | {s:.0f} | {s / base:.2f} | {b:.0f} | "
                  f"{b / base_best:.2f} | {100 * statistics.median(mfu[alloc, mode]):.0f} % |")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Render the JSON reports of `swinrmt bench` as the markdown tables of README.md.

    python benchmarks/speed/make_table.py benchmarks/speed/cpu_tiny_64px_b64.json [more.json ...]

`MFU vs mm` (reports with `peak_flops_by_kernel`) divides by aten's mm rate alone (MKL on CPU; the first peak sample),
the peak of the earlier sessions and of the issue's public RMT-T figures; `MFU` divides by the faster kernel.
`MFU paired` is the median over timed steps of each step's MFU against its own round's peak sample (`mfu_paired`;
for reports from before it existed, recovered from `peak_flops_samples`, which hold one sample before the runs and
then one per round, group after group).
"""
from __future__ import annotations

import json
import statistics
import sys


def best_step_mfu(r: dict) -> float:
    """MFU of the fastest timed step: the same best-of statistic as the peak matmul it is divided by.

    The median (the `MFU` column) is the conservative figure; on a shared machine contention only ever slows a step,
    so the best step is the closer estimate of what the code does on an idle one.
    """
    return r["flops_per_step"] / (min(r["step_ms_all"]) / 1e3) / r["peak_flops"]


def paired_mfu(rep: dict, r: dict) -> float | None:
    """`mfu_paired` of a row, or the same figure recovered from the run's peak samples where they line up with rounds."""
    if r.get("mfu_paired") is not None:
        return r["mfu_paired"]
    cfg, samples = rep["config"], rep.get("peak_flops_samples", {}).get(r["precision"], [])
    steps, modes = cfg["steps"], cfg["modes"]
    if len(samples) != 1 + steps * len(modes) or r["mode"] not in modes:
        return None
    g = modes.index(r["mode"])
    rounds = samples[1 + g * steps:1 + (g + 1) * steps]
    return statistics.median(r["flops_per_step"] / (t / 1e3) / p for t, p in zip(r["step_ms_all"], rounds))


def mm_peak(rep: dict, precision: str) -> float | None:
    """aten's mm (MKL on CPU) rate of the run's first peak sample, where the report has it (fourth session on)."""
    return rep.get("peak_flops_by_kernel", {}).get(precision, {}).get("aten.mm")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def table(path: str) -> str:
    rep = json.load(open(path))
    cfg, mach = rep["config"], rep["machine"]
    by_kernel = rep.get("peak_flops_by_kernel", {})
    mm_col = bool(by_kernel)
    where = f"{mach['gpu']} (CUDA)" if "gpu" in mach else f"{mach['cpu']}, {mach['threads']} threads"
    compiled = cfg.get("compile", False)
    out = [f"`{path}`: {where}, torch {mach['torch']}, batch {cfg['batch']}, "
           f"{cfg['img_size']} px, fast path {cfg.get('fast_path', True)}, overrides {cfg['model_kwargs'] or '-'}, "
           f"compile {compiled}, CPU allocator {cfg.get('cpu_allocator', 'default')}; "
           f"load avg start {rep.get('load_avg_start')} end {rep.get('load_avg_end')}; peak matmul "
           + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rep["peak_flops"].items())
           + "".join(f"; first {p} sample by kernel: " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in r.items())
                     for p, r in by_kernel.items()), "",
           "| model | mode | prec | img/s | step ms (p10-p90) | GFLOP/img | GFLOP/s | MFU | MFU best step | MFU paired | "
           + ("MFU vs mm | " if mm_col else "") + "step mem MB | x time | x mem |"
           + (" first step s | compiled vs eager |" if compiled else ""),
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if mm_col else "") + "---:|---:|---:|"
           + ("---:|---:|" if compiled else "")]
    for r in rep["results"]:
        mem = f"{r['peak_mem_mb']:.0f}" if r.get("peak_mem_mb") is not None else "-"
        xm = f"{r['peak_mem_ratio']:.2f}" if r.get("peak_mem_ratio") is not None else "-"
        out.append(f"| {r['model']} | {r['mode']} | {r['precision']} | {r['images_per_s']:.1f} | "
                   f"{r['step_ms']:.0f} ({r['step_ms_p10']:.0f}-{r['step_ms_p90']:.0f}) | "
                   f"{r['flops_per_image'] / 1e9:.3f} | {r['achieved_flops'] / 1e9:.1f} | {100 * r['mfu']:.0f} % | "
                   f"{100 * best_step_mfu(r):.0f} % | {_num(_pct(paired_mfu(rep, r)), '.0f')} % | "
                   + (f"{100 * r['achieved_flops'] / mm_peak(rep, r['precision']):.0f} % | " if mm_col else "")
                   + f"{mem} | {r['step_time_ratio']:.2f} | {xm} |"
                   + (f" {_num(r.get('first_step_s'), '.0f')} | {_num(r.get('compiled_rel_error'), '.1e')} |"
                      if compiled else ""))
    return "\n".join(out)


if __name__ == "__main__":
    print("\n\n".join(table(p) for p in sys.argv[1:]))

"""A learning-rate pilot read across its compares: per model and peak lr, the final top-1, whether the training loss
rose through the peak-lr phase, and the attention health at its worst.

    python benchmarks/reproduction/lr_pilot.py FOLDER [FOLDER ...] [--baseline rmt_nano] [--window 3]
    python benchmarks/reproduction/lr_pilot.py FOLDER [FOLDER ...] --best rmt_nano     # prints that model's best lr

Each FOLDER is one `swinrmt compare` of the pilot (one peak lr, read from its compare.json), live (`runs/`) or
collected (`finished-runs/`). Printed as Markdown: one table of raw top-1 (mean ± std over seeds, n) per model and
lr, the best lr of each model, and one row per run with its loss rise and health. Folders whose recipes differ in
anything but the peak lr are refused, so one table never mixes protocols.

The peak-lr phase runs from the end of the warm-up to the step where the cosine has fallen to half the peak. Its
loss rise is the largest mean step loss over any later window of `--window` records minus the mean over the first
window (> 0: the loss rose while the lr was high, the stall the 6-epoch rung of the old recipe showed).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect import finished_runs  # noqa: E402
from swinrmt.compare import health_summary, mean_std  # noqa: E402
from swinrmt.train.metrics import read_jsonl  # noqa: E402

IGNORED = ("optim.lr",)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def peak_phase_rise(steps: list[dict], window: int = 3) -> float | None:
    """Largest later-window mean step loss minus the first window's, over records with lr >= half the peak after the
    lr first reached its peak; None when the phase holds fewer than two windows."""
    if not steps:
        return None
    peak = max(r["lr"] for r in steps)
    start = next(i for i, r in enumerate(steps) if r["lr"] >= 0.999 * peak)
    phase = [r["loss"] for r in steps[start:] if r["lr"] >= 0.5 * peak]
    if len(phase) < 2 * window:
        return None
    means = [sum(phase[i:i + window]) / window for i in range(0, len(phase) - window + 1)]
    return max(means[window:]) - means[0] if len(means) > window else None


def read_folder(folder: Path, window: int = 3) -> tuple[float, dict, list[dict]]:
    plan = json.loads((folder / "compare.json").read_text())
    recipe = plan["recipe"]
    runs = []
    for run in finished_runs(folder, "runs") + finished_runs(folder, "finished-runs"):
        res = json.loads((run / "result.json").read_text())
        steps = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("kind") == "step"]
        runs.append({**res, "rise": peak_phase_rise(steps, window), **health_summary(run / "metrics.jsonl")})
    return float(recipe["optim"]["lr"]), recipe, runs


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def best_lr(folders: list[Path], label: str) -> float:
    """The peak lr at which `label` has the highest mean raw top-1 (every lr must hold the same number of its seeds,
    so that an unfinished pilot cannot choose)."""
    found: dict[float, list[float]] = {}
    for lr, _, runs in (read_folder(f) for f in folders):
        found.setdefault(lr, []).extend(r["test_top1"] for r in runs if r["label"] == label)
    counts = {len(v) for v in found.values()}
    if not found or 0 in counts or len(counts) > 1:
        raise SystemExit(f"--best {label}: not every lr has the same number of finished runs of it "
                         f"({', '.join(f'{lr:g}: {len(v)}' for lr, v in sorted(found.items()))})")
    return max(found, key=lambda lr: sum(found[lr]) / len(found[lr]))


def table(folders: list[Path], baseline: str, window: int = 3) -> str:
    data = [read_folder(f, window) for f in folders]
    ref = {k: v for k, v in _flat(data[0][1]).items() if k not in IGNORED}
    for (lr, recipe, _), folder in zip(data, folders):
        diff = sorted(k for k, v in _flat(recipe).items() if k not in IGNORED and ref.get(k) != v)
        if diff:
            raise SystemExit(f"{folder} runs another protocol than {folders[0]} (differs in: {', '.join(diff)})")
    lrs = sorted({lr for lr, _, _ in data})
    by: dict[str, dict[float, list[dict]]] = {}
    for lr, _, runs in data:
        for r in runs:
            by.setdefault(r["label"], {}).setdefault(lr, []).append(r)
    if not by:
        raise SystemExit("no finished run in " + ", ".join(map(str, folders)))
    labels = ([baseline] if baseline in by else []) + sorted(k for k in by if k != baseline)
    lines = ["| model | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | best lr |",
             "|---|" + "---:|" * (len(lrs) + 1)]
    for lab in labels:
        cells, best = [], None
        for lr in lrs:
            runs = by[lab].get(lr, [])
            if not runs:
                cells.append("-")
                continue
            m, s = mean_std([r["test_top1"] for r in runs])
            cells.append(f"{m:.2f} ± {s:.2f} (n={len(runs)})")
            best = (m, lr) if best is None or m > best[0] else best
        lines.append(f"| `{lab}` | " + " | ".join(cells) + f" | {best[1]:g} |")
    lines += ["", "| model | lr | seed | raw top-1 % | EMA top-1 % | loss rise at peak lr | peak content logit | "
              "lowest entropy | lowest mean gate | machine |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for lab in labels:
        for lr in lrs:
            for r in sorted(by[lab].get(lr, []), key=lambda r: r["seed"]):
                lines.append(f"| `{lab}` | {lr:g} | {r['seed']} | {r['test_top1']:.2f} | "
                             f"{_f(r.get('test_ema_top1'), '.2f')} | {_f(r['rise'], '+.3f')} | "
                             f"{_f(r['health_logit_peak'], '.3g')} | {_f(r['health_entropy_min'], '.3f')} | "
                             f"{_f(r['health_gate_min'], '.3f')} | {r.get('machine', '-')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--baseline", default="rmt_nano", help="the label listed first (its best lr sets the recipe)")
    ap.add_argument("--best", metavar="LABEL", help="print only the peak lr with LABEL's best mean top-1")
    ap.add_argument("--window", type=int, default=3, help="step records per window of the loss-rise check")
    args = ap.parse_args(argv)
    if args.window < 1:
        raise SystemExit(f"--window must be >= 1, got {args.window}")
    for f in args.folders:
        if not (f / "compare.json").is_file():
            raise SystemExit(f"{f} is not a compare folder (no compare.json)")
    if args.best:
        print(f"{best_lr(args.folders, args.best):g}")
        return
    print(table(args.folders, args.baseline, args.window))


if __name__ == "__main__":
    main()

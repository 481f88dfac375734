"""Per-phase training dynamics of finished runs: where in the schedule a model falls behind, and what its gradients do.

    python benchmarks/reproduction/training_phases.py FOLDER [FOLDER ...] [--phases 0,300,500,800,1100,1600]
    python benchmarks/reproduction/training_phases.py FOLDER --epochs BASELINE_LABEL

Each FOLDER is a `swinrmt compare` run folder or a collected one (`runs/` or `finished-runs/`). For every finished run
it prints the final top-1 (raw and EMA), and per phase of optimizer steps the mean step loss, the mean learning rate
and, where the trainer logged them (revisions from 03fc714 on), the mean pre-clip gradient norm and the share of steps
clipped. With `--epochs BASELINE_LABEL` it prints instead, per evaluated epoch, each label's mean test top-1 and
training loss over its seeds and its gap to the baseline paired by seed: whether a final gap was there all along or
opened (or closed) late. Figures come from the runs' own `metrics.jsonl` and `result.json`, nothing else.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect import finished_runs  # noqa: E402  (the sibling script: which run folders hold a finished run)
from swinrmt.train.metrics import read_jsonl  # noqa: E402


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def runs_in(folder: Path) -> list[Path]:
    found = finished_runs(folder, "runs") + finished_runs(folder, "finished-runs")
    if not found:
        raise SystemExit(f"{folder}: no finished run (expected runs/ or finished-runs/LABEL/seed-K/result.json)")
    return found


def phase_rows(steps: list[dict], edges: list[int]) -> list[dict]:
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        sel = [r for r in steps if lo <= r["step"] < hi]
        row = {"phase": f"{lo}-{hi}", "loss": _mean([r["loss"] for r in sel]), "lr": _mean([r["lr"] for r in sel])}
        if sel and all("grad_norm" in r for r in sel):
            # records are interval means over log_every_steps steps each, so an unweighted mean is the phase mean
            row["grad_norm"] = _mean([r["grad_norm"] for r in sel])
            if all("clipped" in r for r in sel):
                row["clipped"] = _mean([r["clipped"] for r in sel])
        rows.append(row)
    return rows


def describe(run: Path, edges: list[int]) -> str:
    res = json.loads((run / "result.json").read_text())
    recs = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in recs if r.get("kind") == "step"]
    last = max((r["step"] for r in steps), default=0)
    cuts = sorted({e for e in edges if e < last} | {last + 1})
    lines = [f"{res['label']} seed {res['seed']}: top-1 {res['test_top1']:.2f} raw, "
             f"{res.get('test_ema_top1', math.nan):.2f} EMA ({res.get('machine', '?')}, {res['train_images']} images)"]
    lines.append("  phase (steps)   loss    lr        grad norm  clipped")
    for row in phase_rows(steps, cuts):
        gn = f"{row['grad_norm']:9.3f}" if "grad_norm" in row else "        -"
        cl = f"{100 * row['clipped']:6.1f} %" if "clipped" in row else "       -"
        lines.append(f"  {row['phase']:14s} {row['loss']:6.3f}  {row['lr']:.2e}  {gn}  {cl}")
    return "\n".join(lines)


def epoch_table(runs: list[Path], baseline: str) -> str:
    """Per evaluated epoch: mean raw test top-1 and training loss per label, and the per-seed gap to `baseline`."""
    curves: dict[str, dict[int, list[dict]]] = {}
    for run in runs:
        res = json.loads((run / "result.json").read_text())
        epochs = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("kind") == "epoch" and "test_top1" in r]
        curves.setdefault(res["label"], {})[res["seed"]] = epochs
    if baseline not in curves:
        raise SystemExit(f"--epochs: no finished run labelled {baseline!r} (labels: {', '.join(sorted(curves))})")
    base = curves[baseline]
    lines = []
    for label in [baseline] + sorted(k for k in curves if k != baseline):
        seeds = sorted(curves[label])
        lines.append(f"{label} (seeds {', '.join(map(str, seeds))})")
        gap_head = "" if label == baseline else f"  gap to {baseline} (pp): mean, per seed"
        lines.append("  epoch  top-1 %  train loss" + gap_head)
        for i in range(max(len(curves[label][s]) for s in seeds)):
            at = {s: curves[label][s][i] for s in seeds if i < len(curves[label][s])}
            line = (f"  {i + 1:5d}  {_mean([r['test_top1'] for r in at.values()]):7.2f}  "
                    f"{_mean([r['train_loss'] for r in at.values()]):10.3f}")
            if label != baseline:
                gaps = [r["test_top1"] - base[s][i]["test_top1"] for s, r in at.items()
                        if s in base and i < len(base[s])]
                if gaps:
                    line += f"  {_mean(gaps):+6.2f}  " + " ".join(f"{g:+.2f}" for g in gaps)
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--phases", default="0,300,500,800,1100,1600",
                    help="step boundaries, comma-separated (the last phase runs to the run's final step)")
    ap.add_argument("--epochs", metavar="BASELINE_LABEL",
                    help="print per-epoch top-1, training loss and the paired gap to this label instead of phases")
    args = ap.parse_args(argv)
    if args.epochs:
        print(epoch_table([run for folder in args.folders for run in runs_in(folder)], args.epochs))
        return
    try:
        edges = sorted({int(x) for x in args.phases.split(",")})
    except ValueError:
        raise SystemExit(f"--phases must be comma-separated step numbers, got {args.phases!r}") from None
    for folder in args.folders:
        for run in runs_in(folder):
            print(describe(run, edges))


if __name__ == "__main__":
    main()

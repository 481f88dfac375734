"""`swinrmt compare`: several models, one recipe, the same seeds; a report with honest statistics.

Every run trains from the same recipe object (SPEC §5) with only `model.name` (and, in ablation mode, model
overrides) changed, so for a given seed two models see the same data order and the same augmentation stream. Runs
live in `<out>/runs/<label>/seed-<k>/` (ordinary trainer run directories); a finished run leaves `result.json`. A
re-run of the same command fills in only what is missing (unfinished runs resume from their last checkpoint).

Statistics: top-1 mean and sample std over seeds; for each model vs the baseline, the paired difference over the
seeds both have (same seed = same data order), with a Student-t confidence interval. One seed gives no interval.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .atomic import save_figure, write_text

PLAN = "compare.json"
RESULT = "result.json"


# -- statistics -------------------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean of a_i - b_i with a two-sided Student-t interval; `n` pairs, `lo`/`hi` NaN when n < 2."""
    if len(a) != len(b):
        raise ValueError(f"paired difference needs equal lengths, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    m, s = mean_std(d)
    n = len(d)
    if n < 2:
        return {"mean": m, "lo": math.nan, "hi": math.nan, "n": n, "std": s}
    from scipy.stats import t

    half = t.ppf(0.5 + confidence / 2, n - 1) * s / math.sqrt(n)
    return {"mean": m, "lo": m - half, "hi": m + half, "n": n, "std": s}


# -- planning ---------------------------------------------------------------------------------------------------------
def parse_grid(items: Sequence[str]) -> list[dict[str, Any]]:
    """["norm=headnorm,rowsum", "lce=true,false"] -> the cartesian product as override dicts (values parse as YAML)."""
    axes = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ValueError(f"grid axis {item!r} is not of the form option=value1,value2")
        axes.append([(key.strip(), yaml.safe_load(v)) for v in raw.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`"rmt_nano[mlp_ratios=3.5,embed_dims=[40,80,160,320]]"` -> ("rmt_nano", {...}): the inverse of `run_label`.

    Lets one comparison hold variants of a model (a parameter-matched baseline, one-factor-at-a-time ablations)
    beside the registered defaults. Values parse as YAML; commas inside brackets belong to the value.
    """
    name, sep, rest = spec.partition("[")
    if not sep:
        return spec.strip(), {}
    if not rest.endswith("]") or not name.strip():
        raise ValueError(f"model spec {spec!r} is not of the form name or name[option=value,...]")
    items, depth, cur = [], 0, ""
    for ch in rest[:-1]:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    overrides: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip() or not raw.strip() or depth != 0:
            raise ValueError(f"model spec {spec!r}: {item!r} is not of the form option=value")
        overrides[key.strip()] = yaml.safe_load(raw)
    return name.strip(), overrides


def run_label(model: str, overrides: dict[str, Any]) -> str:
    if not overrides:
        return model
    return model + "[" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"


@dataclass
class RunSpec:
    model: str
    overrides: dict[str, Any]
    seed: int
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = run_label(self.model, self.overrides)

    def directory(self, out: Path) -> Path:
        safe = self.label.replace("[", "__").replace("]", "").replace(",", "_").replace("=", "-").replace("/", "-")
        return out / "runs" / safe / f"seed-{self.seed}"


def plan_runs(models: Sequence[str], seeds: Sequence[int], grid: Sequence[dict[str, Any]]) -> list[RunSpec]:
    """Seed-major order, so an interrupted compare already has complete seeds for every model.

    A model may carry its own overrides (`name[option=value,...]`); grid values apply on top of them.
    """
    parsed = [parse_model_spec(m) for m in models]
    return [RunSpec(name, {**own, **g}, s) for s in seeds for name, own in parsed for g in grid]


def _check_plan(out: Path, recipe_dict: dict[str, Any]) -> None:
    """A report directory belongs to one protocol: refuse to mix runs of a different recipe into it."""
    path = out / PLAN
    if path.exists():
        old = json.loads(path.read_text())["recipe"]
        if old != recipe_dict:
            diff = sorted(k for k in set(_flat(old)) | set(_flat(recipe_dict)) if _flat(old).get(k) != _flat(
                recipe_dict).get(k))
            raise ValueError(f"{out} holds a comparison under a different recipe (differs in: {', '.join(diff)}); "
                             "use another --out directory")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- running ----------------------------------------------------------------------------------------------------------
def compare(models: Sequence[str], recipe: str, out: str | Path, *, seeds: Sequence[int] = (0, 1, 2),
            recipe_overrides: Sequence[str] = (), grid: Sequence[dict[str, Any]] = ({},), baseline: str | None = None,
            device: str = "auto", progress: bool = True, train_fn=None, report: str = "report.md") -> dict[str, Any]:
    """Train every (model, grid point, seed) not yet finished under `out`, then (re)write the report there."""
    import torch

    from .registry import create_model, get_entry
    from .train.loop import train
    from .train.recipe import load_recipe

    train_fn = train_fn or train
    for m in models:  # unknown names, malformed specs and bad options fail before any training starts
        name, own = parse_model_spec(m)
        get_entry(name)
        with torch.device("meta"):
            create_model(name, **own)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)}")
    out = Path(out)
    base = load_recipe(recipe, recipe_overrides)
    protocol = {**base.to_dict(), "seed": None, "model": {**base.to_dict()["model"], "name": None, "overrides": None}}
    specs = plan_runs(models, seeds, grid)
    labels = list(dict.fromkeys(s.label for s in specs))  # the report lists models in the order they were asked for
    if baseline is not None and baseline not in labels:
        raise ValueError(f"--baseline {baseline!r} is not one of the compared models: {', '.join(labels)}")
    out.mkdir(parents=True, exist_ok=True)
    _check_plan(out, protocol)
    write_text(out / PLAN, json.dumps({"recipe": protocol, "recipe_name": recipe, "labels": labels}, indent=1))

    for i, spec in enumerate(specs, 1):
        run_dir = spec.directory(out)
        if (run_dir / RESULT).exists():
            continue
        r = base.with_overrides([f"model.name={spec.model}", f"seed={spec.seed}"])
        r.model.overrides = {**base.model.overrides, **spec.overrides}
        resume = (run_dir / "config.yaml").exists()
        print(f"[{i}/{len(specs)}] {spec.label} seed {spec.seed}: {'resuming' if resume else 'training'} "
              f"-> {run_dir}", flush=True)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        res = train_fn(r if not resume else None, run_dir, resume=resume, device=device, progress=progress)
        size = model_size(run_dir)
        result = {"label": spec.label, "model": spec.model, "overrides": spec.overrides, "seed": spec.seed,
                  "test_top1": res["test_top1"], "best_top1": res.get("best_top1"),
                  "wall_s": res.get("wall_s", time.perf_counter() - t0), **size}
        write_text(run_dir / RESULT, json.dumps(result, indent=1))
    return write_report(out, baseline=baseline or specs[0].label, name=report)


def model_size(run_dir: Path) -> dict[str, Any]:
    """Parameters and forward FLOPs of the architecture a run trained (from its checkpoint's model spec)."""
    import torch

    from .flops import count_forward_flops
    from .train.checkpoint import load_checkpoint, resolve_checkpoint
    from .train.loop import build_model

    spec = load_checkpoint(resolve_checkpoint(run_dir, "last")).meta["model"]
    with torch.device("meta"):
        model = build_model(spec)
    return {"params": sum(p.numel() for p in model.parameters()),
            "flops": count_forward_flops(model, spec["img_size"]), "img_size": spec["img_size"],
            "num_classes": spec["num_classes"]}


# -- reporting --------------------------------------------------------------------------------------------------------
def load_results(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / "runs").glob(f"*/seed-*/{RESULT}")):
        row = json.loads(path.read_text())
        row["curve"] = _curve(path.parent / "metrics.jsonl")
        rows.append(row)
    return rows


def _curve(metrics: Path) -> list[tuple[int, float]]:
    if not metrics.exists():
        return []
    pts = []
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch" and "test_top1" in rec:
            pts.append((rec["epoch"] + 1, rec["test_top1"]))
    return pts


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_report(out: str | Path, baseline: str | None = None, confidence: float = 0.95,
                 name: str = "report.md") -> dict[str, Any]:
    """`name` (the table), runs.csv / runs.json (raw), curves.png and final.png, from the finished runs in `out`.

    Another `baseline` with another `name` adds a second table beside the first (e.g. against a parameter-matched
    baseline) without retraining anything.
    """
    out = Path(out)
    rows = load_results(out)
    if not rows:
        raise ValueError(f"no finished runs under {out / 'runs'}")
    found = list(dict.fromkeys(r["label"] for r in rows))
    asked = json.loads((out / PLAN).read_text()).get("labels", []) if (out / PLAN).exists() else []
    labels = [lab for lab in asked if lab in found] + [lab for lab in found if lab not in asked]
    if baseline is not None and baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not among the finished runs in {out}: {', '.join(labels)}")
    baseline = baseline or labels[0]
    by = {lab: {r["seed"]: r for r in rows if r["label"] == lab} for lab in labels}
    summary = []
    for lab in labels:
        runs = by[lab]
        accs = [runs[s]["test_top1"] for s in sorted(runs)]
        m, s = mean_std(accs)
        common = sorted(set(runs) & set(by[baseline]))
        diff = paired_difference([runs[k]["test_top1"] for k in common], [by[baseline][k]["test_top1"] for k in common],
                                 confidence) if lab != baseline else None
        any_run = next(iter(runs.values()))
        summary.append({"label": lab, "seeds": sorted(runs), "top1_mean": m, "top1_std": s, "params": any_run["params"],
                        "flops": any_run["flops"], "train_s_mean": mean_std([r["wall_s"] for r in runs.values()])[0],
                        "train_s_total": sum(r["wall_s"] for r in runs.values()),
                        "diff_vs_baseline": diff})
    _write_raw(out, rows)
    _plot(out, labels, by, summary)
    write_text(out / name, _markdown(out, summary, baseline, confidence))
    return {"baseline": baseline, "summary": summary}


def _write_raw(out: Path, rows: list[dict[str, Any]]) -> None:
    keys = ["label", "model", "seed", "test_top1", "best_top1", "wall_s", "params", "flops"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys + ["overrides"], extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "overrides": json.dumps(r.get("overrides", {}))})
    write_text(out / "runs.csv", buf.getvalue())
    write_text(out / "runs.json", json.dumps(rows, indent=1))


def _fmt_diff(d: dict[str, float] | None) -> str:
    if d is None:
        return "baseline"
    if d["n"] < 2:
        return f"{d['mean']:+.2f} (n={d['n']}, no CI)"
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] (n={d['n']})"


def _markdown(out: Path, summary: list[dict[str, Any]], baseline: str, confidence: float) -> str:
    plan = json.loads((out / PLAN).read_text()) if (out / PLAN).exists() else {}
    lines = [f"# Comparison: {', '.join(s['label'] for s in summary)}", "",
             f"Recipe `{plan.get('recipe_name', '?')}` (resolved protocol in `{PLAN}`); machine: {machine()}; "
             f"wall time {sum(s['train_s_total'] for s in summary) / 60:.0f} min for "
             f"{sum(len(s['seeds']) for s in summary)} runs.", "",
             f"| model | params | GFLOPs | train time / run | seeds | top-1 % (mean ± std) | Δ vs `{baseline}` "
             f"(pp, paired, {int(confidence * 100)} % CI) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| `{s['label']}` | {s['params'] / 1e6:.2f} M | {s['flops'] / 1e9:.3f} | "
                     f"{s['train_s_mean'] / 60:.1f} min | {len(s['seeds'])} | {s['top1_mean']:.2f} ± {s['top1_std']:.2f} | "
                     f"{_fmt_diff(s['diff_vs_baseline'])} |")
    lines += ["", "Raw per-run metrics: `runs.csv`, `runs.json`. Plots: `curves.png` (test top-1 per epoch, mean over "
              "seeds), `final.png` (final top-1, mean ± std).", ""]
    return "\n".join(lines)


def _plot(out: Path, labels: list[str], by: dict, summary: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lab in labels:
        curves = [r["curve"] for r in by[lab].values() if r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = [c[0] for c in curves[0][:n]]
        ys = [sum(c[i][1] for c in curves) / len(curves) for i in range(n)]
        ax.plot(xs, ys, marker="o", ms=3, label=f"{lab} (n={len(curves)})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "curves.png")
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(summary)), 4.5))
    ax.bar(range(len(summary)), [s["top1_mean"] for s in summary], yerr=[s["top1_std"] for s in summary], capsize=4)
    ax.set_xticks(range(len(summary)), [s["label"] for s in summary], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("final test top-1 (%), mean ± std over seeds")
    lo = min(s["top1_mean"] - s["top1_std"] for s in summary)
    ax.set_ylim(max(0, lo - 5), None)
    fig.tight_layout()
    save_figure(fig, out / "final.png")
    plt.close("all")


# -- CLI --------------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True,
                   help="registered model names, each optionally with overrides: name[option=value,...]")
    p.add_argument("--recipe", default="quick", help="shipped recipe name or YAML path (one protocol for all)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1); see --seed-list")
    p.add_argument("--seed-list", type=int, nargs="+", default=None, help="explicit seeds")
    p.add_argument("--data", default=None, help="dataset name, path or archive (overrides the recipe's data.name)")
    p.add_argument("--root", default=None, help="dataset root for named datasets")
    p.add_argument("--grid", nargs="*", default=[], metavar="OPTION=V1,V2",
                   help="ablation: model options to sweep (cartesian product), e.g. norm=headnorm,rowsum lce=true,false")
    p.add_argument("--baseline", default=None, help="label to diff against (default: the first model)")
    p.add_argument("--report", default="report.md",
                   help="file name of the table in --out (a second name keeps a table against another --baseline)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides, e.g. epochs=5")
    p.add_argument("--out", default=None, help="report directory (default: reports/compare-<recipe>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1 and not args.seed_list:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    seeds = args.seed_list or list(range(args.seeds))
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data.name={args.data}")
    if args.root:
        overrides.append(f"data.root={args.root}")
    out = args.out or f"reports/compare-{Path(args.recipe).stem}"
    rep = compare(args.models, args.recipe, out, seeds=seeds, recipe_overrides=overrides, grid=parse_grid(args.grid),
                  baseline=args.baseline, device=args.device, progress=not args.no_progress, report=args.report)
    print((Path(out) / args.report).read_text())
    return 0 if rep["summary"] else 1

"""`swinrmt compare`: several models, one recipe, the same seeds; a report with honest statistics.

Every run trains from the same recipe object (docs/design.md §5) with only `model.name` (and, in ablation mode, model
overrides) changed, so for a given seed two models see the same data order and the same augmentation stream. Runs
live in `<out>/runs/<label>/seed-<k>/` (ordinary trainer run directories); a finished run leaves `result.json`. A
re-run of the same command fills in only what is missing (unfinished runs resume from their last checkpoint).

Statistics: top-1 mean and sample std over seeds; for each model vs the baseline, the paired difference over the
seeds both have (same seed = same data order), with a Student-t confidence interval. One seed gives no interval.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
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

from .atomic import exclusive, remove_stale_temps, save_figure, write_text
from .pool import Job

PLAN = "compare.json"
RESULT = "result.json"
LOCK = ".compare.lock"
#: Recipe keys that change speed, not results: runs that differ only in them belong to one protocol.
SPEED_ONLY = ("cpu_threads", "data.num_workers", "data.decode_cache",
              "cuda.tf32", "cuda.deterministic")  # how a CUDA run does the arithmetic (none on CPU), per run


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
        old, new = _flat(json.loads(path.read_text())["recipe"]), _flat(recipe_dict)
        diff = sorted(k for k in set(old) | set(new) if k not in SPEED_ONLY and old.get(k) != new.get(k))
        if diff:
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
            device: str = "auto", progress: bool = True, train_fn=None, report: str = "report.md", workers: int = 1,
            overwrite: bool = False,
            threads: int | None = None) -> dict[str, Any]:
    """Train every (model, grid point, seed) not yet finished under `out`, then (re)write the report there.

    `workers` > 1 trains that many runs at once in child processes (`swinrmt.pool`), `threads` (default: torch's
    current count) split evenly between them; each run gives the same result as alone on its share of threads.
    """
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
    with exclusive(out, LOCK, "swinrmt compare"):
        check_own_files(out, [report, *REPORT_FILES], overwrite)  # before hours of training, not after
        remove_stale_temps(out)  # half-written report files of a killed compare (we hold the folder's lock)
        _check_plan(out, protocol)
        write_text(out / PLAN, json.dumps({"recipe": protocol, "recipe_name": recipe, "labels": labels}, indent=1))
        jobs = [_job(out, base, spec) for spec in specs if not (spec.directory(out) / RESULT).exists()]
        failures = _train_runs(jobs, train_fn, workers=workers, threads=threads, device=device, progress=progress)
        finished = {s.label for s in specs if (s.directory(out) / RESULT).exists()}
        chosen = baseline or specs[0].label
        rep = None
        if finished:  # after a failure, a partial report against the first finished model if the baseline has none
            rep = write_report(out, baseline=chosen if chosen in finished else None, name=report,
                               overwrite=overwrite)
    if failures:
        from .cli import CLIError

        lines = "; ".join(f"{lab}: {msg} (log: {log})" for lab, log, msg in failures)
        raise CLIError(f"{len(failures)} of {len(jobs)} run(s) failed, the others are kept: {lines}")
    return rep


def _job(out: Path, base: Any, spec: RunSpec) -> Job:
    """The training of one (model, seed): a fresh recipe, or None to resume from the run directory's config."""
    from .train.checkpoint import CKPT_DIR

    run_dir = spec.directory(out)
    r = base.with_overrides([f"model.name={spec.model}", f"seed={spec.seed}"])
    r.model.overrides = {**base.model.overrides, **spec.overrides}
    started = (run_dir / "config.yaml").exists()
    # A run killed before its first checkpoint holds nothing to resume from: train it again from the start (over the
    # trainer's own files only). A run with any checkpoint resumes, and fails loudly if that cannot be done.
    saved = (run_dir / CKPT_DIR).is_dir() and any((run_dir / CKPT_DIR).glob("*.safetensors"))
    resume = started and saved
    meta = {"label": spec.label, "model": spec.model, "overrides": spec.overrides, "seed": spec.seed}
    log = out / "logs" / f"{run_dir.parent.name}-{run_dir.name}.log"
    return Job(f"{spec.label}/seed-{spec.seed}", run_dir, None if resume else r.to_dict(), r.epochs, meta, log,
               restart=started and not saved)


def _train_runs(jobs: list[Job], train_fn: Any, *, workers: int, threads: int | None, device: str,
                progress: bool) -> list[tuple[str, str, str]]:
    """Train `jobs` one after another in this process, or `workers` at a time in a pool; returns the failures."""
    import torch

    from .train.recipe import Recipe

    from .train.loop import DivergedError

    caller_threads = torch.get_num_threads()
    total = threads or caller_threads
    failures: list[tuple[str, str, str]] = []
    if workers > 1 and len(jobs) > 1:
        from .pool import run_pool

        per_job = max(1, total // workers)
        print(f"{len(jobs)} run(s) to train, {min(workers, len(jobs))} at a time on {per_job} thread(s) each",
              flush=True)
        return run_pool(jobs, workers=workers, threads=per_job, device=device, finish=write_result,
                        progress=progress)
    torch.set_num_threads(total)
    try:
        for i, job in enumerate(jobs, 1):
            print(f"[{i}/{len(jobs)}] {job.label}: {job.verb} -> {job.run_dir}", flush=True)
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            recipe = Recipe.from_dict(job.recipe) if job.recipe is not None else None
            try:
                write_result(job, train_fn(recipe, job.run_dir, resume=recipe is None, overwrite=job.restart,
                                           device=device, progress=progress))
            except DivergedError as exc:  # a failed run, like one that fails in the pool: the others go on
                print(f"{job.label}: {exc}", flush=True)
                failures.append((job.label, str(job.run_dir), str(exc)))
    finally:
        torch.set_num_threads(caller_threads)
    return failures


def write_result(job: Job, res: dict[str, Any]) -> None:
    """`result.json` of a finished run: what the report reads (accuracies raw and EMA, size, machine, wall time)."""
    if not math.isfinite(res["test_top1"]):
        raise ValueError(f"{job.label}: test top-1 is {res['test_top1']} (a diverged run); no result written")
    size = model_size(job.run_dir)
    result = {**job.meta, "test_top1": res["test_top1"], "best_top1": res.get("best_top1"),
              **{k: v for k, v in res.items() if k.startswith("test_") and k != "test_top1"},
              "wall_s": res.get("wall_s"), "threads": res.get("threads"), "train_images": res.get("train_images"),
              "machine": machine(threads=False),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **size}
    write_text(job.run_dir / RESULT, json.dumps(result, indent=1))


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
EPOCH_LOGS = "epoch-logs"


def load_results(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((out / "runs").glob(f"*/seed-*/{RESULT}")):
        try:
            row = json.loads(path.read_text())
            if not isinstance(row, dict) or not {"label", "seed", "test_top1"} <= set(row):
                raise ValueError("not a result object with label, seed and test_top1")
        except ValueError as exc:
            raise ValueError(f"{path}: unreadable run result ({exc}); delete it to train that run again") from None
        top1 = row["test_top1"]
        row["failed"] = not (isinstance(top1, (int, float)) and math.isfinite(top1))  # e.g. a diverged run: NaN
        row["epochs_log"] = _epochs(path.parent / "metrics.jsonl")
        row.update(health_summary(path.parent / "metrics.jsonl"))
        row["curve"] = [(e["epoch"] + 1, e["test_top1"], e.get("test_ema_top1")) for e in row["epochs_log"]
                        if "test_top1" in e]
        row["run_dir"] = str(path.parent)
        # wall_s spans the last process only; the epochs' own times are checkpointed, so they add up across resumes
        times = [e["epoch_time_s"] for e in row["epochs_log"] if "epoch_time_s" in e]
        row["train_s"] = sum(times) if len(times) == len(row["epochs_log"]) and times else row.get("wall_s")
        rows.append(row)
    return rows


def _epochs(metrics: Path) -> list[dict[str, Any]]:
    if not metrics.exists():
        return []
    recs = (json.loads(line) for line in metrics.read_text().splitlines())
    return [r for r in recs if r.get("kind") == "epoch"]


HEALTH_SUMMARY = {"logit_peak": ("attn_logit_max", max), "entropy_min": ("attn_entropy", min),
                  "gate_min": ("gate_mean", min)}


def health_summary(metrics: Path) -> dict[str, float | None]:
    """A run's attention health at its worst: the largest content logit, the lowest stage entropy and the lowest stage
    mean G1 gate over all its step records (None where the run has no such record)."""
    recs = []
    if metrics.exists():
        recs = [r for r in map(json.loads, metrics.read_text().splitlines()) if r.get("kind") == "step"]
    out: dict[str, float | None] = {}
    for name, (key, pick) in HEALTH_SUMMARY.items():
        vals = [v for r in recs for v in r.get(key, []) if v is not None]
        out[f"health_{name}"] = pick(vals) if vals else None
    return out


def machine(threads: bool = True) -> str:
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
    return f"CPU {cpu}, " + (f"{torch.get_num_threads()} threads, " if threads else "") + f"torch {torch.__version__}"


def _stats(by: dict, lab: str, baseline: str, key: str, confidence: float) -> dict[str, Any] | None:
    """Mean ± std of `key` over a model's seeds and its paired difference to the baseline; None if a run lacks it."""
    runs, base = by[lab], by[baseline]
    if any(r.get(key) is None for r in runs.values()):
        return None
    m, s = mean_std([runs[k][key] for k in sorted(runs)])
    common = [k for k in sorted(set(runs) & set(base)) if base[k].get(key) is not None]
    diff = None if lab == baseline else paired_difference([runs[k][key] for k in common],
                                                          [base[k][key] for k in common], confidence)
    return {"mean": m, "std": s, "diff": diff}


def write_report(out: str | Path, baseline: str | None = None, confidence: float = 0.95,
                 name: str = "report.md", overwrite: bool = False) -> dict[str, Any]:
    """`name` (the tables), runs.csv / runs.json (raw), epoch-logs/, curves.png and final.png, from the finished runs.

    Accuracies are reported from the raw weights and, where the recipe keeps an EMA, from the EMA weights too, each
    with its own paired interval (RMT's published figures are EMA accuracies: a reader must see which is which).
    Another `baseline` with another `name` adds a second table beside the first (e.g. against a parameter-matched
    baseline) without retraining anything.
    """
    out = Path(out)
    check_own_files(out, [name, *REPORT_FILES], overwrite)
    rows = load_results(out)
    failed = [r for r in rows if r["failed"]]
    rows = [r for r in rows if not r["failed"]]  # a failed run is in no statistic, and the report says so
    if not rows:
        raise ValueError(f"no finished runs under {out / 'runs'}"
                         + (f" ({len(failed)} failed: {', '.join(_failed_names(failed))})" if failed else ""))
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
        raw = _stats(by, lab, baseline, "test_top1", confidence)
        ema = _stats(by, lab, baseline, "test_ema_top1", confidence)
        any_run = next(iter(runs.values()))
        summary.append({"label": lab, "seeds": sorted(runs), "top1_mean": raw["mean"], "top1_std": raw["std"],
                        "params": any_run["params"], "flops": any_run["flops"],
                        "train_s_mean": mean_std([r["train_s"] for r in runs.values()])[0],
                        "train_s_total": sum(r["train_s"] for r in runs.values()),
                        "diff_vs_baseline": raw["diff"], "ema": ema})
    _write_raw(out, rows)
    _plot(out, labels, by, summary)
    text = _markdown(out, summary, rows, baseline, confidence)
    if failed:
        text += (f"\n**Failed runs, left out of every number above:** {', '.join(_failed_names(failed))}.\n")
    _write_own(out, name, text)
    return {"baseline": baseline, "summary": summary, "failed": _failed_names(failed)}


def _failed_names(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['label']} seed {r['seed']} (test top-1 {r['test_top1']})" for r in rows]


# -- files in --out: compare's own, or the user's -----------------------------------------------------------------
REPORT_FILES = ("runs.csv", "runs.json", "curves.png", "final.png")
WRITTEN = ".swinrmt-written.json"  # sha256 of every report file as compare last wrote it


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_own_files(out: Path, names: Sequence[str], overwrite: bool) -> None:
    """Refuse to replace a file in `out` that compare did not write (or that was edited since): it is the user's."""
    if overwrite:
        return
    try:
        written = json.loads((out / WRITTEN).read_text())
    except (OSError, ValueError):
        written = {}
    for name in names:
        p = out / name
        if p.is_file() and written.get(name) != _digest(p):
            raise ValueError(f"{p} exists and is not a file swinrmt compare wrote (or it was edited since); pass "
                             "--overwrite to replace it, or choose another --out")


def _write_own(out: Path, name: str, text: str | None = None, fig: Any = None) -> None:
    """Write a report file and remember its digest (so a later compare may replace it, and only it)."""
    if fig is not None:
        save_figure(fig, out / name)
    else:
        write_text(out / name, text)
    try:
        written = json.loads((out / WRITTEN).read_text())
    except (OSError, ValueError):
        written = {}
    written[name] = _digest(out / name)
    write_text(out / WRITTEN, json.dumps(written, indent=1))


def _write_raw(out: Path, rows: list[dict[str, Any]]) -> None:
    keys = ["label", "model", "seed", "test_top1", "test_ema_top1", "best_top1", "train_s", "wall_s", "threads",
            "machine", "params", "flops"] + [f"health_{name}" for name in HEALTH_SUMMARY]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys + ["overrides"], extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "overrides": json.dumps(r.get("overrides", {}))})
    _write_own(out, "runs.csv", buf.getvalue())
    _write_own(out, "runs.json", json.dumps([{k: v for k, v in r.items() if k not in ("epochs_log", "run_dir")}
                                              for r in rows], indent=1))
    for r in rows:  # every run's per-epoch log, small enough to keep beside the report
        run_dir = Path(r["run_dir"])
        write_text(out / EPOCH_LOGS / f"{run_dir.parent.name}-{run_dir.name}.jsonl",
                   "".join(json.dumps(e) + "\n" for e in r["epochs_log"]))


def _fmt_diff(d: dict[str, float] | None) -> str:
    if d is None:
        return "baseline"
    if d["n"] < 2:
        return f"{d['mean']:+.2f} (n={d['n']}, no CI)"
    return f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] (n={d['n']})"


def _markdown(out: Path, summary: list[dict[str, Any]], rows: list[dict[str, Any]], baseline: str,
              confidence: float) -> str:
    plan = json.loads((out / PLAN).read_text()) if (out / PLAN).exists() else {}
    machines = sorted({r.get("machine") or machine() for r in rows})
    with_ema = all(s["ema"] is not None for s in summary)
    ci = f"pp, paired, {int(confidence * 100)} % CI"
    lines = [f"# Comparison: {', '.join(s['label'] for s in summary)}", "",
             f"Recipe `{plan.get('recipe_name', '?')}` (resolved protocol in `{PLAN}`); machine: "
             f"{'; '.join(machines)}; training time {sum(s['train_s_total'] for s in summary) / 60:.0f} min for "
             f"{sum(len(s['seeds']) for s in summary)} runs (the sum of the epochs' times, across resumes; "
             "evaluation not included).", ""]
    head = "| model | params | GFLOPs | train time / run | seeds | top-1 % (mean ± std) | Δ vs `{b}` ({ci}) |"
    if with_ema:
        lines += ["Final-epoch test top-1 of the raw weights and of their EMA (the recipe keeps both).", ""]
        head = head.replace("top-1 % (mean ± std) | Δ vs `{b}` ({ci}) |",
                            "raw top-1 % | Δ raw vs `{b}` ({ci}) | EMA top-1 % | Δ EMA vs `{b}` ({ci}) |")
    lines += [head.format(b=baseline, ci=ci), "|---|---:|---:|---:|---:|" + "---:|" * (4 if with_ema else 2)]
    for s in summary:
        line = (f"| `{s['label']}` | {s['params'] / 1e6:.2f} M | {s['flops'] / 1e9:.3f} | "
                f"{s['train_s_mean'] / 60:.1f} min | {len(s['seeds'])} | {s['top1_mean']:.2f} ± {s['top1_std']:.2f} | "
                f"{_fmt_diff(s['diff_vs_baseline'])} |")
        if with_ema:
            e = s["ema"]
            line += f" {e['mean']:.2f} ± {e['std']:.2f} | {_fmt_diff(e['diff'])} |"
        lines.append(line)
    lines += ["", "Per run:", "", "| model | seed | raw top-1 % | EMA top-1 % | epochs | train time | threads |"
              " machine | finished |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        ema = f"{r['test_ema_top1']:.2f}" if r.get("test_ema_top1") is not None else "-"
        lines.append(f"| `{r['label']}` | {r['seed']} | {r['test_top1']:.2f} | {ema} | {len(r['epochs_log'])} | "
                     f"{r['train_s'] / 60:.1f} min | {r.get('threads', '-')} | {r.get('machine', '-')} | "
                     f"{r.get('finished', '-')} |")
    lines += _health_table(summary, rows)
    lines += ["", f"Raw per-run metrics: `runs.csv`, `runs.json`; every run's per-epoch log in `{EPOCH_LOGS}/`. Plots: "
              "`curves.png` (test top-1 per evaluated epoch, mean over seeds" + (", EMA dashed" if with_ema else "")
              + "), `final.png` (final top-1, mean ± std).", ""]
    return "\n".join(lines)


def _health_table(summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """Attention health at its worst over training, mean (and worst) over each model's seeds; nothing for runs
    from before the health record."""
    if not any(r.get("health_logit_peak") is not None for r in rows):
        return []

    def cell(lab: str, key: str, worst: Any) -> str:
        vals = [r[key] for r in rows if r["label"] == lab and r.get(key) is not None]
        return f"{sum(vals) / len(vals):.3g} ({worst(vals):.3g})" if vals else "-"

    lines = ["", "Attention health over training (`metrics.jsonl`, every step record): each run's largest content "
             "logit |q.k|/sqrt(d), lowest stage-mean row entropy (1 = uniform) and lowest stage-mean G1 gate; mean "
             "over seeds (worst seed).", "", "| model | peak content logit | lowest entropy | lowest mean gate |",
             "|---|---:|---:|---:|"]
    for s in summary:
        lab = s["label"]
        lines.append(f"| `{lab}` | {cell(lab, 'health_logit_peak', max)} | {cell(lab, 'health_entropy_min', min)} | "
                     f"{cell(lab, 'health_gate_min', min)} |")
    return lines


def _plot(out: Path, labels: list[str], by: dict, summary: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, lab in enumerate(labels):
        curves = [r["curve"] for r in by[lab].values() if r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = [c[0] for c in curves[0][:n]]
        color = f"C{i % 10}"
        ys = [sum(c[j][1] for c in curves) / len(curves) for j in range(n)]
        ax.plot(xs, ys, marker="o", ms=3, color=color, label=f"{lab} (n={len(curves)})")
        if all(c[j][2] is not None for c in curves for j in range(n)):
            ys = [sum(c[j][2] for c in curves) / len(curves) for j in range(n)]
            ax.plot(xs, ys, ls="--", color=color, label=f"{lab} EMA")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _write_own(out, "curves.png", fig=fig)
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(summary)), 4.5))
    ax.bar(range(len(summary)), [s["top1_mean"] for s in summary], yerr=[s["top1_std"] for s in summary], capsize=4)
    ax.set_xticks(range(len(summary)), [s["label"] for s in summary], rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("final test top-1 (%), mean ± std over seeds")
    lo = min(s["top1_mean"] - s["top1_std"] for s in summary)
    ax.set_ylim(max(0, lo - 5), None)
    fig.tight_layout()
    _write_own(out, "final.png", fig=fig)
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
    p.add_argument("--jobs", default="auto",
                   help="runs trained at once, the CPU threads split between them; auto: one per CPU thread on CPU "
                        "(two one-thread nano runs train 1.3x the images per hour of one two-thread run), 1 on GPU")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for all jobs together (default: torch's count, normally one per core)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace report files in --out that swinrmt compare did not write (a user's own)")


def resolve_jobs(jobs: str | int, device: str = "auto", threads: int | None = None) -> int:
    """`--jobs`: a positive integer, or auto (one job per CPU thread on CPU, one on a GPU)."""
    import torch

    if str(jobs) == "auto":
        on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        return 1 if on_gpu else max(1, threads or torch.get_num_threads())
    try:
        n = int(jobs)
    except ValueError:
        raise ValueError(f"--jobs must be a positive integer or auto, got {jobs!r}") from None
    if n < 1:
        raise ValueError(f"--jobs must be a positive integer or auto, got {jobs!r}")
    return n


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
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    rep = compare(args.models, args.recipe, out, seeds=seeds, recipe_overrides=overrides, grid=parse_grid(args.grid),
                  baseline=args.baseline, device=args.device, progress=not args.no_progress, report=args.report,
                  workers=resolve_jobs(args.jobs, args.device, args.threads), threads=args.threads,
                  overwrite=args.overwrite)
    print((Path(out) / args.report).read_text())
    return 0 if rep["summary"] else 1

"""`swinrmt ladder`: how the gaps between models move as the training budget grows, from several compare reports.

Each report directory is one rung: one complete schedule (its own warm-up and decay), trained by `swinrmt compare`.
For every rung the ladder gives each model's test top-1 (mean ± std over seeds) and its paired difference to the
baseline with a Student-t interval, against the images each run trained on, and draws `ladder.png`: top-1 per model
against training images (log scale), and the paired gap with its interval per rung. Whether a lead grows, holds or
shrinks with the budget is the question a single early-training comparison cannot answer.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from .atomic import save_figure, write_text
from .compare import PLAN, SPEED_ONLY, _flat, _fmt_diff, mean_std, paired_difference

METRICS = {"raw": "test_top1", "ema": "test_ema_top1"}
#: Settings that change speed or logging, not what is learned (the dataset is compared by file name, not path).
UNLEARNED = {*SPEED_ONLY, "log_every_steps", "ckpt_every_steps", "data.name"}


def _train_images(row: dict[str, Any], recipe: dict[str, Any], where: Path) -> int:
    if row.get("train_images"):
        return int(row["train_images"])
    limit, batch = recipe["data"].get("limit_train"), recipe["batch_size"]
    if not limit:
        raise ValueError(f"{where}: runs do not record train_images and the recipe has no data.limit_train; "
                         "re-write the report with this version of swinrmt compare")
    return int(recipe["epochs"]) * (int(limit) // int(batch)) * int(batch)


def rung(report_dir: str | Path, baseline: str, metric: str = "raw", confidence: float = 0.95) -> dict[str, Any]:
    """One rung: {"dir", "recipe", "images", "models": {label: {"mean", "std", "n", "diff"}}} from a report."""
    d = Path(report_dir)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{d} is a file, not a compare report directory (one holding {PLAN} and runs.json)")
    try:
        plan = json.loads((d / PLAN).read_text())
        rows = json.loads((d / "runs.json").read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{d} is not a compare report (missing {Path(exc.filename).name})") from None
    except ValueError as exc:
        raise ValueError(f"{d}: unreadable compare report ({exc})") from None
    key = METRICS[metric]
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["label"], {})[r["seed"]] = r
    if baseline not in by:
        raise ValueError(f"{d}: baseline {baseline!r} has no finished run (models: {', '.join(by)})")
    images = {_train_images(r, plan["recipe"], d) for r in rows}
    if len(images) != 1:
        raise ValueError(f"{d}: runs trained on different numbers of images {sorted(images)}: not one rung")
    models = {}
    for lab, runs in by.items():
        if any(r.get(key) is None for r in runs.values()):
            raise ValueError(f"{d}: {lab} has no {metric} accuracy ({key}); use --metric raw")
        m, s = mean_std([runs[k][key] for k in sorted(runs)])
        common = sorted(set(runs) & set(by[baseline]))
        diff = None if lab == baseline else paired_difference(
            [runs[k][key] for k in common], [by[baseline][k][key] for k in common], confidence)
        models[lab] = {"mean": m, "std": s, "n": len(runs), "diff": diff}
    models = {baseline: models[baseline], **{k: v for k, v in models.items() if k != baseline}}
    data = Path(str(plan["recipe"]["data"]["name"])).name  # the dataset, wherever the rung's machine kept it
    machines = sorted({str(r["machine"]) for r in rows if r.get("machine")})
    return {"dir": str(d), "recipe": plan.get("recipe_name"), "images": images.pop(), "data": data, "models": models,
            "settings": _flat(plan["recipe"]), "machines": machines}


def ladder(report_dirs: Sequence[str | Path], baseline: str, out: str | Path, metric: str = "raw",
           confidence: float = 0.95, rename: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Write `<out>/ladder.png` and `<out>/ladder.md` from the rungs (ordered by budget); returns the rungs.

    `rename` maps labels that name one family differently in different rungs to one name (e.g. none needed when every
    rung compares the same registered models).
    """
    rungs = sorted((rung(d, baseline, metric, confidence) for d in report_dirs), key=lambda r: r["images"])
    if not rungs:
        raise ValueError("ladder needs at least one report directory")
    datasets = {r["dir"]: r["data"] for r in rungs}
    if len(set(datasets.values())) > 1:
        raise ValueError("the rungs train on different data, so they are not one ladder: "
                         + ", ".join(f"{d}: {n}" for d, n in datasets.items()))
    for r in rungs:
        r["models"] = {(rename or {}).get(k, k): v for k, v in r["models"].items()}
    labels = list(dict.fromkeys(lab for r in rungs for lab in r["models"]))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _plot(rungs, labels, baseline, metric, confidence, out / "ladder.png")
    write_text(out / "ladder.md", _markdown(rungs, labels, baseline, metric, confidence))
    return rungs


def _markdown(rungs, labels, baseline, metric, confidence) -> str:
    ci = int(confidence * 100)
    lines = [f"# Budget ladder ({metric} weights): test top-1 % (mean ± std over seeds) and Δ vs `{baseline}` "
             f"(pp, paired, {ci} % CI)", "", "| rung | recipe | images / run | " + " | ".join(f"`{lab}`" for lab in labels)
             + " |", "|---|---|---:|" + "---|" * len(labels)]
    for i, r in enumerate(rungs, 1):
        cells = []
        for lab in labels:
            m = r["models"].get(lab)
            cells.append("-" if m is None else f"{m['mean']:.2f} ± {m['std']:.2f}"
                         + ("" if m["diff"] is None else f"<br>{_fmt_diff(m['diff'])}"))
        lines.append(f"| {i} | `{r['recipe']}` (`{Path(r['dir']).name}`) | {r['images']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + _differences(rungs))


def _differences(rungs) -> list[str]:
    """The settings and machines that differ between rungs: what besides the budget a reader must weigh."""
    if len(rungs) < 2:
        return []
    keys = sorted({k for r in rungs for k in r["settings"]} - UNLEARNED)
    values = {k: [json.dumps(r["settings"].get(k)) for r in rungs] for k in keys}
    differ = [k for k in keys if len(set(values[k])) > 1]
    head = "| setting | " + " | ".join(f"rung {i}" for i in range(1, len(rungs) + 1)) + " |"
    lines = ["Resolved recipe settings that differ between rungs (every other setting is the same; those that change "
             "only speed or logging left out), and the machines the runs trained on:", "", head,
             "|---|" + "---|" * len(rungs)]
    for k in differ:
        lines.append(f"| `{k}` | " + " | ".join(values[k]) + " |")
    lines.append("| machine | " + " | ".join("<br>".join(r["machines"]) or "not recorded" for r in rungs) + " |")
    return lines + [""]


def _plot(rungs, labels, baseline, metric, confidence, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, lab in enumerate(labels):
        pts = [(r["images"], r["models"][lab]) for r in rungs if lab in r["models"]]
        xs = [p[0] for p in pts]
        a1.errorbar(xs, [m["mean"] for _, m in pts], yerr=[m["std"] for _, m in pts], marker="o", capsize=3,
                    color=f"C{i % 10}", label=lab)
        if lab == baseline:
            continue
        gaps = [(x, m["diff"]) for x, m in pts if m["diff"] is not None]
        ys = [g["mean"] for _, g in gaps]
        lo = [g["mean"] - g["lo"] if g["n"] > 1 else 0.0 for _, g in gaps]
        hi = [g["hi"] - g["mean"] if g["n"] > 1 else 0.0 for _, g in gaps]
        shift = 1.0 + 0.04 * (i - len(labels) / 2)  # side by side on the log axis, so the intervals stay readable
        a2.errorbar([x * shift for x, _ in gaps], ys, yerr=[lo, hi], marker="o", capsize=3, color=f"C{i % 10}",
                    label=lab)
    for ax in (a1, a2):
        ax.set_xscale("log")
        ax.set_xlabel("training images per run (log scale)")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:  # the gap panel is empty when only the baseline ran
            ax.legend(fontsize=7)
    a2.set_xlim(a1.get_xlim())  # both panels on one budget axis
    a1.set_ylabel(f"test top-1 % ({metric}), mean ± std over seeds")
    a2.axhline(0.0, color="k", lw=0.8)
    a2.set_ylabel(f"Δ top-1 vs {baseline} (pp), paired {int(confidence * 100)} % CI")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", nargs="+", help="compare report directories, one per rung (any order)")
    p.add_argument("--baseline", default="rmt_nano", help="label the gaps are measured against")
    p.add_argument("--metric", choices=sorted(METRICS), default="raw", help="raw or EMA weights' accuracy")
    p.add_argument("--out", required=True, help="directory for ladder.png and ladder.md")


def run(args: argparse.Namespace) -> int:
    ladder(args.reports, args.baseline, args.out, args.metric)
    print((Path(args.out) / "ladder.md").read_text())
    return 0

"""Copy a `swinrmt compare` report, and the records of its finished runs, into the repository; put them back.

    python benchmarks/reproduction/collect.py ~/swinrmt-runs/cifar10-converge benchmarks/reproduction/cifar10-converge
    python benchmarks/reproduction/collect.py --restore benchmarks/reproduction/cifar10-converge ~/swinrmt-runs/cifar10-converge

Collecting copies the report tables (`*.md` other than README.md), `compare.json`, `runs.csv`, `runs.json`, the plots
and `epoch-logs/` once a report exists, and, always, the records of every finished run (`finished-runs/LABEL/seed-K/`
with `result.json` and `metrics.jsonl`, a few KB each, never a checkpoint) with the plan (`compare.json`) and the code
revision (`code-rev`). The folder's own README.md (the reading of the result) is never touched.

The machine a long ladder runs on may be handed back bare between sessions: a run finished in one session lives on
through its record in the repository, and `--restore` writes the records back into a run folder (the plan and the
revision first) so that `swinrmt compare` there counts those runs as done and trains only the others, on the same
revision. Restoring never replaces a file the run folder already has, and refuses a folder of another plan or revision.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

KEEP = ("compare.json", "runs.csv", "runs.json")
RECORD = ("result.json", "metrics.jsonl")  # what the report reads of a finished run
PLAN, REV = "compare.json", "code-rev"
RECORDS = "finished-runs"  # not `runs/`, which .gitignore keeps out of the repository for the run folders' sake


def finished_runs(folder: Path, under: str = "runs") -> list[Path]:
    """The run directories under `folder/under` that hold a finished run's `result.json`."""
    return sorted(p.parent for p in folder.glob(f"{under}/*/seed-*/result.json"))


def collect(src: Path, dest: Path) -> list[Path]:
    """The report if `src` holds one, and the records of its finished runs; refuses a folder with neither."""
    report = (src / "compare.json").is_file() and (src / "runs.json").is_file()
    done = finished_runs(src)
    if not report and not done:
        raise SystemExit(f"{src} holds no compare report and no finished run: run swinrmt compare first")
    dest.mkdir(parents=True, exist_ok=True)
    files = ([src / k for k in KEEP] + sorted(src.glob("*.png"))
             + [p for p in sorted(src.glob("*.md")) if p.name != "README.md"]) if report else []
    files += [src / k for k in (PLAN, REV) if (src / k).is_file() and src / k not in files]
    copied = []
    for f in files:
        shutil.copy2(f, dest / f.name)
        copied.append(dest / f.name)
    if report and (src / "epoch-logs").is_dir():
        shutil.rmtree(dest / "epoch-logs", ignore_errors=True)
        shutil.copytree(src / "epoch-logs", dest / "epoch-logs")
        copied.append(dest / "epoch-logs")
    for run in done:
        to = dest / RECORDS / run.relative_to(src / "runs")
        to.mkdir(parents=True, exist_ok=True)
        for name in RECORD:
            if (run / name).is_file():
                shutil.copy2(run / name, to / name)
                copied.append(to / name)
    return copied


def restore(records: Path, out: Path) -> list[Path]:
    """Write the finished runs recorded in `records` into the run folder `out`, with its plan and revision."""
    done = finished_runs(records, RECORDS)
    if not done:
        raise SystemExit(f"{records} records no finished run (collect.py SRC {records} writes them)")
    for name in (PLAN, REV):
        if not (records / name).is_file():
            raise SystemExit(f"{records / name} is missing: the records cannot say which plan or revision they ran")
    out.mkdir(parents=True, exist_ok=True)
    from swinrmt.atomic import exclusive, write_text
    from swinrmt.compare import LOCK, _check_plan

    with exclusive(out, LOCK, "swinrmt compare", error=SystemExit):
        rev = out / REV
        if rev.is_file() and rev.read_text().strip() != (records / REV).read_text().strip():
            raise SystemExit(f"{rev} differs from {records / REV}: {out} holds runs of another revision; "
                             "restore into an empty folder")
        try:  # the rule compare itself applies: the same recipe, speed-only keys aside
            _check_plan(out, json.loads((records / PLAN).read_text())["recipe"])
        except ValueError as e:
            raise SystemExit(str(e)) from None
        written = []
        for name in (PLAN, REV):
            if not (out / name).is_file():
                write_text(out / name, (records / name).read_text())
                written.append(out / name)
        for run in done:
            to = out / "runs" / run.relative_to(records / RECORDS)
            if (to / "result.json").exists():
                continue  # finished here too
            if to.exists() and any(to.iterdir()):
                print(f"{to} holds an unfinished run: left as it is (the recorded one is in {run})", file=sys.stderr)
                continue
            to.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "result.json"):  # result.json last: it marks the run finished
                if (run / name).is_file():
                    write_text(to / name, (run / name).read_text())
                    written.append(to / name)
    return written


if __name__ == "__main__":
    argv = sys.argv[1:]
    undo = argv[:1] == ["--restore"]
    argv = argv[1:] if undo else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    a, b = (Path(x).expanduser() for x in argv)
    for path in (restore(a, b) if undo else collect(a, b)):
        print(path)

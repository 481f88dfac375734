"""Copy a `swinrmt compare` report (not its run directories or checkpoints) into the repository.

    python benchmarks/reproduction/collect.py ~/swinrmt-runs/cifar10-converge benchmarks/reproduction/cifar10-converge

Copies the report tables (`*.md` other than README.md), `compare.json`, `runs.csv`, `runs.json`, the plots and
`epoch-logs/`; the folder's own README.md (the reading of the result) is never touched. Refuses a source that holds no
finished report.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = ("compare.json", "runs.csv", "runs.json")


def collect(src: Path, dest: Path) -> list[Path]:
    if not (src / "compare.json").is_file() or not (src / "runs.json").is_file():
        raise SystemExit(f"{src} holds no compare report (no compare.json / runs.json): run swinrmt compare first")
    dest.mkdir(parents=True, exist_ok=True)
    files = [src / k for k in KEEP] + sorted(src.glob("*.png")) + [p for p in sorted(src.glob("*.md"))
                                                                    if p.name != "README.md"]
    copied = []
    for f in files:
        shutil.copy2(f, dest / f.name)
        copied.append(dest / f.name)
    if (src / "epoch-logs").is_dir():
        shutil.rmtree(dest / "epoch-logs", ignore_errors=True)
        shutil.copytree(src / "epoch-logs", dest / "epoch-logs")
        copied.append(dest / "epoch-logs")
    return copied


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    for path in collect(Path(sys.argv[1]).expanduser(), Path(sys.argv[2])):
        print(path)

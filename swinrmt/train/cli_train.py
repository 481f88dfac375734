"""`swinrmt train`: a recipe (shipped name or YAML file) plus command-line overrides -> `swinrmt.train.train`."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_RECIPE = "quick"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=None,
                   help=f"shipped recipe name or a YAML file (default: {DEFAULT_RECIPE}; with --resume: the run's own)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override recipe values, e.g. --set optim.lr=1e-3 epochs=5 data.aug.hflip=0")
    p.add_argument("--model", help="shortcut for --set model.name=...")
    p.add_argument("--data", help="shortcut for --set data.name=... (a dataset name, directory or archive)")
    p.add_argument("--data-root", help="shortcut for --set data.root=...")
    p.add_argument("--epochs", type=int, help="shortcut for --set epochs=...")
    p.add_argument("--batch-size", type=int, help="per-process batch size (shortcut for --set batch_size=...)")
    p.add_argument("--lr", type=float, help="shortcut for --set optim.lr=...")
    p.add_argument("--seed", type=int, help="shortcut for --set seed=...")
    p.add_argument("--out", help="run directory (default: runs/<recipe>-<model>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a non-empty --out (only the trainer's own files are replaced)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (epoch summaries still print)")
    p.add_argument("--print-recipe", action="store_true", help="print the resolved recipe as YAML and exit")


def _overrides(args: argparse.Namespace) -> list[str]:
    shortcuts = {"model.name": args.model, "data.name": args.data, "data.root": args.data_root,
                 "epochs": args.epochs, "batch_size": args.batch_size, "optim.lr": args.lr, "seed": args.seed}
    return list(args.overrides) + [f"{k}={v}" for k, v in shortcuts.items() if v is not None]


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from .loop import load_run_recipe, train
    from .recipe import load_recipe

    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise CLIError("--resume continues the run in its own directory; drop --out")
        if args.recipe:
            raise CLIError("--resume uses the run's own config.yaml; change values with --set instead of --recipe")
        recipe = load_run_recipe(args.resume).with_overrides(_overrides(args))
        out = Path(args.resume)
    else:
        recipe = load_recipe(args.recipe or DEFAULT_RECIPE, _overrides(args))
        stem = Path(args.recipe).stem if args.recipe else DEFAULT_RECIPE
        out = Path(args.out) if args.out else _fresh_dir(Path("runs"), f"{stem}-{recipe.model.name}")
    if args.print_recipe:
        print(recipe.to_yaml(), end="")
        return 0
    try:
        result = train(recipe, out, resume=bool(args.resume), overwrite=args.overwrite, device=args.device,
                       progress=not args.no_progress)
    except OSError as exc:  # unreadable files, full disks, permissions: the user's to fix, not a traceback
        if isinstance(exc, FileNotFoundError):
            raise
        raise CLIError(f"{type(exc).__name__}: {exc}") from exc
    if result["rank"] == 0 and "test_top1" in result:
        line = f"test top-1 {result['test_top1']:.2f}%  top-5 {result['test_top5']:.2f}%"
        if "test_ema_top1" in result:
            line += f"  EMA top-1 {result['test_ema_top1']:.2f}%"
        line += f"  (best {result['best_top1']:.2f}% at epoch {result['best_epoch']})"
        print(f"{line}  | {result['steps']} steps in {result['wall_s']:.0f} s -> {result['run_dir']}")
    return 0


def _fresh_dir(parent: Path, stem: str) -> Path:
    base = parent / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path

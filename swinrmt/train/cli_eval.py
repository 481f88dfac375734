"""`swinrmt eval`: top-1/top-5, per-class accuracy, confusion matrix and ECE of a checkpoint, as JSON + PNG."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN_DIR_OR_FILE",
                   help="a run directory (uses checkpoints/<--which>.safetensors) or a checkpoint file")
    p.add_argument("--which", default="best", choices=("best", "last"), help="checkpoint of a run directory")
    p.add_argument("--weights", default="auto", choices=("auto", "ema", "model"),
                   help="auto: the EMA weights when the checkpoint has them")
    p.add_argument("--data", help="dataset name, directory or archive (default: the run's own dataset)")
    p.add_argument("--data-root", help="dataset root for a named dataset")
    p.add_argument("--split", help="split to evaluate (default: the run's test split)")
    p.add_argument("--model", help="expected model name: refuse a checkpoint of another model")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--limit", type=int, help="evaluate a seeded random subset of this many images")
    p.add_argument("--on-corrupt", choices=("skip", "error"), help="what to do with unreadable images")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="directory for the JSON report and PNG (default: <run>/eval)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report of the same name")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError
    from .evaluation import evaluate

    try:
        r = evaluate(args.checkpoint, data=args.data, root=args.data_root, split=args.split, weights=args.weights,
                     which=args.which, model=args.model, batch_size=args.batch_size, limit=args.limit,
                     on_corrupt=args.on_corrupt, num_workers=args.num_workers, device=args.device, out_dir=args.out,
                     progress=not args.no_progress, overwrite=args.overwrite)
    except OSError as exc:  # unreadable files, permissions: the user's to fix, not a traceback
        if isinstance(exc, FileNotFoundError):
            raise
        raise CLIError(f"{type(exc).__name__}: {exc}") from exc
    if "json_path" in r:  # rank 0 only under torchrun
        print(f"{r['model']} ({r['weights']} weights) on {r['data']} {r['split']}: {r['num_samples']} images, "
              f"top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  loss {r['loss']:.4f}  ECE {r['ece']:.4f}")
        print(f"report: {r['json_path']}")
    return 0

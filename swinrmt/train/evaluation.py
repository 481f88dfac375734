"""Evaluation: the sharded, all-reduced pass used during training, and the `swinrmt eval` entry point."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from ..atomic import write_json
from ..runtime import keep_freed_memory
from . import distributed
from .builders import autocast, build_model, check_labels, load_split, make_loader, model_norm_stats
from .checkpoint import CKPT_DIR, check_same_model, load_checkpoint, load_weights, resolve_checkpoint
from .metrics import EvalAccumulator, plot_confusion
from .recipe import Recipe


def check_model_metadata(spec: Any, shapes: dict[str, tuple[int, ...]], path: str | Path) -> None:
    """A checkpoint's model spec is untrusted input: bounded, then built on the meta device and matched against the
    weights' shapes, all before any parameter is allocated (a tampered spec would otherwise allocate gigabytes)."""
    from ..registry import check_fits_on_meta, check_untrusted_spec

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{path}: checkpoint metadata has no model spec")
    check_untrusted_spec(spec.get("num_classes"), spec.get("img_size"), spec.get("in_chans"), spec.get("overrides"),
                         str(path))
    check_fits_on_meta(lambda: build_model(spec, 0.0, 0), shapes, str(path))


@torch.no_grad()
def run_evaluation(model: nn.Module, loader: Any, num_classes: int, device: torch.device, precision: str,
                   desc: str = "eval", progress: bool = False) -> EvalAccumulator:
    """Sums over this rank's shard, then all_reduce: every sample counted exactly once across ranks."""
    was_training = model.training
    model.eval()
    acc = EvalAccumulator(num_classes, device=device)
    for x, y, _ in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        check_labels(y, num_classes)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(x)
        acc.update(logits, y)
    distributed.all_reduce_sum_(*acc.tensors())
    model.train(was_training)
    return acc


def evaluate(checkpoint: str | Path, *, data: str | None = None, root: str | None = None, split: str | None = None,
             weights: str = "auto", which: str = "best", model: str | None = None, batch_size: int | None = None,
             limit: int | None = None, on_corrupt: str | None = None, num_workers: int = 0, device: str = "auto",
             out_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint (file or run directory) on a dataset split (default: the run's own test split).

    `weights`: "auto" (EMA when the checkpoint has it), "ema" or "model". Writes `<stem>.json` and a confusion
    matrix PNG to `out_dir` (default: `<run>/eval/`) and returns the report. The name says what was evaluated
    (checkpoint, weights, data, split and any `--limit`); an existing report is replaced only with `overwrite`.
    """
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be auto, ema or model, got {weights!r}")
    owns_group = not distributed.is_initialized()
    dist_info = distributed.setup(device)
    if dist_info.device.type == "cpu":
        keep_freed_memory()
    try:
        path = resolve_checkpoint(checkpoint, which)
        ckpt = load_checkpoint(path)
        spec, recipe = ckpt.meta["model"], Recipe.from_dict(ckpt.meta["recipe"])
        if model is not None:
            check_same_model(spec, {**spec, "name": model}, path)
        use_ema = weights == "ema" or (weights == "auto" and ckpt.has("ema"))
        if use_ema and not ckpt.has("ema"):
            raise ValueError(f"checkpoint {path} has no EMA weights "
                             "(train with ema.enabled=true, or use --weights model)")
        prefix = "ema" if use_ema else "model"
        check_model_metadata(spec, ckpt.shapes(prefix), path)
        net = build_model(spec, 0.0, recipe.seed)
        load_weights(net, ckpt.tensors("ema" if use_ema else "model"), spec, spec, path)
        net.to(dist_info.device)

        d = recipe.data
        name = data or d.name
        split = split or d.test_split
        ds = load_split(name, split, root=root if data else (root or d.root), on_corrupt=on_corrupt or d.on_corrupt,
                        seed=d.split_seed, limit=limit if (limit or data) else d.limit_test, img_size=spec["img_size"],
                        num_classes=spec["num_classes"], verify=d.verify, show_warnings=dist_info.is_main)
        mean, std = model_norm_stats(spec["name"])
        _, _, loader = make_loader(ds, img_size=spec["img_size"], train=False, mean=mean, std=std, aug=d.aug,
                                   seed=recipe.seed,
                                   batch_size=batch_size or d.eval_batch_size or 2 * recipe.batch_size,
                                   num_workers=num_workers, dist_info=dist_info)
        acc = run_evaluation(net, loader, spec["num_classes"], dist_info.device, recipe.precision,
                             desc="eval", progress=progress and dist_info.is_main)
        classes = [str(c) for c in ds.classes][: spec["num_classes"]]
        classes += [str(i) for i in range(len(classes), spec["num_classes"])]
        report = {**acc.summary(classes), "checkpoint": str(path), "model": spec["name"],
                  "weights": "ema" if use_ema else "model", "data": name, "split": split,
                  "world_size": dist_info.world_size}
        if dist_info.is_main:
            if out_dir is None:
                out_dir = (path.parent.parent if path.parent.name == CKPT_DIR else path.parent) / "eval"
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{path.stem}-{report['weights']}-{Path(name.rstrip('/')).name.split('.')[0]}-{split}"
            if limit:
                stem += f"-limit{limit}"
            if (out_dir / f"{stem}.json").exists() and not overwrite:
                raise ValueError(f"{out_dir / f'{stem}.json'} exists (an earlier evaluation); pass --overwrite to "
                                 "replace it, or choose another --out")
            write_json(out_dir / f"{stem}.json", report)
            plot_confusion(report["confusion_matrix"], classes, out_dir / f"{stem}-confusion.png")
            report["json_path"] = str(out_dir / f"{stem}.json")
        return report
    finally:
        if owns_group:
            distributed.cleanup()

"""Building blocks shared by training and evaluation: datasets and loaders, models, small utilities."""
from __future__ import annotations

import sys
import warnings
from typing import Any, Sequence

import torch
import torch.nn as nn

from ..data.sampling import mix_seed
from . import distributed
from .recipe import Recipe

# Stream tags for `mix_seed(seed, TAG, ...)`: each random stream the trainer owns gets its own key space.
DROPOUT_STREAM, MIXUP_STREAM, SUBSET_STREAM = 1, 2, 3


def warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# -- data --------------------------------------------------------------------------------------------------------

class Limited(torch.utils.data.Dataset):
    """A seeded random subset that keeps the dataset's class metadata (for smoke runs and quick tests)."""

    def __init__(self, dataset: Any, limit: int, seed: int) -> None:
        g = torch.Generator().manual_seed(mix_seed(seed, SUBSET_STREAM, len(dataset)))
        self.indices = sorted(torch.randperm(len(dataset), generator=g)[:limit].tolist())
        self.dataset = dataset
        self.classes, self.num_classes = dataset.classes, dataset.num_classes
        self.targets = [int(dataset.targets[i]) for i in self.indices]

    @property
    def num_skipped(self) -> int:
        return getattr(self.dataset, "num_skipped", 0)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def load_split(name: str, split: str, *, root: str | None, on_corrupt: str, seed: int, limit: int | None,
               img_size: int | None, num_classes: int | None, verify: bool, show_warnings: bool,
               decode_cache: bool = False) -> Any:
    """`build_dataset` + decode-once cache + optional subset + up-front decode check + label-range check.

    Decoding every image once before training turns a corrupt file into an error (or a counted skip) now, not in
    epoch 37; a label beyond the head becomes a one-line error instead of a CUDA device assert.
    """
    from ..data import build_dataset

    ds = build_dataset(name, split, root=root, on_corrupt=on_corrupt, seed=seed, img_size=img_size)
    if decode_cache:
        from ..data.decoded import decoded

        with warnings.catch_warnings():  # corrupt files are counted once, below; a rebuilt cache still warns
            warnings.filterwarnings("ignore", message=".*skipping.*", category=RuntimeWarning)
            ds = decoded(ds)
    if limit is not None and limit < len(ds):
        ds = Limited(ds, limit, seed)
    if verify:
        with warnings.catch_warnings():  # the count is reported once, below
            warnings.simplefilter("ignore", RuntimeWarning)
            if hasattr(ds, "verify"):
                ds.verify()
            else:
                for i in range(len(ds)):
                    ds[i]
    if len(ds) == 0:
        raise ValueError(f"dataset {name!r} split {split!r} has no readable images")
    if show_warnings and getattr(ds, "num_skipped", 0):
        warn(f"skipped {ds.num_skipped} corrupt or unreadable image(s) in {name} ({split}); "
             "set data.on_corrupt=error to stop on them instead")
    n = num_classes if num_classes is not None else ds.num_classes
    targets = torch.as_tensor(list(ds.targets), dtype=torch.int64)
    bad = targets[(targets < 0) | (targets >= n)]
    if bad.numel():
        raise ValueError(f"dataset {name!r} ({split}) has label {int(bad[0])} out of range for a {n}-class model "
                         f"({bad.numel()} label(s) outside [0, {n - 1}])")
    return ds


def make_loader(ds: Any, *, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
                aug: dict | None, seed: int, batch_size: int, num_workers: int, dist_info: distributed.DistInfo,
                ) -> tuple[Any, Any, Any]:
    """(samples, sampler, loader): training shards a (seed, epoch) permutation; evaluation sees each sample once."""
    from ..data import EvalShardSampler, ResumableSampler, SeededSamples, build_loader, build_transform

    transform = build_transform(img_size, train, mean=mean, std=std, aug=aug)
    samples = SeededSamples(ds, transform, seed)
    if train:
        sampler = ResumableSampler(len(ds), shuffle=True, seed=seed, rank=dist_info.rank,
                                   world_size=dist_info.world_size, drop_last=True, batch_size=batch_size)
    else:
        sampler = EvalShardSampler(len(ds), dist_info.rank, dist_info.world_size)
    loader = build_loader(samples, sampler, batch_size, num_workers=num_workers, drop_last=train,
                          pin_memory=dist_info.device.type == "cuda")
    return samples, sampler, loader


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"label {int(y.max() if int(y.max()) >= num_classes else y.min())} out of range "
                         f"for a {num_classes}-class model")


# -- model -------------------------------------------------------------------------------------------------------

def model_spec(recipe: Recipe) -> dict[str, Any]:
    """What identifies an architecture (checked against checkpoints); needs a resolved recipe."""
    return {"name": recipe.model.name, "num_classes": recipe.model.num_classes, "img_size": recipe.img_size,
            "in_chans": 3, "overrides": dict(recipe.model.overrides)}


def build_model(spec: dict[str, Any], drop_path_rate: float = 0.0, seed: int = 0) -> nn.Module:
    """Seeded `create_model`, so every rank (and a restarted run) starts from the same initial weights."""
    from .. import create_model

    torch.manual_seed(seed)
    return create_model(spec["name"], num_classes=spec["num_classes"], img_size=spec["img_size"],
                        in_chans=spec["in_chans"], drop_path_rate=drop_path_rate, **spec["overrides"])


def model_norm_stats(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from ..registry import get_entry

    cfg = get_entry(name).default_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


def autocast(device: torch.device, precision: str) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


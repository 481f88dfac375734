"""Training recipes: one YAML file -> one typed dataclass tree.

A recipe is the whole protocol (docs/design.md §5): every family trains from the same object, so a comparison differs only in
`model.name`. Loading is strict on purpose: a misspelt key would otherwise silently train with a default, so unknown
keys and wrong types are one-line errors naming the key.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import yaml


@dataclass
class ModelCfg:
    """What `swinrmt.create_model` receives, plus how the trainer wraps the model."""

    name: str = "gated_swinrmt_swat_nano"
    num_classes: int | None = None  # None: the dataset's number of classes
    drop_path_rate: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)  # extra create_model keywords (docs/design.md §7 options)
    grad_checkpointing: bool = False
    compile: bool = False
    sync_bn: bool = True  # convert BatchNorm to SyncBatchNorm when world > 1 on GPU (unsupported on CPU)

    def check(self, at: str) -> None:
        _require(self.num_classes is None or self.num_classes >= 1, at, "num_classes", self.num_classes, ">= 1")
        _require(0.0 <= self.drop_path_rate < 1.0, at, "drop_path_rate", self.drop_path_rate, "in [0, 1)")


@dataclass
class DataCfg:
    """Dataset, splits and augmentation; `aug` goes verbatim to `swinrmt.data.build_transform`."""

    name: str = "digits"  # a built-in name or a path / archive (see swinrmt.data.build_dataset)
    root: str | None = None
    split_seed: int = 0  # seeds the splits swinrmt makes itself (digits, mini-imagenet): keep fixed across runs
    train_split: str = "train"
    test_split: str = "test"
    on_corrupt: Literal["skip", "error"] = "skip"
    verify: bool = True  # decode every image once before training: corrupt files surface (or are counted) at once
    decode_cache: bool = True  # serve same-size image files from a decode-once uint8 cache (swinrmt.data.decoded)
    limit_train: int | None = None  # keep a seeded random subset of this many images (smoke tests)
    limit_test: int | None = None
    num_workers: int = 0
    eval_batch_size: int | None = None  # None: 2 x batch_size
    aug: dict[str, Any] = field(default_factory=dict)

    def check(self, at: str) -> None:
        for key in ("limit_train", "limit_test", "eval_batch_size"):
            v = getattr(self, key)
            _require(v is None or v >= 1, at, key, v, ">= 1")
        _require(self.num_workers >= 0, at, "num_workers", self.num_workers, ">= 0")


@dataclass
class OptimCfg:
    """AdamW (default) or SGD. Norms, biases and decay-rate parameters never get weight decay."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3  # peak learning rate, absolute (not rescaled with the global batch)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    clip_grad_norm: float | None = None  # None: no clipping

    def check(self, at: str) -> None:
        _require(self.lr > 0, at, "lr", self.lr, "> 0")
        _require(self.weight_decay >= 0, at, "weight_decay", self.weight_decay, ">= 0")
        _require(all(0 <= b < 1 for b in self.betas), at, "betas", list(self.betas), "in [0, 1)")
        _require(self.eps > 0, at, "eps", self.eps, "> 0")
        _require(0 <= self.momentum < 1, at, "momentum", self.momentum, "in [0, 1)")
        c = self.clip_grad_norm
        _require(c is None or c > 0, at, "clip_grad_norm", c, "> 0 or null")


@dataclass
class SchedCfg:
    """Per-step learning-rate schedule: linear warmup, then cosine to `min_lr` or step decay."""

    name: Literal["cosine", "step"] = "cosine"
    warmup_epochs: float = 0.0
    # The warm-up as a share of all steps instead (replaces warmup_epochs): carries over between budgets, so a
    # 2-epoch pilot and a 6-epoch run warm up over the same part of their schedule.
    warmup_frac: float | None = None
    warmup_start_factor: float = 0.01  # warmup starts at lr * this
    min_lr: float = 0.0  # cosine floor
    decay_epochs: float = 30.0  # step: multiply by decay_rate every decay_epochs
    decay_rate: float = 0.1

    def check(self, at: str) -> None:
        _require(self.warmup_epochs >= 0, at, "warmup_epochs", self.warmup_epochs, ">= 0")
        _require(self.warmup_frac is None or 0 <= self.warmup_frac < 1, at, "warmup_frac", self.warmup_frac,
                 "in [0, 1) or null")
        _require(self.warmup_frac is None or self.warmup_epochs == 0, at, "warmup_frac", self.warmup_frac,
                 "null when warmup_epochs is set (give one of the two)")
        _require(0 < self.warmup_start_factor <= 1, at, "warmup_start_factor", self.warmup_start_factor, "in (0, 1]")
        _require(self.min_lr >= 0, at, "min_lr", self.min_lr, ">= 0")
        _require(self.decay_epochs > 0, at, "decay_epochs", self.decay_epochs, "> 0")
        _require(0 < self.decay_rate <= 1, at, "decay_rate", self.decay_rate, "in (0, 1]")


@dataclass
class MixupCfg:
    """Mixup / CutMix (off when both alphas are 0); label smoothing then moves into the soft targets."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5

    def check(self, at: str) -> None:
        _require(self.mixup_alpha >= 0, at, "mixup_alpha", self.mixup_alpha, ">= 0")
        _require(self.cutmix_alpha >= 0, at, "cutmix_alpha", self.cutmix_alpha, ">= 0")
        _require(0 <= self.prob <= 1, at, "prob", self.prob, "in [0, 1]")
        _require(0 <= self.switch_prob <= 1, at, "switch_prob", self.switch_prob, "in [0, 1]")

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass
class EmaCfg:
    """Exponential moving average of the weights, updated after every optimizer step."""

    enabled: bool = False
    decay: float = 0.9998
    warmup: bool = True  # decay_t = min(decay, (1 + t) / (10 + t)): early averages are not dominated by the init

    def check(self, at: str) -> None:
        _require(0 < self.decay < 1, at, "decay", self.decay, "in (0, 1)")


@dataclass
class CudaCfg:
    """How a CUDA run carries out the arithmetic (no effect on CPU runs): see `swinrmt.train.cuda_settings`."""

    tf32: bool = True  # float32 matmuls and cuDNN convolutions on TF32 tensor cores (false: strict IEEE float32)
    deterministic: bool = False  # deterministic CUDA kernels (exact resume on CUDA; slower backward)

    def check(self, at: str) -> None:
        pass


@dataclass
class Recipe:
    """The complete training protocol. `batch_size` is per process: the global batch is batch_size x world size."""

    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    img_size: int | None = None  # None: the dataset's native size
    epochs: int = 10
    batch_size: int = 64
    optim: OptimCfg = field(default_factory=OptimCfg)
    sched: SchedCfg = field(default_factory=SchedCfg)
    label_smoothing: float = 0.0
    mixup: MixupCfg = field(default_factory=MixupCfg)
    ema: EmaCfg = field(default_factory=EmaCfg)
    precision: Literal["fp32", "bf16"] = "fp32"
    seed: int = 0
    log_every_steps: int = 10
    # Attention health (swinrmt.models.health) in every step record, probed on this many fixed test images; 0: off.
    health_images: int = 16
    ckpt_every_steps: int = 0  # 0: checkpoint at epoch ends only
    eval_every_epochs: int = 1  # the last epoch is always evaluated
    cpu_threads: int | None = None  # torch intra-op threads when training on CPU; None: torch's default
    cuda: CudaCfg = field(default_factory=CudaCfg)  # TF32 and determinism of CUDA runs

    def check(self, at: str) -> None:
        _require(self.img_size is None or self.img_size >= 8, at, "img_size", self.img_size, ">= 8")
        _require(self.epochs >= 1, at, "epochs", self.epochs, ">= 1")
        _require(self.batch_size >= 1, at, "batch_size", self.batch_size, ">= 1")
        _require(0 <= self.label_smoothing < 1, at, "label_smoothing", self.label_smoothing, "in [0, 1)")
        _require(self.log_every_steps >= 1, at, "log_every_steps", self.log_every_steps, ">= 1")
        _require(self.health_images >= 0, at, "health_images", self.health_images, ">= 0")
        _require(self.ckpt_every_steps >= 0, at, "ckpt_every_steps", self.ckpt_every_steps, ">= 0")
        _require(self.eval_every_epochs >= 1, at, "eval_every_epochs", self.eval_every_epochs, ">= 1")
        _require(self.cpu_threads is None or self.cpu_threads >= 1, at, "cpu_threads", self.cpu_threads, ">= 1")

    # -- conversions -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        return _build(cls, data, "")

    def with_overrides(self, overrides: Sequence[str]) -> "Recipe":
        """A copy with `a.b=value` overrides applied; values parse as YAML (`1e-3`, `null`, `[1, 2]`, `true`)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-3)")
            _set_path(data, key, yaml.safe_load(raw) if raw.strip() else None)
        return Recipe.from_dict(data)


# -- loading ---------------------------------------------------------------------------------------------------

def shipped_recipes() -> list[str]:
    """Names of the recipes shipped inside the package (`swinrmt/recipes/*.yaml`)."""
    root = resources.files("swinrmt") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """A shipped recipe by name (`quick`, `cifar10`, ...) or a YAML file, then `overrides` on top."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"recipe file not found: {path}")
        text = path.read_text()
    else:
        res = resources.files("swinrmt") / "recipes" / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ValueError(f"unknown recipe {str(name_or_path)!r}; shipped recipes: {', '.join(shipped_recipes())} "
                             "(or pass a path to a .yaml file)")
        text = res.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"recipe {name_or_path}: invalid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"recipe {name_or_path}: expected a mapping at the top level, got {type(data).__name__}")
    return Recipe.from_dict(data).with_overrides(overrides)


# -- strict construction ---------------------------------------------------------------------------------------

def _require(ok: bool, at: str, key: str, value: Any, must: str) -> None:
    if not ok:
        raise ValueError(f"recipe key '{at}{key}': value {value!r} must be {must}")


def _build(cls: type, data: Any, at: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"recipe key '{at.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            where = f" under '{at.rstrip('.')}'" if at else ""
            raise ValueError(f"unknown recipe key '{at}{key}'; accepted keys{where}: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], f"{at}{key}")
    obj = cls(**kwargs)
    obj.check(at)
    return obj


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} {_type_name(args[0])}s"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


class _NotFinite(ValueError):
    """A float key given inf or nan (kept as its own message under `float | None`)."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            try:
                return _coerce(value, inner[0], key)
            except _NotFinite:
                raise
            except ValueError:
                pass
    elif origin is Literal:
        if value in args:
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    elif origin is dict:
        if isinstance(value, dict):
            return copy.deepcopy(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML reads `1e-3` (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # inf / nan pass every `> 0` check and train to NaN
                raise _NotFinite(f"recipe key '{key}': value {value!r} must be a finite number")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this module does not know
        raise TypeError(f"recipe key '{key}': unsupported field type {tp}")
    raise ValueError(f"recipe key '{key}': expected {_type_name(tp)}, got {value!r}")


def _set_path(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and part not in node:
            node[part] = child = {}  # an unknown section: _build reports it by name
        if not isinstance(child, dict):
            raise ValueError(f"recipe key '{'.'.join(parts[: i + 1])}' is a value, not a section (override {key!r})")
        node = child
    node[parts[-1]] = value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

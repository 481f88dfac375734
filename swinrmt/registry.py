"""Model registry: one name -> one builder and its default configuration.

Sizes live here (in the registered builders) and nowhere else, so that `create_model`, the CLI, timm registration and
the trainer all see the same catalogue.
"""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and the defaults a user gets without overrides."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    default_cfg: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(family: str, **default_cfg: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under its function name; `default_cfg` holds num_classes, img_size and friends."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if fn.__name__ in _REGISTRY:
            raise ValueError(f"model {fn.__name__!r} is registered twice")
        cfg = {"num_classes": 1000, "img_size": 224, "in_chans": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        cfg.update(default_cfg)
        _REGISTRY[fn.__name__] = ModelEntry(fn.__name__, family, fn, cfg)
        return fn

    return wrap


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register_model decorators.
    from . import models  # noqa: F401


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style pattern and/or family."""
    _ensure_loaded()
    names = sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry entry for `name`, or a ValueError that names close matches and where to list the rest."""
    _ensure_loaded()
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} Available: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def parse_model_options(items: Sequence[str]) -> dict[str, Any]:
    """CLI `--set option=value` pairs -> create_model keywords; values parse as YAML (`4`, `true`, `null`, `[1, 2]`),
    the same rule recipe overrides follow."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects option=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    num_classes: int | None = None,
    img_size: int | Sequence[int] | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] = (0, 1, 2, 3),
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, timm-style.

    `img_size` picks the stem stride and window size (see `swinrmt.models.backbone.default_geometry`); the model still
    accepts any input size. `overrides` reach the model constructor, so every docs/design.md §7 option is one
    keyword away.
    """
    entry = get_entry(name)
    if pretrained:
        raise ValueError(
            "pretrained=True: no hosted weights exist yet; load your own with swinrmt.from_pretrained(dir_or_hub_id)"
        )
    cfg = dict(entry.default_cfg)
    kwargs: dict[str, Any] = {
        "num_classes": cfg["num_classes"] if num_classes is None else num_classes,
        "img_size": cfg["img_size"] if img_size is None else img_size,
        "in_chans": cfg["in_chans"] if in_chans is None else in_chans,
    }
    kwargs.update(overrides)  # the model's constructor names any option it does not take
    try:
        model = entry.builder(**kwargs)
    except TypeError as exc:  # e.g. embed_dims="foo" fails deep inside as "unsupported operand type(s) for //"
        if not overrides:
            raise
        opts = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise TypeError(f"model {name!r} cannot be built with options {opts}: {exc}") from None
    model.default_cfg = {**cfg, **{k: kwargs[k] for k in ("num_classes", "img_size", "in_chans")}}
    model.pretrained_cfg = model.default_cfg
    model.model_name = name
    model.model_overrides = {k: v for k, v in overrides.items() if k not in ("device", "dtype")}  # not config
    if features_only:
        from .models.features import FeatureExtractor

        return FeatureExtractor(model, out_indices=out_indices)
    return model


# -- models from untrusted metadata --------------------------------------------------------------------------------
#: Bounds on a model spec read from a file (a checkpoint's metadata, a config.json): far above any real model, far
#: below what would exhaust memory or hang building modules. A tampered file then costs one clear line.
SPEC_LIMITS = {"num_classes": 1_000_000, "img_size": 8192, "in_chans": 64}
MAX_OPTION_INT = 1 << 16  # any integer in the model options (widths, heads, window sizes, per-stage depths)
MAX_BLOCKS = 1024  # the sum of a per-stage `depths` list


def check_untrusted_spec(num_classes: Any, img_size: Any, in_chans: Any, overrides: Any, where: str) -> None:
    """One-line ValueError naming `where` if a model spec read from a file is out of bounds (see SPEC_LIMITS)."""
    for key, value in (("num_classes", num_classes), ("img_size", img_size), ("in_chans", in_chans)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SPEC_LIMITS[key]:
            raise ValueError(f"{where}: {key} {value!r} is not an integer in [1, {SPEC_LIMITS[key]}] "
                             "(damaged or tampered metadata?)")
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: model overrides must be a mapping, got {overrides!r}")

    def walk(key: str, value: Any, depth: int = 0) -> None:
        if depth > 4 or (isinstance(value, (list, tuple)) and len(value) > 64):
            raise ValueError(f"{where}: model option {key} is nested or long beyond any model (tampered metadata?)")
        if isinstance(value, (list, tuple)):
            for v in value:
                walk(key, v, depth + 1)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OPTION_INT:
            raise ValueError(f"{where}: model option {key}={value!r} exceeds {MAX_OPTION_INT} (tampered metadata?)")

    for key, value in overrides.items():
        walk(key, value)
        if key == "depths" and isinstance(value, (list, tuple)):
            total = sum(v for v in value if isinstance(v, int))
            if total > MAX_BLOCKS:
                raise ValueError(f"{where}: depths {list(value)} add up to {total} blocks, more than {MAX_BLOCKS} "
                                 "(tampered metadata?)")


def check_fits_on_meta(build: Callable[[], nn.Module], shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """Build the model on the meta device (no memory) and compare its state_dict to the weights' shapes: metadata
    that does not match the weights is refused before a single parameter is allocated."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{where}: the model metadata does not build a model ({exc})") from None
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(own) - set(shapes))
    unexpected = sorted(set(shapes) - set(own))
    wrong = [f"{k} {tuple(shapes[k])} vs model {own[k]}" for k in own if k in shapes and tuple(shapes[k]) != own[k]]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} shape-mismatched (e.g. {wrong[0]})" if wrong else ""]
        raise ValueError(f"weights in {where} do not fit the model its metadata describes: "
                         + ", ".join(p for p in parts if p))

"""Register every swinrmt model with timm: `import swinrmt.timm_compat`, then `timm.create_model("rmt_tiny")`.

timm is optional: importing this module without timm raises ImportError; nothing else in swinrmt imports it.
Registration goes through timm's own API: one entrypoint per model passed to `timm.models.register_model`, with its
pretrained cfg (input size, mean/std, pool size, first conv, classifier) from `generate_default_cfgs`, and the model
built by `build_model_with_cfg`. `features_only=True` defaults to timm's `FeatureGetterNet` (`feature_cls="getter"`),
which calls the models' `forward_intermediates` / `prune_intermediate_layers`, so stage maps come out NCHW.

Saved models (`save_pretrained`) use timm's Hub layout, so `timm.create_model("local-dir:DIR", pretrained=True)`
loads them too. No hosted weights exist: `pretrained=True` without a local source leaves the weights random (timm
logs a warning).
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import timm  # noqa: F401  (ImportError here is the documented "timm not installed" signal)
from timm.models import build_model_with_cfg, generate_default_cfgs, is_model, register_model

from .hub import default_pretrained_cfg
from .registry import create_model, get_entry, list_models

__all__ = ["register", "registered"]

default_cfgs: dict = {}  # timm's register_model reads `<module>.default_cfgs[name]`
_REGISTERED: list[str] = []


def _builder(name: str) -> Callable[..., Any]:
    def build(**kwargs: Any):
        kwargs.pop("pretrained_cfg", None)
        model = create_model(name, **kwargs)
        model.swinrmt_cfg = dict(model.default_cfg)  # timm replaces default_cfg with its pretrained cfg
        return model

    return build


def _entrypoint(name: str) -> Callable[..., Any]:
    def entry(pretrained: bool = False, **kwargs: Any):
        img_size = kwargs.get("img_size", get_entry(name).default_cfg["img_size"])
        in_chans = kwargs.get("in_chans", get_entry(name).default_cfg["in_chans"])
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        if "img_size" in kwargs or "in_chans" in kwargs:
            hw = tuple(img_size) if isinstance(img_size, (list, tuple)) else (img_size, img_size)
            cfg = default_pretrained_cfg(name, hw, in_chans)
            overlay.setdefault("input_size", cfg["input_size"])
            overlay.setdefault("pool_size", cfg["pool_size"])
        kwargs.setdefault("feature_cls", "getter")
        if not kwargs.get("features_only"):
            kwargs.pop("feature_cls")
            kwargs.pop("out_indices", None)
        return build_model_with_cfg(_builder(name), name, pretrained, pretrained_cfg_overlay=overlay,
                                    feature_cfg=dict(out_indices=(0, 1, 2, 3)), **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = f"timm entrypoint for swinrmt's {name}."
    return entry


def register() -> list[str]:
    """Register every swinrmt model with timm (idempotent); returns the names."""
    names = list_models()
    cfgs = {}
    for name in names:
        cfg = default_pretrained_cfg(name)
        cfg.pop("fixed_input_size")
        cfgs[name] = {**cfg, "origin_url": "https://arxiv.org/abs/2604.06014",
                      "paper_name": "Gated-SwinRMT" if name.startswith("gated") else None}
    default_cfgs.update(generate_default_cfgs(cfgs))
    mod = sys.modules[__name__]
    for name in names:
        if name in _REGISTERED:
            continue
        if is_model(name) and name not in getattr(mod, "__all__", []):
            raise ValueError(f"timm already has a model named {name!r}; not overwriting it")
        fn = _entrypoint(name)
        setattr(mod, name, fn)
        register_model(fn)
        _REGISTERED.append(name)
    return list(_REGISTERED)


def registered() -> list[str]:
    return list(_REGISTERED)


register()

"""Save / load models in the Hugging Face Hub layout, and convert trainer checkpoints into it.

A saved model is a directory holding

- ``config.json``: ``architecture`` (a registered name), ``num_classes``, ``img_size``, ``in_chans``, ``overrides``
  (the extra ``create_model`` keywords), ``model_args`` (the same, as timm reads them) and ``pretrained_cfg``
  (input_size, mean, std, first_conv, classifier, ...), in the layout timm itself writes, so
  ``timm.create_model("local-dir:DIR", pretrained=True)`` also works once ``swinrmt.timm_compat`` is imported;
- ``model.safetensors``: the state dict (safetensors only: loading never unpickles anything);
- ``README.md``: a short model card.

Loading from a local directory needs no network; a hub id ``org/name`` is fetched with ``huggingface_hub``
(imported lazily, only then).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from .atomic import atomic_write
from .registry import check_fits_on_meta, check_untrusted_spec

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT = "swinrmt-hub/1"


# -- config ------------------------------------------------------------------------------------------------------
def default_pretrained_cfg(name: str, img_size: int | Sequence[int] | None = None, in_chans: int | None = None,
                           num_classes: int | None = None) -> dict[str, Any]:
    """timm-style pretrained cfg of a registered model: input size, mean/std, pool size, first conv, classifier."""
    from .models.backbone import default_geometry
    from .registry import get_entry

    entry = get_entry(name)
    cfg = entry.default_cfg
    img_size = cfg["img_size"] if img_size is None else img_size
    hw = tuple(img_size) if isinstance(img_size, (list, tuple)) else (int(img_size), int(img_size))
    in_chans = cfg["in_chans"] if in_chans is None else in_chans
    reduction = default_geometry(hw)[0] * 8  # stem stride, then three stride-2 downsamplings
    return {
        "input_size": (int(in_chans), *hw),
        "pool_size": tuple(-(-s // reduction) for s in hw),
        "crop_pct": 0.875 if min(hw) >= 112 else 1.0,
        "interpolation": "bicubic",
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
        "num_classes": cfg["num_classes"] if num_classes is None else num_classes,
        "first_conv": "stem.proj" if entry.family == "swin" else "stem.proj.0",
        "classifier": "head",
        "fixed_input_size": False,
        "license": "apache-2.0",
        "paper_ids": "arXiv:2604.06014",
    }


def _jsonable(value: Any, key: str) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, key) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"option {key}={value!r} cannot be written to {CONFIG_NAME} (only numbers, strings, booleans, "
                     f"None and lists of them)")


def model_config(model: nn.Module) -> dict[str, Any]:
    """The config.json content for a model built by `create_model` (or `timm.create_model` via timm_compat)."""
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError("save_pretrained needs a model built by swinrmt.create_model (it has no model_name)")
    if not hasattr(model, "stem") and hasattr(model, "model"):
        raise ValueError("save the backbone, not its features_only wrapper: save_pretrained(extractor.model) "
                         "is not supported because the wrapper has dropped the head; save the full model instead")
    dcfg = dict(getattr(model, "swinrmt_cfg", None) or getattr(model, "default_cfg", {}) or {})
    img_size = dcfg.get("img_size")
    if img_size is None:
        img_size = list(dcfg.get("input_size", (3, 224, 224))[1:])
    in_chans = int(getattr(model, "in_chans", dcfg.get("in_chans", 3)))
    num_classes = int(getattr(model, "num_classes", dcfg.get("num_classes", 1000)))
    overrides = {k: _jsonable(v, k) for k, v in sorted(getattr(model, "model_overrides", {}).items())}
    if getattr(model, "global_pool", "avg") != "avg":
        overrides["global_pool"] = model.global_pool
    img_size = _jsonable(img_size, "img_size")
    pretrained_cfg = default_pretrained_cfg(name, img_size, in_chans, num_classes)
    for k in ("mean", "std"):
        if k in dcfg:
            pretrained_cfg[k] = tuple(dcfg[k])
    from . import __version__

    return {
        "architecture": name,
        "num_classes": num_classes,
        "img_size": img_size,
        "in_chans": in_chans,
        "overrides": overrides,
        "num_features": int(getattr(model, "num_features", 0)),
        "model_args": {"img_size": img_size, "in_chans": in_chans, **overrides},
        "pretrained_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in pretrained_cfg.items()},
        "library_name": "swinrmt",
        "swinrmt_version": __version__,
        "format": FORMAT,
    }


def validate_config(cfg: Any, where: str) -> dict[str, Any]:
    """Check a config.json body; one-line ValueError naming the file on anything wrong."""
    from .registry import list_models

    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(cfg).__name__}")
    arch = cfg.get("architecture")
    if not isinstance(arch, str):
        raise ValueError(f"{where}: no 'architecture' (the registered model name)")
    if arch not in list_models():
        raise ValueError(f"{where}: unknown architecture {arch!r}; `swinrmt models` lists the registered ones")
    for key, kind in (("num_classes", int), ("in_chans", int)):
        if key in cfg and not isinstance(cfg[key], kind):
            raise ValueError(f"{where}: {key} must be an integer, got {cfg[key]!r}")
    if not isinstance(cfg.get("overrides", {}), dict):
        raise ValueError(f"{where}: overrides must be an object, got {cfg['overrides']!r}")
    check_untrusted_spec(cfg.get("num_classes"), cfg.get("img_size"), cfg.get("in_chans"), cfg.get("overrides"),
                         where)
    return cfg


# -- writing -----------------------------------------------------------------------------------------------------
def state_dict_for_safetensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors; shared storage (tied weights) cloned, which safetensors requires."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu").contiguous()
        if v.numel() and v.data_ptr() in seen:
            v = v.clone()
        seen.add(v.data_ptr())
        out[k] = v
    return out


def _model_card(cfg: dict[str, Any], metadata: dict[str, Any]) -> str:
    extra = "".join(f"- {k}: {v}\n" for k, v in metadata.items())
    return (f"---\nlibrary_name: swinrmt\nlicense: apache-2.0\ntags:\n- image-classification\n- swinrmt\n---\n\n"
            f"# {cfg['architecture']}\n\n{cfg['num_classes']} classes, {cfg['in_chans']}-channel input, trained at "
            f"img_size={cfg['img_size']}; overrides: {json.dumps(cfg['overrides'])}.\n\n{extra}\n"
            f"```python\nimport swinrmt\nmodel = swinrmt.from_pretrained(\"path/or/org-name\")\n```\n")


def save_pretrained(model: nn.Module, save_directory: str | os.PathLike, *, overwrite: bool = False,
                    **metadata: Any) -> Path:
    """Write `config.json`, `model.safetensors` and `README.md` to `save_directory`; returns the directory.

    Refuses an existing non-empty directory unless `overwrite=True`. Each file is written to a temp file in the
    directory and renamed into place (weights first, config last: a config.json means the save completed).
    `metadata` (JSON-serialisable) is stored under "metadata" in config.json and listed in the model card.
    """
    from safetensors.torch import save_file

    out = Path(save_directory)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} already exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    cfg = model_config(model)
    if metadata:
        cfg["metadata"] = {k: _jsonable(v, k) for k, v in metadata.items()}
    out.mkdir(parents=True, exist_ok=True)
    tensors = state_dict_for_safetensors(model)
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(out / CARD_NAME, lambda tmp: Path(tmp).write_text(_model_card(cfg, metadata)))
    atomic_write(out / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=2) + "\n"))
    return out


# -- reading -----------------------------------------------------------------------------------------------------
def is_pretrained_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file()


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return (len(parts) == 2 and all(parts) and not s.startswith((".", "~"))
            and all(c.isalnum() or c in "-_." for part in parts for c in part))


def resolve_pretrained(source: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | None = None) -> Path:
    """A local directory as is; a hub id `org/name` downloaded (config + weights only) with huggingface_hub."""
    p = Path(source).expanduser()
    if p.is_dir():
        if not (p / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{p} has no {CONFIG_NAME}: not a save_pretrained directory")
        return p
    if p.exists():
        raise ValueError(f"{p} is a file; from_pretrained wants a directory with {CONFIG_NAME} + {WEIGHTS_NAME}")
    if not _looks_like_hub_id(str(source)):
        raise FileNotFoundError(f"no such directory: {source}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(f"{source!r} is not a local directory; loading a hub id needs `pip install huggingface_hub`"
                         ) from None
    return Path(snapshot_download(repo_id=str(source), revision=revision, cache_dir=cache_dir,
                                  allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return validate_config(cfg, str(path))


def load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """`load_state_dict(strict=True)` with missing / unexpected / shape-mismatched keys as one clear line."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
              if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(shapes)} shape-mismatched (e.g. {shapes[0]})" if shapes else ""]
        raise ValueError(f"weights in {where} do not fit the model: " + ", ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)


def _shapes(weights: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header (nothing read or allocated); one line for a foreign file."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # safetensors' own error type for a truncated / foreign file
        raise ValueError(f"{weights} is not a readable safetensors file ({exc})") from None


def build_from_config(cfg: dict[str, Any], **kwargs: Any) -> nn.Module:
    from .registry import create_model

    return create_model(cfg["architecture"], num_classes=cfg.get("num_classes"), img_size=cfg.get("img_size"),
                        in_chans=cfg.get("in_chans"), **{**cfg.get("overrides", {}), **kwargs})


def from_pretrained(source: str | os.PathLike, *, num_classes: int | None = None, features_only: bool = False,
                    out_indices: Sequence[int] = (0, 1, 2, 3), revision: str | None = None,
                    cache_dir: str | None = None, **overrides: Any) -> nn.Module:
    """Load a model saved by `save_pretrained` (a local directory, or a Hugging Face Hub id `org/name`).

    Weights are read with safetensors only and loaded strictly. `num_classes` different from the saved one replaces
    the classifier after loading (fine-tuning); `features_only=True` returns the stage feature extractor.
    `overrides` reach `create_model` (e.g. `drop_path_rate=0.1`); ones that change parameter shapes fail the
    strict load with a clear message. The model is returned in eval mode.
    """
    from safetensors.torch import load_file

    directory = resolve_pretrained(source, revision=revision, cache_dir=cache_dir)
    cfg = read_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    check_fits_on_meta(lambda: build_from_config(cfg, **overrides), _shapes(weights), str(weights))
    model = build_from_config(cfg, **overrides)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors' own error type for a truncated / foreign file
        raise ValueError(f"{weights} is not a readable safetensors file ({exc})") from None
    load_state(model, state, str(weights))
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    model.eval()
    if features_only:
        from .models.features import FeatureExtractor

        return FeatureExtractor(model, out_indices=out_indices)
    return model


# -- trainer checkpoints -----------------------------------------------------------------------------------------
WEIGHT_CHOICES = ("auto", "ema", "model")


def load_trainer_checkpoint(checkpoint: str | os.PathLike, *, weights: str = "auto",
                            which: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Build the model of a trainer checkpoint (run dir or .safetensors file) and load its weights.

    `weights`: "auto" = EMA when the checkpoint has it, else the raw model. Returns (model in eval mode, info).
    """
    from .train.checkpoint import load_checkpoint, resolve_checkpoint

    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    path = resolve_checkpoint(checkpoint, which)
    ckpt = load_checkpoint(path)
    spec = ckpt.meta.get("model")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"{path}: checkpoint metadata has no model spec")
    use_ema = weights == "ema" or (weights == "auto" and ckpt.has("ema"))
    if use_ema and not ckpt.has("ema"):
        raise ValueError(f"{path} has no EMA weights (use weights='model')")
    cfg = validate_config({"architecture": spec["name"], "num_classes": spec["num_classes"],
                           "img_size": spec["img_size"], "in_chans": spec.get("in_chans", 3),
                           "overrides": dict(spec.get("overrides", {}))}, str(path))
    check_fits_on_meta(lambda: build_from_config(cfg), ckpt.shapes("ema" if use_ema else "model"), str(path))
    model = build_from_config(cfg)
    load_state(model, ckpt.tensors("ema" if use_ema else "model"), str(path))
    model.eval()
    info = {"checkpoint": str(path), "weights": "ema" if use_ema else "model", "epoch": ckpt.meta.get("epoch"),
            "step": ckpt.meta.get("step")}
    best = ckpt.meta.get("best")
    if isinstance(best, (int, float, str)) or best is None:
        info["best"] = best
    return model, info


def convert_checkpoint(checkpoint: str | os.PathLike, save_directory: str | os.PathLike, *, weights: str = "auto",
                       which: str = "best", overwrite: bool = False) -> Path:
    """Trainer checkpoint (run dir or file) -> a `save_pretrained` directory."""
    model, info = load_trainer_checkpoint(checkpoint, weights=weights, which=which)
    return save_pretrained(model, save_directory, overwrite=overwrite, **{f"source_{k}": v for k, v in info.items()})


def load_any(source: str | os.PathLike, *, weights: str = "auto", which: str = "best") -> nn.Module:
    """A save_pretrained directory / hub id, or a trainer run directory / checkpoint file -> model in eval mode."""
    p = Path(source)
    if is_pretrained_dir(p):
        return from_pretrained(p)
    if p.is_file() or (p.is_dir() and (p / "checkpoints").is_dir()):
        return load_trainer_checkpoint(p, weights=weights, which=which)[0]
    if p.is_dir():
        raise FileNotFoundError(f"{p} is neither a save_pretrained directory ({CONFIG_NAME}) nor a trainer run "
                                f"directory (checkpoints/)")
    return from_pretrained(str(source))

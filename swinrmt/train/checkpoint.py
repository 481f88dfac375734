"""Checkpoints: one safetensors file per checkpoint, written atomically.

All tensors (model, EMA, optimizer moments, RNG states) live in the safetensors body under a prefix (`model.`, `ema.`,
`optim.<param>.<key>`, `rng.`); everything else (model spec, recipe, loader position, scheduler, optimizer groups)
is JSON in the safetensors metadata. Loading therefore never unpickles anything. One file means a checkpoint is
either the old one or the new one, never half of each: write to a temp file in the same directory, fsync, os.replace.

Integrity: the header carries a sha256 over every tensor (name, dtype, shape, bytes) and the JSON metadata. A resume
verifies it before anything is loaded, so a flipped byte is one clear error, not a run that silently goes NaN.
Checkpoints written before the checksum existed load unverified.
"""
from __future__ import annotations

import errno
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save

from ..atomic import atomic_write

FORMAT = "swinrmt-checkpoint/1"
CKPT_DIR = "checkpoints"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(path: str | Path, *, model: dict[str, torch.Tensor], meta: dict[str, Any],
                    ema: dict[str, torch.Tensor] | None = None,
                    optimizer: dict[str, Any] | None = None) -> None:
    """Write model (+ EMA, optimizer, RNG) tensors and JSON `meta` to `path` atomically."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.items()})
    meta = dict(meta)
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    seen: set[int] = set()
    body = {}
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        if v.data_ptr() in seen and v.numel():  # safetensors refuses shared storage (tied weights)
            v = v.clone()
        seen.add(v.data_ptr())
        body[k] = v
    meta_json = json.dumps(meta)
    header = {"format": FORMAT, "meta": meta_json, "sha256": _checksum(body, meta_json)}
    data = save(body, metadata=header)  # bytes: the write below is plain Python I/O, so a full disk is an OSError

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise OSError(exc.errno or errno.EIO, f"cannot write checkpoint {path}: "
                      f"{exc.strerror or exc} ({len(data) / 1e6:.1f} MB)") from None


def _checksum(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """sha256 over the tensors (sorted by name: name, dtype, shape, bytes) and the metadata JSON."""
    h = hashlib.sha256(meta_json.encode())
    for k in sorted(tensors):
        v = tensors[k].detach().to("cpu").contiguous()
        h.update(f"\n{k}\t{v.dtype}\t{tuple(v.shape)}\n".encode())
        if v.numel():
            h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class Checkpoint:
    """A checkpoint opened for reading: `meta` is parsed eagerly, tensors are read on demand."""

    path: Path
    meta: dict[str, Any]
    keys: list[str]
    sha256: str | None = None
    meta_json: str = ""

    def verify(self) -> None:
        """Raise a one-line ValueError if the tensors or metadata differ from what was written (no-op for a
        checkpoint from before checksums)."""
        if self.sha256 is None:
            return
        with safe_open(str(self.path), framework="pt", device="cpu") as f:
            got = _checksum({k: f.get_tensor(k) for k in self.keys}, self.meta_json)
        if got != self.sha256:
            raise ValueError(f"checkpoint {self.path} does not match its checksum (corrupt or modified); "
                             "resume from another copy or start over with --overwrite")

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """All tensors under `prefix.`, with the prefix stripped (e.g. `tensors('model')` is a state_dict)."""
        head = prefix + "."
        with safe_open(str(self.path), framework="pt", device="cpu") as f:
            return {k[len(head):]: f.get_tensor(k) for k in self.keys if k.startswith(head)}

    def shapes(self, prefix: str) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors under `prefix.` from the file's header: nothing is read or allocated."""
        head = prefix + "."
        with safe_open(str(self.path), framework="pt", device="cpu") as f:
            return {k[len(head):]: tuple(f.get_slice(k).get_shape()) for k in self.keys if k.startswith(head)}

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix + ".") for k in self.keys)

    def optimizer_state(self) -> dict[str, Any]:
        """Rebuild an `optimizer.state_dict()` from the flattened tensors and the JSON groups."""
        info = self.meta["optimizer"]
        state: dict[int, dict[str, Any]] = {}
        for key, value in self.tensors("optim").items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        for idx, values in info["scalars"].items():
            state.setdefault(int(idx), {}).update(values)
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in info["param_groups"]]
        return {"state": state, "param_groups": groups}

    def restore_rng(self) -> None:
        rng = self.tensors("rng")
        torch.set_rng_state(rng["cpu"])
        cuda = [rng[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in rng]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)


def load_checkpoint(path: str | Path, verify: bool = False) -> Checkpoint:
    """Open a checkpoint file; a file that is not one (or, with `verify`, one that fails its checksum) is a one-line
    ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            keys = list(f.keys())
    except Exception as exc:  # safetensors raises its own error type for a truncated or foreign file
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a swinrmt training checkpoint (format {header.get('format')!r})")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: unreadable checkpoint metadata (not a mapping)")
    ckpt = Checkpoint(path, meta, keys, header.get("sha256"), header["meta"])
    if verify:
        ckpt.verify()
    return ckpt


def resolve_checkpoint(path: str | Path, which: str = "best") -> Path:
    """A checkpoint file, or a run directory -> its `checkpoints/<which>.safetensors` (falling back to `last`)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for name in dict.fromkeys((which, "last")):
            candidate = path / CKPT_DIR / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no checkpoint in run directory {path} (looked for {CKPT_DIR}/{which}.safetensors)")
    raise FileNotFoundError(f"checkpoint not found: {path}")


def describe_model(spec: dict[str, Any]) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in sorted(spec.get("overrides", {}).items()))
    return (f"'{spec['name']}' (num_classes={spec['num_classes']}, img_size={spec['img_size']}"
            f"{', ' + extra if extra else ''})")


def check_same_model(saved: dict[str, Any], wanted: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose architecture spec differs from the model about to be built."""
    keys = ("name", "num_classes", "img_size", "in_chans", "overrides")
    if any(saved.get(k) != wanted.get(k) for k in keys):
        raise ValueError(f"checkpoint {path} holds model {describe_model(saved)}, "
                         f"but the requested model is {describe_model(wanted)}")


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], saved: dict[str, Any],
                 wanted: dict[str, Any], path: str | Path) -> None:
    """`load_state_dict(strict=True)`, with key/shape mismatches turned into one line naming both models."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} shape-mismatched tensors, "
                  f"e.g. {(missing + unexpected + shapes)[0]}")
        raise ValueError(f"checkpoint {path} (model {describe_model(saved)}) does not fit model "
                         f"{describe_model(wanted)}: {detail}")
    model.load_state_dict(state, strict=True)

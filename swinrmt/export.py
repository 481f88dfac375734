"""Export: ONNX (checked with onnxruntime), torch.export (`.pt2`), and the Hugging Face layout (`hub`).

ONNX uses the TorchScript-based `torch.onnx.export(..., dynamo=False)`: it needs nothing beyond `onnx` (the dynamo
exporter needs `onnxscript`, which this project does not depend on), and handles every family, the cyclic shift
(`torch.roll`) included. `aten::rms_norm` (SWAT's per-head norm) has no ONNX symbolic at opset 18, so one is
registered here (ReduceMean / Sqrt / Div / Mul). The batch dimension is dynamic; the spatial size is fixed at export
time (mask / decay tables are baked in as constants for that size).

`swinrmt export` (see `add_arguments`) builds the model from a registered name (random weights), a
`save_pretrained` directory, or a trainer run directory / checkpoint, exports it, and by default checks the exported
file against PyTorch at two batch sizes.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

FORMATS = ("onnx", "torch-export", "hub")
SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2", "hub": ""}
DEFAULT_OPSET = 18
CHECK_BATCHES = (1, 3)


def _tol(ref: torch.Tensor) -> float:
    return 1e-4 * max(1.0, float(ref.abs().max()))


def default_input_size(model: nn.Module) -> tuple[int, int]:
    cfg = getattr(model, "swinrmt_cfg", None) or getattr(model, "default_cfg", {}) or {}
    size = cfg.get("img_size") or list(cfg.get("input_size", (3, 224, 224)))[1:]
    return (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))


def _example(model: nn.Module, input_size: Sequence[int], batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, int(getattr(model, "in_chans", 3)), *input_size)


def _warm(model: nn.Module, x: torch.Tensor) -> None:
    """One eager forward so constant tables (masks, decay) are cached, not built under the tracer."""
    with torch.no_grad():
        model(x)


_RMS_REGISTERED = False


def _register_onnx_symbolics(opset: int) -> None:
    global _RMS_REGISTERED
    if _RMS_REGISTERED:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx import symbolic_helper as sh

    def rms_norm(g, x, normalized_shape, weight, eps):
        shape = sh._get_const(normalized_shape, "is", "normalized_shape")
        eps_v = None if sh._is_none(eps) else sh._maybe_get_const(eps, "f")
        if not isinstance(eps_v, float):
            eps_v = float(torch.finfo(torch.float32).eps)
        axes = g.op("Constant", value_t=torch.tensor(list(range(-len(shape), 0)), dtype=torch.long))
        ms = g.op("ReduceMean", g.op("Mul", x, x), axes, keepdims_i=1)
        y = g.op("Div", x, g.op("Sqrt", g.op("Add", ms, g.op("Constant", value_t=torch.tensor(eps_v)))))
        return y if sh._is_none(weight) else g.op("Mul", y, weight)

    register_custom_op_symbolic("aten::rms_norm", rms_norm, min(opset, DEFAULT_OPSET))
    _RMS_REGISTERED = True


# -- ONNX --------------------------------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: str | Path, input_size: Sequence[int] | None = None,
                opset: int = DEFAULT_OPSET, check: bool = True) -> dict[str, Any]:
    """Write `path` (input "image" (batch, C, H, W), output "logits"; batch dynamic) and optionally check it."""
    path = Path(path)
    model = model.eval()
    input_size = tuple(input_size or default_input_size(model))
    x = _example(model, input_size)
    _warm(model, x)
    _register_onnx_symbolics(opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape-derived Python ints (sizes are fixed by design)
        torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=False,
                          opset_version=opset, dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    report = {"format": "onnx", "path": str(path), "input_size": list(input_size), "opset": opset}
    if check:
        report["max_abs_diff"] = check_onnx(model, path, input_size)
    return report


def check_onnx(model: nn.Module, path: str | Path, input_size: Sequence[int],
               batches: Sequence[int] = CHECK_BATCHES) -> float:
    """Run the file with onnxruntime at several batch sizes; ValueError if outputs differ from PyTorch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("checking an ONNX export needs onnxruntime (pip install onnxruntime), or pass --no-check"
                         ) from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in batches:
        x = _example(model, input_size, b)
        with torch.no_grad():
            ref = model(x)
        out = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
        diff = float((out - ref).abs().max())
        if out.shape != ref.shape or not diff <= _tol(ref):
            raise ValueError(f"ONNX output differs from PyTorch at batch {b}: shape {tuple(out.shape)} vs "
                             f"{tuple(ref.shape)}, max |diff| {diff:.3g}")
        worst = max(worst, diff)
    return worst


# -- torch.export ------------------------------------------------------------------------------------------------
def export_torch(model: nn.Module, path: str | Path, input_size: Sequence[int] | None = None,
                 check: bool = True) -> dict[str, Any]:
    """`torch.export.export` with a dynamic batch dimension, saved with `torch.export.save` (`.pt2`)."""
    path = Path(path)
    model = model.eval()
    input_size = tuple(input_size or default_input_size(model))
    x = _example(model, input_size)
    _warm(model, x)
    batch = torch.export.Dim("batch", min=1, max=4096)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(path))
    report = {"format": "torch-export", "path": str(path), "input_size": list(input_size)}
    if check:
        report["max_abs_diff"] = check_torch_export(model, path, input_size)
    return report


def check_torch_export(model: nn.Module, path: str | Path, input_size: Sequence[int],
                       batches: Sequence[int] = CHECK_BATCHES) -> float:
    loaded = torch.export.load(str(path)).module()
    worst = 0.0
    for b in batches:
        x = _example(model, input_size, b)
        with torch.no_grad():
            ref, out = model(x), loaded(x)
        diff = float((out - ref).abs().max())
        if out.shape != ref.shape or not diff <= _tol(ref):
            raise ValueError(f"torch.export output differs from PyTorch at batch {b}: max |diff| {diff:.3g}")
        worst = max(worst, diff)
    return worst


# -- one entry point for the CLI and the tests ------------------------------------------------------------------
def load_model(model: str | None = None, checkpoint: str | None = None, *, num_classes: int | None = None,
               img_size: int | None = None, weights: str = "auto", which: str = "best",
               overrides: dict[str, Any] | None = None) -> nn.Module:
    """A registered name (random init) or a checkpoint (save_pretrained dir, hub id, trainer run dir or file)."""
    if (model is None) == (checkpoint is None):
        raise ValueError("give exactly one of --model NAME or --checkpoint PATH")
    if checkpoint is not None:
        if num_classes is not None or img_size is not None or overrides:
            raise ValueError("--num-classes / --img-size / --set apply to --model only; a checkpoint fixes them")
        from .hub import load_any

        return load_any(checkpoint, weights=weights, which=which)
    from .registry import create_model

    torch.manual_seed(0)
    return create_model(model, num_classes=num_classes, img_size=img_size, **(overrides or {})).eval()


def export(fmt: str, out: str | Path, *, model: nn.Module, input_size: Sequence[int] | None = None,
           opset: int = DEFAULT_OPSET, check: bool = True, overwrite: bool = False) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; accepted: {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "hub":
        from .hub import save_pretrained

        return {"format": "hub", "path": str(save_pretrained(model, out, overwrite=overwrite))}
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")
    if fmt == "onnx":
        return export_onnx(model, out, input_size, opset, check)
    return export_torch(model, out, input_size, check)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="registered model name (random weights; see `swinrmt models`)")
    src.add_argument("--checkpoint", help="save_pretrained dir, hub id org/name, trainer run dir or checkpoint file")
    p.add_argument("--format", default="onnx", help=f"one of {', '.join(FORMATS)} (default onnx)")
    p.add_argument("--out", help="output file (onnx, torch-export) or directory (hub); default: <model><suffix>")
    p.add_argument("--num-classes", type=int, help="with --model: classifier size")
    p.add_argument("--img-size", type=int, help="with --model: the size the model is built for")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --model: a create_model option (JSON value), e.g. --set gate=headwise")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="spatial size traced into the export (default: the model's img_size)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--weights", default="auto", help="trainer checkpoints: auto (EMA if present), ema or model")
    p.add_argument("--which", default="best", help="trainer run dir: best or last checkpoint (default best)")
    p.add_argument("--no-check", action="store_true", help="skip comparing the exported file with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    from .registry import parse_model_options

    if args.format not in FORMATS:
        raise ValueError(f"unknown format {args.format!r}; accepted: {', '.join(FORMATS)}")
    if args.model is None and args.checkpoint is None:
        raise ValueError("give --model NAME or --checkpoint PATH")
    if args.format == "hub" and args.model is not None and not args.set and args.checkpoint is None:
        print("note: --model gives random weights; use --checkpoint RUN_DIR to convert a trained model")
    from .hub import convert_checkpoint, is_pretrained_dir

    if args.format == "hub" and args.checkpoint is not None and not is_pretrained_dir(args.checkpoint) \
            and Path(args.checkpoint).exists():  # a trainer run dir / checkpoint file: convert, keeping provenance
        if args.out is None:
            raise ValueError("--format hub needs --out DIR")
        out = convert_checkpoint(args.checkpoint, args.out, weights=args.weights, which=args.which,
                                 overwrite=args.overwrite)
        print(f"wrote {out} (hub layout, from trainer checkpoint {args.checkpoint}, weights={args.weights})")
        return 0
    if args.input_size is not None and min(args.input_size) < 1:
        raise ValueError(f"--input-size H W must be positive, got {' '.join(map(str, args.input_size))}")
    model = load_model(args.model, args.checkpoint, num_classes=args.num_classes, img_size=args.img_size,
                       weights=args.weights, which=args.which, overrides=parse_model_options(args.set))
    name = getattr(model, "model_name", "model")
    out = args.out or f"{name}{SUFFIX[args.format]}" + ("-hub" if args.format == "hub" else "")
    report = export(args.format, out, model=model, input_size=args.input_size, opset=args.opset,
                    check=not args.no_check, overwrite=args.overwrite)
    msg = f"wrote {report['path']} ({args.format}, {name}"
    if "input_size" in report:
        msg += f", input (batch, {getattr(model, 'in_chans', 3)}, {report['input_size'][0]}, {report['input_size'][1]})"
    if "max_abs_diff" in report:
        msg += f"; matches PyTorch at batch {', '.join(map(str, CHECK_BATCHES))}: max |diff| {report['max_abs_diff']:.2e}"
    print(msg + ")")
    return 0

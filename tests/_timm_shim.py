"""Import timm for the tests, working around a torchvision whose compiled ops cannot load.

timm 1.0.x imports torchvision. A CUDA build of torchvision installed with `--no-deps` beside the CPU torch cannot
load its C++ ops, and its import then fails at `torchvision::nms does not exist`. Defining the two op schemas it
registers fake kernels for (`nms`, `qnms`) first lets torchvision, and so timm, import; timm's models never call
them. A torchvision whose ops do load is left alone.
"""
from __future__ import annotations

import glob
import importlib.util
import os

import torch

_LIB = None


def _torchvision_ops_need_shim() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
        return False  # ops already registered (torchvision imported fine, or shim applied)
    except RuntimeError:
        pass
    libs = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*.so"))
    if not libs:
        return True
    try:
        torch.ops.load_library(libs[0])  # a working build registers its ops here; torchvision reuses them
        return False
    except (OSError, RuntimeError):
        return True


def import_timm():
    """`import timm`, applying the torchvision schema shim when needed; ImportError if timm is absent."""
    global _LIB
    if importlib.util.find_spec("timm") is None:
        raise ImportError("timm is not installed")
    if _LIB is None and _torchvision_ops_need_shim():
        _LIB = torch.library.Library("torchvision", "DEF")
        _LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
    import timm

    return timm

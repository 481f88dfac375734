"""The recipe's CUDA execution settings (`Recipe.cuda`): TF32 and deterministic kernels. Nothing here acts on a CPU.

**TF32** (`cuda.tf32`, default true). On Ampere and later GPUs a float32 matmul can run on the tensor cores with
10-bit mantissa inputs and float32 accumulation, several times faster than IEEE float32 (an H100's dense TF32 peak
is about 7x its FP32 peak). PyTorch leaves TF32 *off* for matmuls but *on* for cuDNN convolutions by default, so
an fp32 recipe ran its convolutions (stem, depthwise convs, LCE) in TF32 and its projections and attention in IEEE
float32: two precisions in one model and an MFU that mixes two peaks. `tf32: true` sets both on (one precision, the
fast one); `tf32: false` sets both off (strict IEEE float32 everywhere, slower). True is the default because
training these models is far noisier than TF32's rounding (a relative 2^-11 per input, float32 sums), because
bf16 recipes already round far more coarsely, and because it is the setting under which a float32 GPU run's
speed is worth measuring; a study of float32 numerics sets it false. Under `precision: bf16` it only touches the
float32 ops autocast leaves alone.

**Deterministic** (`cuda.deterministic`, default false). CUDA kernels that accumulate with atomics (scatter/index
adds, some convolution and attention backward kernels, cuBLAS split-K reductions with a workspace) give results
that vary in the last bits from run to run, so a resumed CUDA run matches an uninterrupted one only up to that
noise (on CPU resume is bit-exact either way). `deterministic: true` sets `torch.use_deterministic_algorithms(True,
warn_only=True)` (ops with no deterministic CUDA kernel warn instead of failing), cuDNN deterministic and
non-benchmark, and `CUBLAS_WORKSPACE_CONFIG=:4096:8` (if unset). Its cost: slower backward kernels where a
deterministic one exists and no cuDNN autotuning; how much on these models is not yet measured (no GPU has run it;
`benchmarks/gpu/smoke.sh` times a step with and without it). Ops that only warn remain non-deterministic, so the switch makes a run reproducible as far as
PyTorch's kernels allow, not more.

`apply(cfg, device)` sets them process-wide for a CUDA device and returns what it replaced; `restore(saved)` puts
that back (the trainer does, when `train()` returns).
"""
from __future__ import annotations

import os
from typing import Any

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def state() -> dict[str, Any]:
    """The process's current settings (what `apply` changes)."""
    return {"matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace": os.environ.get(CUBLAS_ENV)}


def apply(cfg: Any, device: torch.device) -> dict[str, Any] | None:
    """Set TF32 and determinism from `cfg` (a `CudaCfg`) when `device` is CUDA; None (nothing changed) otherwise."""
    if torch.device(device).type != "cuda":
        return None
    saved = state()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    if cfg.deterministic:
        os.environ.setdefault(CUBLAS_ENV, ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    return saved


def restore(saved: dict[str, Any] | None) -> None:
    if saved is None:
        return
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved["matmul_tf32"], saved["cudnn_tf32"]
    torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["deterministic_warn_only"])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = (saved["cudnn_deterministic"],
                                                                          saved["cudnn_benchmark"])
    if saved["cublas_workspace"] is None:
        os.environ.pop(CUBLAS_ENV, None)
    else:
        os.environ[CUBLAS_ENV] = saved["cublas_workspace"]

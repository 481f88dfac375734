"""When a route of `swinrmt.kernels` may stand in for the aten op: plain eager mode, and the tensors it was built for.

Compilers, tracers and exporters must see the aten op to do their own work, autocast would not cast a custom op's
inputs, and dispatch modes (the FLOP counter, fake tensors) and functorch transforms expect aten's ops.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def cpu_has_avx512() -> bool:
    """Whether PyTorch runs this CPU on its AVX-512 kernels: where oneDNN's weight gradient of a projection beats mm
    (`onednn.CONV1X1_WEIGHT_GRAD`); on an AVX2 EPYC it ran at a quarter of mm's rate."""
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record an op on these tensors (fused inference ops have no backward)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def plain_eager() -> bool:
    """No compiler, tracer, exporter, dispatch mode (FLOP counter, fake tensors) or functorch transform is active."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if torch.onnx.is_in_onnx_export() or torch._C._are_functorch_transforms_active():
        return False
    return not (is_in_torch_dispatch_mode() or torch._C._len_torch_dispatch_stack() > 0)


def plain_eager_fp32_cpu(*tensors: torch.Tensor) -> bool:
    """Whether a oneDNN route may stand in for the aten op on these float32 CPU tensors (no autocast, oneDNN on)."""
    if not plain_eager() or torch.is_autocast_enabled("cpu") or not torch._C._get_mkldnn_enabled():
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)

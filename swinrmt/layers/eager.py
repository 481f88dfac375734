"""When the layers may pick their own CPU kernels instead of the plain aten op.

`Linear` (oneDNN GEMMs) and `DWConv` (a faster depthwise weight gradient) replace an aten op with a hand-picked
kernel only in plain eager float32 on CPU. Compilers, tracers and exporters must see the aten op to do their own work,
autocast would not cast a custom op's inputs, and dispatch modes (the FLOP counter, fake tensors) and functorch
transforms expect aten's ops.
"""
from __future__ import annotations

import torch

# Whether float32 CPU inference fuses elementwise work into oneDNN ops (`linear.linear_gelu`, `conv.DWConv` with a
# residual); also a switch of benchmarks/speed/ab_switch.py.
FUSE_INFERENCE = True


def cpu_has_avx512() -> bool:
    """Whether PyTorch runs this CPU on its AVX-512 kernels: where oneDNN's weight gradient of a projection beats mm
    (`linear.CONV1X1_WEIGHT_GRAD`); on an AVX2 EPYC it ran at a quarter of mm's rate."""
    return "AVX512" in torch.backends.cpu.get_cpu_capability()


def env_switch(var: str, value: str | None, on: str, off: str) -> bool:
    """An environment switch `var` read as "auto" (the default, the same as `on`), `on` or `off`."""
    value = (value or "auto").strip().lower()
    if value not in ("auto", on, off):
        raise ValueError(f"{var}={value!r} is not valid; accepted: auto, {on}, {off}")
    return value != off


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record an op on these tensors (fused inference ops have no backward)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def plain_eager_fp32_cpu(*tensors: torch.Tensor) -> bool:
    """Whether a hand-picked CPU kernel may stand in for the aten op on these float32 tensors."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    if torch.onnx.is_in_onnx_export() or torch.is_autocast_enabled("cpu"):
        return False
    if torch._C._len_torch_dispatch_stack() > 0 or torch._C._are_functorch_transforms_active():
        return False
    if not torch._C._get_mkldnn_enabled():
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)

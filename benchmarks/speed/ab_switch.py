"""One speed change, on and off, interleaved step by step in one process: its whole-model effect, measured.

    python benchmarks/speed/ab_switch.py SWITCH [--model rmt_tiny] [--mode infer train] [--steps 6] [--stem-stride 4]
                                        [--base REV]

SWITCH is one of SWITCHES. Off restores the plain code the change replaced, so the ratio is that change alone,
with everything else equal. `kernels --base REV` compares the C++ kernel library built from this checkout's
swinrmt/layers/csrc (on) with the one built from git revision REV's (off); both must have the same entry points.
Steps alternate on/off (and swap the order every round), so a shared machine's load drifts hit both sides alike.
Batch 64 at 64 px, fp32, the allocator as swinrmt.runtime sets it.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

import torch

from swinrmt.bench import _Runner
from swinrmt.layers import conv, cpu_kernels, depthwise, eager, gates, linear, pointwise, rotary, short_attention
from swinrmt.layers.mixers import axial
from swinrmt.runtime import keep_freed_memory


def _mm_backward(ctx, grad):
    """OneDNNLinear's backward before the 1x1-convolution gradients: dX on oneDNN from 4096 rows, dW on mm."""
    x, weight = ctx.saved_tensors
    g2 = grad.reshape(-1, grad.shape[-1])
    gx = (grad.matmul(weight) if g2.shape[0] < 4096 else
          torch.ops.mkldnn._linear_pointwise(grad, weight.t().contiguous(), None, "none", [], ""))
    return gx, g2.t().mm(x.reshape(-1, x.shape[-1])), g2.sum(0) if ctx.has_bias else None


_ORIG = {"complex_ok": rotary._complex_ok, "linear_backward": linear.OneDNNLinear.backward,
         "scaled_q": axial.AxialMixer.scaled_q, "windowed": axial.WINDOWED_IF_WINDOWS,
         "group": axial.SIGMOID_GROUP_LENGTH, "gate": gates.OutputGate.forward, "fold_bn": conv.fold_bn_inference}


def _autograd_gate(self, y, x):
    """OutputGate's forward before `SigmoidGate`: autograd keeps y and sigmoid(a) for the product."""
    return gates.gate_product(y, torch.sigmoid(self.proj(x)), self.num_heads if self.mode == "headwise" else 0)


def _kernel_prefetch(on: bool) -> None:
    _ORIG.setdefault("prefetch", short_attention.set_prefetch(0))  # the built-in distance, read once
    short_attention.set_prefetch(_ORIG["prefetch"] if on else 0)


def _sigmoid_groups(on: bool) -> None:
    short_attention.ENABLED = False
    axial.SIGMOID_GROUP_LENGTH = _ORIG["group"] if on else 0


SWITCHES = {  # each switch: (on, the _Runner) -> None
    # rotary as one complex multiply vs x*cos + rot(x)*sin
    "complex_rotary": lambda on, runner: setattr(rotary, "_complex_ok",
                                                 _ORIG["complex_ok"] if on else (lambda x: False)),
    # d^-1/2 folded into W_q vs q * scale on the activations
    "scale_fold": lambda on, runner: setattr(axial.AxialMixer, "scaled_q", _ORIG["scaled_q"] if on else
                                             (lambda self, x: self.q(x) * self.scale)),
    # inference with 2 windows per axis on the windowed layout vs always the fused whole-axis path
    "windowed_inference": lambda on, runner: setattr(axial, "WINDOWED_IF_WINDOWS", _ORIG["windowed"] if on else ()),
    # float32 CPU projections on oneDNN vs F.linear (MKL)
    "onednn_linear": lambda on, runner: setattr(linear, "ONEDNN", on),
    # projection gradients as oneDNN's 1x1-convolution backward vs oneDNN linear (dX) and mm (dW)
    "conv1x1_grads": lambda on, runner: setattr(linear.OneDNNLinear, "backward",
                                                _ORIG["linear_backward"] if on else staticmethod(_mm_backward)),
    # inference: GELU fused into fc1, the residual adds of CPE / the ConvFFN conv into the conv (oneDNN post-ops)
    "fuse_inference": lambda on, runner: setattr(eager, "FUSE_INFERENCE", on),
    # depthwise weight gradients in column groups of at most 3 (pre-padded on small maps) vs aten's
    "dw_weight_grad": lambda on, runner: setattr(conv, "FAST_WEIGHT_GRAD", on),
    # sigmoid (SWAT) passes over merged windows (block-diagonal tables) vs one window per pass, on the explicit path
    # (the short-attention kernel off on both sides: where it fits, it takes the passes and the merge does not apply)
    "sigmoid_groups": lambda on, runner: _sigmoid_groups(on),
    # training: the optimizer step on PyTorch's fused kernel vs its CPU default (a Python-level loop over parameters)
    "fused_optimizer": lambda on, runner: [g.update(fused=True if on else None) for g in runner.opt.param_groups],
    # softmax attention over short sequences on swinrmt's C++ kernel vs PyTorch's fused (flash) CPU kernel
    "short_attention": lambda on, runner: setattr(short_attention, "ENABLED", on),
    # depthwise convs with bias, residual and (ConvFFN) GELU fused on swinrmt's C++ kernel vs oneDNN's conv and aten's
    # elementwise ops
    "depthwise_kernel": lambda on, runner: setattr(depthwise, "ENABLED", on),
    # shifted windows on whole-axis passes: the shift in the tables vs rolling q, k, v and unrolling the output
    "unroll_shifted": lambda on, runner: setattr(axial, "UNROLL_SHIFTED", on),
    # the G1 gate's backward from its output z (`SigmoidGate`) vs autograd's (which keeps y and sigmoid(a))
    "lean_gate": lambda on, runner: setattr(gates.OutputGate, "forward", _ORIG["gate"] if on else _autograd_gate),
    # inference: RMT's flat rotary applied by the short-attention kernel as it loads q and k vs rotated copies first
    "fold_rotary": lambda on, runner: setattr(axial, "FOLD_ROTARY", on),
    # SWAT's SiLU-gated value and head RMS norm on swinrmt's C++ kernel (one pass each way) vs PyTorch's ops
    "pointwise_kernel": lambda on, runner: setattr(pointwise, "ENABLED", on),
    # the short-attention kernel prefetching the q, k, v rows of the problem 4 ahead vs not
    "kernel_prefetch": lambda on, runner: _kernel_prefetch(on),
    # inference: the stem's and downsampling convs with BN folded in and GELU fused (oneDNN) vs conv, BN, GELU
    "fold_bn": lambda on, runner: setattr(conv, "fold_bn_inference", _ORIG["fold_bn"] if on else
                                          (lambda *a: False)),
}

TRAIN_ONLY = {"fused_optimizer"}  # no effect on inference (no optimizer there)


def kernels_at(rev: str):
    """The `kernels` switch: this checkout's kernel library (on) or revision `rev`'s (off), built from its csrc/."""
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "-C", str(root), "archive", rev, "swinrmt/layers/csrc"], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    current = cpu_kernels.load()
    if current is None:
        raise SystemExit("the CPU kernels are off or cannot be built here: nothing to compare")
    with tempfile.TemporaryDirectory(prefix="swinrmt-csrc-") as src, \
            tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(src, filter="data")  # refuses members that would land outside src
        base = cpu_kernels.declare(ctypes.CDLL(str(cpu_kernels.build(csrc=Path(src) / "swinrmt/layers/csrc"))))
    return lambda on, runner: setattr(cpu_kernels, "_lib", current if on else base)


def measure(switch: str, model: str, mode: str, steps: int, stem_stride: int | None = None) -> tuple[float, float]:
    kwargs = {"stem_stride": stem_stride} if stem_stride else {}
    # the step `swinrmt bench` times
    runner = _Runner(model, mode, "fp32", 64, 64, torch.device("cpu"), 100, model_kwargs=kwargs)
    step = runner.step
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for on in (True, False):  # warm-up both
            SWITCHES[switch](on, runner)
            step()
        for i in range(steps):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                SWITCHES[switch](on, runner)
                times[on].append(step())
    finally:
        SWITCHES[switch](True, runner)
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("switch", choices=sorted([*SWITCHES, "kernels"]))
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--mode", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--stem-stride", type=int, default=None, help="4: the public RMT-T layout at 64 px")
    p.add_argument("--base", help="kernels: the git revision to compare with")
    a = p.parse_args()
    if (a.switch == "kernels") != (a.base is not None):
        p.error("--base goes with the kernels switch, and the kernels switch needs --base")
    if a.base:
        SWITCHES["kernels"] = kernels_at(a.base)
    keep_freed_memory()
    for mode in a.mode:
        if mode == "infer" and a.switch in TRAIN_ONLY:
            print(f"| {a.switch} | {a.model} | infer | - | - | (training only) |", flush=True)
            continue
        on, off = measure(a.switch, a.model, mode, a.steps, a.stem_stride)
        model = a.model + (f" (stem {a.stem_stride})" if a.stem_stride else "")
        print(f"| {a.switch} | {model} | {mode} | {off:.0f} | {on:.0f} | {on / off:.3f} |", flush=True)


if __name__ == "__main__":
    main()

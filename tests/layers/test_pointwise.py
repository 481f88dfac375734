"""SWAT's SiLU-gated value and head RMS norm on the CPU kernel (swinrmt/layers/csrc/pointwise.cpp) against PyTorch's
ops in float64: values and gradients, tails shorter than a vector, extreme and NaN inputs, routing and the fallbacks."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.layers._kernels import requires_kernels
from swinrmt import kernels
from swinrmt.kernels import pointwise as pw
from swinrmt.layers.gates import SwiGLUValue
from swinrmt.layers.mixers.swat import SwatMixer
from tests.layers._kernels import set_policy

pytestmark = requires_kernels


def _grads(fn, inputs, g):
    out = fn(*inputs)
    return out, torch.autograd.grad(out, inputs, g)


@pytest.mark.parametrize("shape", [(37,), (4, 16), (2, 5, 7, 24), (64, 1000)])
def test_silu_mul_matches_pytorch_with_gradients(shape):
    torch.manual_seed(0)
    v64, g64 = torch.randn(shape, dtype=torch.float64) * 3, torch.randn(shape, dtype=torch.float64) * 6
    dz = torch.randn(shape, dtype=torch.float64)
    vf, gf = v64.float().requires_grad_(), g64.float().requires_grad_()
    assert pw.silu_mul_fits(vf, gf)
    z, (dv, dg) = _grads(pw.silu_mul, (vf, gf), dz.float())
    ref, (dv64, dg64) = _grads(pw.silu_mul_reference, (v64.requires_grad_(), g64.requires_grad_()), dz)
    torch.testing.assert_close(z.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dv.double(), dv64, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dg.double(), dg64, atol=1e-5, rtol=1e-5)


def test_silu_mul_extremes_and_nan():
    g = torch.tensor([-1e4, -100.0, -88.5, 0.0, 88.5, 100.0, 1e4, float("nan"), float("inf"), -float("inf")])
    v = torch.ones_like(g)
    z = pw.silu_mul(v, g)
    want = pw.silu_mul_reference(v, g)
    torch.testing.assert_close(z, want, equal_nan=True)
    vg, gg = v.clone().requires_grad_(), g[:7].clone().requires_grad_()
    dv, dg = torch.autograd.grad(pw.silu_mul(vg[:7], gg), [vg, gg], torch.ones(7))
    assert torch.isfinite(dv).all() and torch.isfinite(dg).all()


@pytest.mark.parametrize("shape,head_dim", [((3, 7, 64), 16), ((2, 5, 5, 128), 32), ((6, 512), 32), ((1, 32), 32)])
def test_head_rms_norm_matches_pytorch_with_gradients(shape, head_dim):
    torch.manual_seed(0)
    c = shape[-1]
    x64, w64 = torch.randn(shape, dtype=torch.float64) * 2, torch.randn(c, dtype=torch.float64)
    dy = torch.randn(shape, dtype=torch.float64)
    xf, wf = x64.float().requires_grad_(), w64.float().requires_grad_()
    y, (dx, dw) = _grads(lambda x, w: pw.head_rms_norm(x, w, head_dim, 1e-6), (xf, wf), dy.float())
    ref, (dx64, dw64) = _grads(lambda x, w: pw.head_rms_norm_reference(x, w, head_dim, 1e-6),
                               (x64.requires_grad_(), w64.requires_grad_()), dy)
    torch.testing.assert_close(y.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx.double(), dx64, atol=1e-5, rtol=1e-5)
    # the weight gradient sums every row: per-thread partials, tolerance scaled by its size
    torch.testing.assert_close(dw.double(), dw64, atol=1e-6 * max(1.0, dw64.abs().max().item()), rtol=1e-5)


def test_head_rms_norm_input_only_and_strided_input():
    torch.manual_seed(0)
    base = torch.randn(4, 6, 128)
    x = base[:, :, :64]  # not contiguous: the kernel path copies it
    w = torch.randn(64)
    torch.testing.assert_close(pw.head_rms_norm(x, w, 32, 1e-6), pw.head_rms_norm_reference(x, w, 32, 1e-6),
                               atol=1e-6, rtol=1e-5)
    xg = x.clone().requires_grad_()  # weight without grad: the kernel skips its gradient
    dy = torch.randn(4, 6, 64)
    (dx,) = torch.autograd.grad(pw.head_rms_norm(xg, w, 32, 1e-6), [xg], dy)
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(pw.head_rms_norm_reference(xr, w, 32, 1e-6), [xr], dy)
    torch.testing.assert_close(dx, want, atol=1e-5, rtol=1e-5)


def _ran_kernel(fn) -> bool:
    """Whether `fn` ran without PyTorch's SiLU and RMS-norm ops, i.e. on the kernel."""
    with torch.profiler.profile() as prof:
        fn()
    names = {e.key for e in prof.key_averages()}
    return not ({"aten::silu", "aten::pow", "aten::rsqrt"} & names)


def test_routing_and_fallbacks(monkeypatch):
    v, g = torch.randn(4, 32), torch.randn(4, 32)
    assert _ran_kernel(lambda: pw.silu_mul(v, g))
    assert not pw.silu_mul_fits(v.double(), g.double())
    assert not pw.silu_mul_fits(v.t(), g.t())  # not contiguous
    assert not pw.silu_mul_fits(v, g[:2])
    x, w = torch.randn(3, 64), torch.randn(64)
    assert _ran_kernel(lambda: pw.head_rms_norm(x, w, 16, 1e-6))
    assert not _ran_kernel(lambda: pw.head_rms_norm(x, w, 8, 1e-6))  # head dim 8: not a multiple of 16
    with FlopCounterMode(display=False):  # a dispatch mode: PyTorch's ops, which it can count
        assert not pw.silu_mul_fits(v, g)
    set_policy(monkeypatch, pointwise=False)
    assert not _ran_kernel(lambda: pw.head_rms_norm(x, w, 16, 1e-6))
    assert not pw.silu_mul_fits(v, g)


def test_swat_mixer_on_the_kernels_equals_the_reference_path():
    """A SWAT mixer's forward and every gradient, with SwiGLU and head norm on the kernel vs all of PyTorch's ops."""
    torch.manual_seed(0)
    mixer = SwatMixer(64, 4, window_size=4, shift=True).train()
    ref = copy.deepcopy(mixer)
    x = torch.randn(2, 8, 8, 64)
    dy = torch.randn(2, 8, 8, 64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = mixer(xa)
    ya.backward(dy)
    with kernels.reference():
        yb = ref(xb)
        yb.backward(dy)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)
    for (name, pa), pb in zip(mixer.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_swiglu_value_saves_no_more_than_the_checkpoint(monkeypatch):
    """On the kernel the SwiGLU value keeps v and g for its backward, no more than the checkpointed PyTorch version."""
    torch.manual_seed(0)
    m = SwiGLUValue(32).train()
    x = torch.randn(8, 32, requires_grad=True)

    def saved_elements() -> int:
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            m(x)
        return sum(saved)

    on_kernel = saved_elements()
    set_policy(monkeypatch, pointwise=False)
    assert on_kernel <= saved_elements()

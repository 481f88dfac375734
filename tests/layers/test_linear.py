"""`linear` picks oneDNN for float32 CPU projections; it must compute F.linear's function, values and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import profile
from torch.utils.flop_counter import FlopCounterMode

from swinrmt import kernels
from swinrmt.kernels import onednn as L
from swinrmt.kernels.onednn import linear, onednn_ok
from swinrmt.layers.linear import Linear
from tests.layers._kernels import set_policy

pytestmark = pytest.mark.skipif(not L.HAVE_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")


def _calls(fn, op: str = "linear_pointwise") -> int:
    with profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if op in e.key)


def _onednn_calls(fn) -> int:
    return _calls(fn)


def _uses_onednn(fn) -> bool:
    return _onednn_calls(fn) > 0


@pytest.mark.parametrize("shape", [(5, 24), (2, 3, 4, 24), (7, 1, 24), (1, 24), (L.CONV1X1_MIN_ROWS // 8, 8, 24)],
                         ids=["2d", "4d", "3d", "one-row", "conv1x1-grads"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("conv_weight_grad", [True, False], ids=["dW-conv1x1", "dW-mm"])
def test_values_and_gradients_match_f_linear(shape, bias, conv_weight_grad, monkeypatch):
    monkeypatch.setattr(L, "CONV1X1_WEIGHT_GRAD", conv_weight_grad)  # AVX-512 CPUs / the others
    torch.manual_seed(0)
    x = torch.randn(*shape)
    w, b = torch.randn(40, 24), (torch.randn(40) if bias else None)
    leaves = [t.clone().requires_grad_() for t in (x, w) + ((b,) if bias else ())]
    ref = [t.detach().double().requires_grad_() for t in leaves]
    y = linear(leaves[0], leaves[1], leaves[2] if bias else None)
    y_ref = F.linear(ref[0], ref[1], ref[2] if bias else None)
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    g = torch.linspace(-1, 1, y.numel()).view_as(y)
    (y * g).sum().backward()
    (y_ref * g.double()).sum().backward()
    for a, r in zip(leaves, ref):
        torch.testing.assert_close(a.grad.double(), r.grad, atol=1e-4, rtol=1e-4)


def test_float32_cpu_runs_on_onednn_in_training_and_inference():
    """Fails if the chooser is reverted to F.linear (the speed-up this module exists for)."""
    m = Linear(16, 32)
    x = torch.randn(8, 16, requires_grad=True)
    assert onednn_ok(x, m.weight)
    with torch.inference_mode():
        assert _onednn_calls(lambda: m(x.detach())) == 1
    step = lambda: m(x).sum().backward()  # noqa: E731
    assert _onednn_calls(step) == 1 and _calls(step, "convolution_backward") == 0  # few rows: gradients on mm
    assert x.grad is not None and m.weight.grad is not None and m.bias.grad is not None
    big = torch.randn(L.CONV1X1_MIN_ROWS, 16, requires_grad=True)
    step = lambda: m(big).sum().backward()  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(L, "CONV1X1_WEIGHT_GRAD", True)  # AVX-512: both gradients in one oneDNN call
        assert _onednn_calls(step) == 1 and _calls(step, "convolution_backward") == 1 and _calls(step, "aten::mm") == 0
        mp.setattr(L, "CONV1X1_WEIGHT_GRAD", False)  # elsewhere: dX on oneDNN, dW on mm
        assert _calls(step, "convolution_backward") == 1 and _calls(step, "aten::mm") == 1


@pytest.mark.parametrize("need", ["x", "w", "both"])
@pytest.mark.parametrize("shape", [(3, 7, 5), (9, 2, 1)], ids=["per-sample-maps", "one-map"])
def test_conv1x1_grads_match_matmul(need, shape):
    torch.manual_seed(0)
    # not contiguous, as a strided view reaches a projection; 35 rows per sample split by sample, 2 rows do not
    x = torch.randn(*shape, 24).transpose(1, 2)
    w, g = torch.randn(40, 24), torch.randn(*x.shape[:-1], 40)
    gx, gw = L.conv1x1_grads(g, x, w, need != "w", need != "x")
    if need != "w":
        assert gx.shape == x.shape
        torch.testing.assert_close(gx, g @ w, atol=1e-4, rtol=1e-4)
    else:
        assert gx is None
    if need != "x":
        torch.testing.assert_close(gw, g.reshape(-1, 40).t() @ x.reshape(-1, 24), atol=1e-4, rtol=1e-4)
    else:
        assert gw is None


def test_linear_gelu_fuses_in_inference_and_matches_everywhere(monkeypatch):
    """One oneDNN GEMM with GELU fused in float32 CPU inference (fails if reverted); F.gelu(F.linear) elsewhere."""
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 5, 16), torch.randn(32, 16), torch.randn(32)
    ref = F.gelu(F.linear(x, w, b))
    with torch.inference_mode():
        assert _calls(lambda: L.linear_gelu(x, w, b), "aten::gelu") == 0
        torch.testing.assert_close(L.linear_gelu(x, w, b), ref, atol=1e-5, rtol=1e-5)
        set_policy(monkeypatch, fuse_inference=False)
        assert _calls(lambda: L.linear_gelu(x, w, b), "aten::gelu") == 1
        set_policy(monkeypatch, fuse_inference=True)
    wg = w.clone().requires_grad_()
    y = L.linear_gelu(x, wg, b)
    assert y.grad_fn is not None  # training: the plain GELU, whose backward autograd knows
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    y.sum().backward()
    assert wg.grad is not None
    m = Linear(16, 32, act="gelu")
    m.load_state_dict({"weight": w, "bias": b})
    assert m.state_dict().keys() == nn.Linear(16, 32).state_dict().keys() and "act=gelu" in repr(m)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="act must be None or 'gelu'"):
        Linear(16, 32, act="relu")


def test_falls_back_to_f_linear_where_onednn_does_not_apply():
    m = Linear(16, 32)
    x = torch.randn(4, 16)
    assert not onednn_ok(x.double(), m.weight.double())
    assert not onednn_ok(torch.randn(16), m.weight)  # 1-D input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn_ok(x, m.weight)
        y = m(x)
    assert y.dtype == torch.bfloat16  # autocast still applies to the projection
    with torch.backends.mkldnn.flags(enabled=False):
        assert not onednn_ok(x, m.weight)
    with FlopCounterMode(display=False) as counter:  # the FLOP counter must see aten's GEMM
        m(x)
    assert counter.get_total_flops() == 2 * 4 * 16 * 32
    with kernels.use(onednn_linear=False):
        assert not _uses_onednn(lambda: m(x))
    traced = torch.jit.trace(m, x)
    assert "aten::linear" in str(traced.graph)


def test_double_backward_matches_f_linear():
    torch.manual_seed(0)
    x = torch.randn(6, 10, requires_grad=True)
    w = torch.randn(12, 10, requires_grad=True)
    gx, = torch.autograd.grad(linear(x, w).pow(2).sum(), x, create_graph=True)
    gx_ref, = torch.autograd.grad(F.linear(x, w).pow(2).sum(), x, create_graph=True)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(gx.sum(), w)[0], torch.autograd.grad(gx_ref.sum(), w)[0],
                               atol=1e-4, rtol=1e-4)


def test_linear_is_a_drop_in_nn_linear():
    ref = nn.Linear(16, 32)
    m = Linear(16, 32)
    m.load_state_dict(ref.state_dict())
    assert isinstance(m, nn.Linear) and m.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


def test_weight_gradient_route_follows_the_cpu():
    # the weight gradient on oneDNN's 1x1-convolution backward only where the CPU has AVX-512
    assert L.CONV1X1_WEIGHT_GRAD == L.eager.cpu_has_avx512()
    assert L.eager.cpu_has_avx512() == ("AVX512" in torch.backends.cpu.get_cpu_capability())

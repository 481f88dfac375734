"""The depthwise-conv CPU kernel (swinrmt/layers/csrc/depthwise_conv.cpp) against PyTorch's ops in float64: values and
all gradients, every fused variant (bias, residual none / self / another map, GELU), edges, strided inputs, routing
and every fallback."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tests.layers._kernels import requires_kernels
from swinrmt import kernels
from swinrmt.kernels import depthwise as dw
from swinrmt.layers.conv import DWConv
from swinrmt.layers.ffn import ConvFFN
from tests.layers._kernels import set_policy

pytestmark = requires_kernels


def _check(shape, k, act, res, x_view=None, res_view=None):
    torch.manual_seed(0)
    b, h, w, c = shape
    x64 = (x_view if x_view is not None else torch.randn(shape)).double()
    w64, b64 = torch.randn(c, 1, k, k, dtype=torch.float64) / k, torch.randn(c, dtype=torch.float64)
    r64 = (res_view if res_view is not None else torch.randn(shape)).double() if res == "tensor" else res
    g = torch.randn(shape, dtype=torch.float64)
    xf = (x_view if x_view is not None else x64.float()).detach().requires_grad_()
    rf = (res_view if res_view is not None else r64.float()).detach().requires_grad_() if res == "tensor" else res
    wf, bf = w64.float().requires_grad_(), b64.float().requires_grad_()
    y = dw.depthwise_conv(xf, wf, bf, rf, act)
    inputs = [xf, wf, bf] + ([rf] if res == "tensor" else [])
    got = torch.autograd.grad(y, inputs, g.float())
    x64.requires_grad_(), w64.requires_grad_(), b64.requires_grad_()
    if res == "tensor":
        r64.requires_grad_()
    ref = dw.reference(x64, w64, b64, r64, act)
    want = torch.autograd.grad(ref, [x64, w64, b64] + ([r64] if res == "tensor" else []), g)
    assert y.shape == ref.shape and y.is_contiguous()
    torch.testing.assert_close(y.double(), ref, atol=2e-5, rtol=1e-5)
    for a, e in zip(got, want):  # weight and bias gradients sum B*H*W terms: tolerance scaled by their size
        torch.testing.assert_close(a.double(), e, atol=2e-6 * max(1.0, e.abs().max().item()), rtol=1e-5)


@pytest.mark.parametrize("act", [None, "gelu"])
@pytest.mark.parametrize("res", [None, "self", "tensor"])
@pytest.mark.parametrize("shape,k", [((2, 8, 8, 32), 3), ((2, 5, 7, 16), 5), ((3, 7, 9, 48), 7), ((2, 3, 3, 16), 3),
                                     ((1, 9, 6, 32), 3), ((2, 4, 4, 16), 5), ((2, 2, 3, 16), 3)])
def test_values_and_gradients_match_pytorch(shape, k, act, res):
    """Maps of exactly the kernel's width (edges only), smaller than it (every tap checked), non-square, and a
    batch smaller than the threads (row chunks, GELU halo rows recomputed)."""
    _check(shape, k, act, res)


@pytest.mark.parametrize("act", [None, "gelu"])
def test_strided_inputs(act):
    """x a crop of a larger map (row and image strides), the residual every other pixel group of a wider tensor."""
    big = torch.randn(2, 10, 8, 32)
    wide = torch.randn(2, 8, 8, 64)
    _check((2, 8, 8, 32), 3, act, "tensor", x_view=big[:, 1:9], res_view=wide[..., :32])


def test_gelu_matches_pytorch_over_its_range():
    """A centre-tap kernel leaves GELU(x): the A&S erf against PyTorch's exact GELU, tails included."""
    x = torch.linspace(-30, 30, 16 * 41).view(1, 41, 1, 16).repeat(1, 1, 3, 1).contiguous()
    w = torch.zeros(16, 1, 3, 3)
    w[:, 0, 1, 1] = 1
    y = dw.depthwise_conv(x, w, None, None, "gelu")
    torch.testing.assert_close(y, F.gelu(x), atol=1e-6, rtol=1e-6)


def test_inference_saves_nothing():
    x = torch.randn(2, 8, 8, 16, requires_grad=True)
    w = torch.randn(16, 1, 3, 3, requires_grad=True)
    with torch.no_grad():
        y = dw.depthwise_conv(x, w, None, "self", "gelu")
    assert y.grad_fn is None and not y.requires_grad


def test_double_backward_is_refused():
    x = torch.randn(2, 8, 8, 16, requires_grad=True)
    w = torch.randn(16, 1, 3, 3, requires_grad=True)
    y = dw.depthwise_conv(x, w, None, "self")
    (gx,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()


def test_bad_arguments_are_one_clear_error():
    x, w = torch.randn(1, 4, 4, 16), torch.randn(16, 1, 3, 3)
    with pytest.raises(ValueError, match="act"):
        dw.depthwise_conv(x, w, act="relu")
    with pytest.raises(ValueError, match="residual"):
        dw.depthwise_conv(x, w, residual="x")


def test_eligibility_and_fallbacks(monkeypatch):
    x, w3, w5 = torch.randn(2, 8, 8, 32), torch.randn(32, 1, 3, 3), torch.randn(32, 1, 5, 5)
    assert dw.eligible(x, w3) and dw.eligible(x, w3, torch.randn(2, 8, 8, 32))
    assert not dw.eligible(x, w5)  # inference: oneDNN's 5x5 forward is faster
    assert dw.eligible(x, w5.requires_grad_())  # training: the kernel's 5x5 gradients are faster
    assert not dw.eligible(torch.randn(2, 8, 8, 24), torch.randn(24, 1, 3, 3))  # C not a multiple of 16
    assert not dw.eligible(x.double(), w3.double())
    assert not dw.eligible(x.bfloat16(), w3.bfloat16())
    assert not dw.eligible(torch.randn(2, 8, 2, 32), w3)  # map narrower than the kernel
    assert not dw.eligible(torch.randn(2, 8, 8, 64)[..., :32], w3)  # pixels not C apart
    assert not dw.eligible(x, torch.randn(32, 1, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not dw.eligible(x, w3)
    with FlopCounterMode(display=False):
        assert not dw.eligible(x, w3)
    with kernels.reference():
        assert not dw.eligible(x, w3)
    assert dw.eligible(x, w3)
    set_policy(monkeypatch, depthwise=False)
    assert not dw.eligible(x, w3) and not dw.takes(32, 3, x.device, x.dtype)


def _kernel_calls(monkeypatch) -> list:
    calls = []
    real = dw.depthwise_conv
    monkeypatch.setattr(dw, "depthwise_conv", lambda *a, **k: calls.append(a[3] if len(a) > 3 else None)
                        or real(*a, **k))
    return calls


def _run(module, inputs, train):
    module.train(train)
    module.zero_grad(set_to_none=True)
    dtype = next(module.parameters()).dtype
    xs = [t.detach().to(dtype).clone().requires_grad_(train) for t in inputs]
    with torch.set_grad_enabled(train):
        y = module(*xs)
        if not train:
            return y.double(), None, None
        (y * torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)).sum().backward()
    grads = {n: p.grad.double() for n, p in module.named_parameters()}
    return y.detach().double(), [t.grad.double() for t in xs], grads


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("case", ["cpe", "lce", "ffn"])
def test_modules_route_to_the_kernel_and_equal_pytorch(case, train, monkeypatch):
    """CPE (x + conv(x)), LCE (conv(v) + y) and the ConvFFN (GELU fused) on the kernel against the same module in
    float64 on PyTorch's ops, values and all gradients; and which calls reach the kernel (fails if the routing is
    reverted)."""
    torch.manual_seed(0)
    x, y = torch.randn(2, 8, 8, 32), torch.randn(2, 8, 8, 32)
    if case == "ffn":
        module, inputs = ConvFFN(32, 64), [x]
    else:
        conv = DWConv(32, 3 if case == "cpe" else 5)
        module, inputs = (_SelfResidual(conv), [x]) if case == "cpe" else (conv, [x, y])
    calls = _kernel_calls(monkeypatch)
    on = _run(module, inputs, train)
    set_policy(monkeypatch, depthwise=False)
    ref = _run(copy.deepcopy(module).double(), inputs, train)
    expected = {"cpe": ["self"], "ffn": ["self"], "lce": [] if not train else [None]}[case]
    assert [c if isinstance(c, str) else None for c in calls] == expected
    torch.testing.assert_close(on[0], ref[0], atol=1e-5, rtol=1e-5)
    if train:
        for a, b in zip(on[1], ref[1]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        for n in on[2]:  # parameter gradients sum B*H*W terms: tolerance scaled by their size
            torch.testing.assert_close(on[2][n], ref[2][n], atol=1e-5 * max(1.0, ref[2][n].abs().max().item()),
                                       rtol=1e-5)


class _SelfResidual(torch.nn.Module):
    """CPE's call: conv(x, x)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, a):
        return self.inner(a, a)


def _saved_bytes(fn) -> int:
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


def test_ffn_keeps_one_hidden_tensor_less_for_its_backward(monkeypatch):
    """The fused ConvFFN stores fc1's output only (GELU(h) is recomputed): one hidden-sized tensor less than PyTorch's
    ops, which keep h for GELU's gradient and GELU(h) for the conv's."""
    torch.manual_seed(0)
    m = ConvFFN(32, 64)
    x = torch.randn(2, 8, 8, 32, requires_grad=True)
    on = _saved_bytes(lambda: m(x))
    set_policy(monkeypatch, depthwise=False)
    off = _saved_bytes(lambda: m(x))
    assert off - on >= 2 * 8 * 8 * 64 * 4


def test_ffn_with_dropout_in_training_keeps_pytorch_ops(monkeypatch):
    """Dropout sits between GELU and the conv: the fused pass would skip it."""
    m = ConvFFN(32, 64, drop=0.1).train()
    assert not kernels.ffn_fused(m, torch.randn(2, 8, 8, 32))
    assert kernels.ffn_fused(m.eval(), torch.randn(2, 8, 8, 32))


def test_flop_counts_are_unchanged(monkeypatch):
    """The FLOP counter is a dispatch mode: the kernel steps aside and the counter sees aten's conv."""
    m = ConvFFN(32, 64).eval()
    x = torch.randn(2, 8, 8, 32)
    counts = []
    for on in (True, False):
        set_policy(monkeypatch, depthwise=on)
        with FlopCounterMode(display=False) as fc:
            m(x)
        counts.append(fc.get_total_flops())
    assert counts[0] == counts[1] > 0


def test_the_kernels_build_where_a_compiler_exists():
    """With a compiler present, a failed build is a failure here, not a skip of every kernel test."""
    lib = dw.build.build()  # raises RuntimeError with the compiler's first error line
    assert lib.is_file() and dw.build.available()

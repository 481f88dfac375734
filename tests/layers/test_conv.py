"""`DWConv` computes depthwise weight gradients its own way in float32 CPU training; they must equal aten's."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from swinrmt.kernels import onednn
from swinrmt.layers import conv
from swinrmt.kernels.onednn import depthwise_weight_grad
from swinrmt.layers.conv import DWConv
from tests.layers._kernels import set_policy

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")

# (H, W, kernel): wide kernels, maps smaller than the kernel, one-row and one-column maps
CASES = [(7, 9, 5), (4, 4, 5), (2, 2, 3), (1, 6, 5), (6, 1, 5), (9, 8, 7), (2, 3, 7), (5, 5, 3)]


def _native_grads(m: DWConv, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().double().requires_grad_()
    w = m.conv.weight.detach().double().requires_grad_()
    b = m.conv.bias.detach().double().requires_grad_()
    k = w.shape[-1]
    y = F.conv2d(x.permute(0, 3, 1, 2), w, b, 1, k // 2, 1, w.shape[0]).permute(0, 2, 3, 1)
    return torch.autograd.grad(y, (x, w, b), g.double())


@pytest.mark.parametrize("h,w,k", CASES)
def test_weight_grad_matches_aten(h, w, k):
    torch.manual_seed(0)
    x = torch.randn(3, 6, h, w).contiguous(memory_format=torch.channels_last)
    g = torch.randn(3, 6, h, w).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(6, 1, k, k)
    ref = torch.ops.aten.convolution_backward(g.double(), x.double(), wt.double(), None, [1, 1], [k // 2, k // 2],
                                              [1, 1], False, [0, 0], 6, [False, True, False])[1]
    torch.testing.assert_close(depthwise_weight_grad(g, x, k, k).double(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("h,w,k", CASES)
def test_dwconv_values_and_gradients_match_aten(h, w, k):
    torch.manual_seed(0)
    m = DWConv(6, k)
    x = torch.randn(2, h, w, 6, requires_grad=True)
    y = m(x)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, m.conv.weight, m.conv.bias), g)
    for a, r in zip(got, _native_grads(m, x, g)):
        torch.testing.assert_close(a.double(), r, atol=1e-4, rtol=1e-4)


def _grad_fn(m: DWConv, x: torch.Tensor) -> str:
    return type(m(x).grad_fn.next_functions[0][0]).__name__  # the node under the output permute


def test_training_takes_the_fast_weight_grad_only_where_aten_is_slow():
    """Fails if the fast weight gradient is switched off for 5x5 kernels or 3x3 kernels on 2x2 maps."""
    x = torch.randn(2, 8, 8, 4, requires_grad=True)
    assert _grad_fn(DWConv(4, 5), x) == "DepthwiseConv2dBackward"
    assert _grad_fn(DWConv(4, 3), x[:, :2, :2].detach().requires_grad_()) == "DepthwiseConv2dBackward"
    assert _grad_fn(DWConv(4, 3), x) != "DepthwiseConv2dBackward"  # aten's own is fast there


def test_falls_back_to_aten_where_the_fast_path_does_not_apply():
    m = DWConv(4, 5)
    x = torch.randn(2, 8, 8, 4)
    with torch.no_grad():
        assert m(x).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _grad_fn(m, x) != "DepthwiseConv2dBackward"
    assert _grad_fn(m.double(), x.double()) != "DepthwiseConv2dBackward"
    m.float().requires_grad_(False)
    assert m(x.requires_grad_()).grad_fn is not None
    assert _grad_fn(m, x) != "DepthwiseConv2dBackward"  # frozen weights: no weight gradient to speed up


def _training_flops(m: DWConv, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        m(x).sum().backward()
    return counter.get_total_flops()


def test_flop_count_is_unchanged(monkeypatch):
    """The FLOP counter is a dispatch mode: it must see aten's convolution, as with the fast path switched off."""
    m = DWConv(4, 5)
    x = torch.randn(2, 8, 8, 4, requires_grad=True)
    fast = _training_flops(m, x)
    set_policy(monkeypatch, dw_weight_grad=False)
    assert fast == _training_flops(m, x) > 0


def test_double_backward_matches_aten():
    torch.manual_seed(0)
    m = DWConv(3, 5)
    x = torch.randn(2, 6, 5, 3, requires_grad=True)
    gx, gw = torch.autograd.grad(m(x).pow(2).sum(), (x, m.conv.weight), create_graph=True)
    got = torch.autograd.grad(gx.pow(2).sum() + gw.pow(2).sum(), (x, m.conv.weight))
    xd = x.detach().double().requires_grad_()
    wd = m.conv.weight.detach().double().requires_grad_()
    yd = F.conv2d(xd.permute(0, 3, 1, 2), wd, m.conv.bias.detach().double(), 1, 2, 1, 3)
    rx, rw = torch.autograd.grad(yd.pow(2).sum(), (xd, wd), create_graph=True)
    ref = torch.autograd.grad(rx.pow(2).sum() + rw.pow(2).sum(), (xd, wd))
    for a, r in zip(got, ref):
        torch.testing.assert_close(a.double(), r, atol=1e-3, rtol=1e-4)


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd kernel size"):
        DWConv(4, 4)


def _count(fn, op: str) -> int:
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == op)


@pytest.mark.skipif(not onednn.HAVE_FUSED_CONV, reason="this torch build has no fused oneDNN convolution")
@pytest.mark.parametrize("k", [3, 5])
def test_residual_add_fuses_the_add_in_inference_and_matches_in_training(k):
    """DWConv(x, other) = other + conv(x): one fused oneDNN op in float32 CPU inference (fails if the fusion is
    reverted), the plain sum wherever autograd records, and the same values in both."""
    torch.manual_seed(0)
    m = DWConv(6, k)
    x, other = torch.randn(2, 7, 5, 6), torch.randn(2, 7, 5, 6)
    ref = other + m(x)
    with torch.inference_mode():
        assert _count(lambda: m(x, other), "mkldnn::_convolution_pointwise") == 1
        torch.testing.assert_close(m(x, other), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x, x), x + m(x), atol=1e-5, rtol=1e-5)
        # a strided `other` and the switch take the plain sum
        t = other.transpose(1, 2).contiguous().transpose(1, 2)
        assert _count(lambda: m(x, t), "mkldnn::_convolution_pointwise") == 0
        torch.testing.assert_close(m(x, t), ref, atol=1e-5, rtol=1e-5)
    y = m(x.requires_grad_(), other)
    assert y.grad_fn is not None
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_fused_inference_matches_the_plain_ops_on_whole_models(monkeypatch):
    from swinrmt.registry import create_model

    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for name in ("rmt_tiny", "gated_swinrmt_retention_tiny"):
        m = create_model(name, num_classes=10, img_size=64).eval()
        with torch.inference_mode():
            fused = m(x)
            set_policy(monkeypatch, fuse_inference=False)
            plain = m(x)
            set_policy(monkeypatch, fuse_inference=True)
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)


def _randomise_bn(module: torch.nn.Module) -> None:
    """BN statistics and affine parameters away from the identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            c = bn.num_features
            bn.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
            bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            bn.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


@pytest.mark.parametrize("which", ["stem2", "stem4", "downsample"])
def test_bn_folds_into_the_conv_in_inference_only(which, monkeypatch):
    """Eval inference runs each conv -> BN (-> GELU) as one oneDNN conv with BN folded in; same values as the plain
    layers. Training (BN on batch statistics) and eval with autograd keep the plain layers."""
    torch.manual_seed(0)
    if which == "downsample":
        m, x = conv.ConvDownsample(32, 64), torch.randn(2, 8, 8, 32)
    else:
        m, x = conv.ConvStem(3, 32, stride=int(which[-1])), torch.randn(2, 3, 16, 16)
    _randomise_bn(m)
    m.eval()
    folds = []
    real = onednn.conv_bn
    monkeypatch.setattr(onednn, "conv_bn", lambda *a, **k: folds.append(k.get("gelu", False)) or real(*a, **k))
    with torch.no_grad():
        fused = m(x)
        assert folds == ([False] if which == "downsample" else [True, True, True, False])
        set_policy(monkeypatch, fuse_inference=False)
        plain = m(x)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    set_policy(monkeypatch, fuse_inference=True)
    folds.clear()
    m(x.requires_grad_()).sum().backward()  # eval with autograd: the plain layers, differentiable
    m.train()(x).sum().backward()  # training: batch statistics, never folded
    assert folds == []

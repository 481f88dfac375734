"""Attention routes off the CPU (issue 36), checked on a CPU: every SDPA call in the layout a fused CUDA kernel takes
(4-D, a broadcastable 4-D float bias), the CPU-tuned layout rule applied on the CPU only, and FlexAttention held to
the reference per family."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import swinrmt
from swinrmt import kernels
from swinrmt.kernels import axial, flex, sdpa
from swinrmt.layers.windows import axis_geometry

FAMILIES = ["rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "swin_nano"]


@pytest.mark.parametrize("q_shape,bias_shape", [
    ((2, 4, 3, 16, 8), (4, 3, 16, 16)),  # Swin: (B, nW, heads, N, d), bias (nW, heads, N, N): a view
    ((2, 3, 5, 2, 4, 8), (1, 3, 1, 2, 4, 4)),  # axial windowed width layout: bias broadcast over rows
    ((2, 3, 5, 2, 4, 8), (3, 1, 1, 4, 4)),  # the same with the bias broadcast over windows too
    ((2, 3, 16, 8), (1, 3, 16, 16)),  # already 4-D
])
def test_fused_layout_is_4d_with_a_broadcastable_bias_and_the_same_result(q_shape, bias_shape):
    torch.manual_seed(0)
    q, k, v = (torch.randn(q_shape) for _ in range(3))
    bias = torch.randn(bias_shape)
    q4, k4, v4, b4 = sdpa.fused_layout(q, k, v, bias)
    assert q4.dim() == k4.dim() == v4.dim() == b4.dim() == 4 and b4.shape[0] == 1
    assert b4.shape[1] == q4.shape[1] and b4.shape[2:] == (q.shape[-2], k.shape[-2])
    y = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=b4).reshape(q.shape)
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, attn_mask=bias), rtol=1e-5, atol=1e-6)


def test_the_two_window_rule_is_a_cpu_rule():
    """`windowed_is_faster` was measured on a CPU: on CUDA the whole-axis path (4-D views) is kept."""
    gh = gw = axis_geometry(8, 4, False)
    pol = kernels.policy.AUTO
    with torch.no_grad(), kernels.use(short_attention=False):
        assert axial.windowed_is_faster(pol, gh, gw, torch.empty(1, 8, 8, 2, 16))
        assert not axial.windowed_is_faster(pol, gh, gw, torch.empty(1, 8, 8, 2, 16, device="meta"))


def test_the_sigmoid_window_grouping_is_a_cpu_rule():
    """SWAT's passes merge short windows into block-diagonal sequences on the CPU only (measured there); elsewhere
    every window stays its own sequence."""
    gh = gw = axis_geometry(32, 4, True)  # 8 windows of 4 per axis, as at stage 1 of a nano model at 64 px
    pol = kernels.policy.AUTO
    merged = axial.sigmoid_merge(pol, True, 16, gh, gw, torch.empty(1, 32, 32, 2, 16))
    assert merged[0] > 1 and merged[1] > 1
    assert axial.sigmoid_merge(pol, True, 16, gh, gw, torch.empty(1, 32, 32, 2, 16, device="meta")) == (1, 1)
    assert axial.sigmoid_merge(pol, False, 16, gh, gw, torch.empty(1, 32, 32, 2, 16)) == (1, 1)  # softmax: never


def _sdpa_calls(monkeypatch) -> list[tuple[tuple[int, ...], tuple[int, ...] | None, torch.dtype | None]]:
    calls = []
    original = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, *a, **kw):
        calls.append((tuple(q.shape), None if attn_mask is None else tuple(attn_mask.shape),
                      None if attn_mask is None else attn_mask.dtype))
        return original(q, k, v, attn_mask, *a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return calls


@pytest.mark.parametrize("name", FAMILIES)
def test_every_sdpa_call_is_fused_kernel_shaped_on_the_cuda_route(name, monkeypatch):
    """With the CUDA route's decisions taken on a CPU (the fused layout, no CPU-only kernel, no CPU-only layout
    rule), a training step and an inference pass make only 4-D SDPA calls with a 4-D bias broadcast over the batch
    (what the memory-efficient and cuDNN kernels take), and give the CPU route's results."""
    torch.manual_seed(0)
    model = swinrmt.create_model(name, num_classes=10, img_size=64)
    x = torch.randn(2, 3, 72, 56)
    with kernels.use(short_attention=False, windowed_if_two_windows=False):
        torch.manual_seed(1)  # the same drop-path draws in both passes
        ref = model(x)
        ref.square().sum().backward()
        ref_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        monkeypatch.setattr(sdpa, "FUSED_LAYOUT_DEVICES", {"cuda", "cpu"})
        calls = _sdpa_calls(monkeypatch)
        torch.manual_seed(1)
        y = model(x)
        y.square().sum().backward()
        model.eval()
        with torch.no_grad():
            model(x)
    if name != "gated_swinrmt_swat_nano":  # SWAT's passes are sigmoid attention: no SDPA call at all
        assert calls
    for q_shape, b_shape, b_dtype in calls:
        assert len(q_shape) == 4 and b_shape is not None and len(b_shape) == 4, (q_shape, b_shape)
        assert b_shape[0] == 1 and b_shape[1] in (1, q_shape[1]) and b_dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    for p, g in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_flex_attention_route_equals_the_reference(name, monkeypatch):
    """The FlexAttention route (policy `flex_attention`) in inference, uncompiled (the same math as the compiled
    kernel, scores materialised), against the plain PyTorch reference; training on the CPU stays on SDPA (torch
    2.13 has no FlexAttention backward on the CPU)."""
    monkeypatch.setattr(flex, "COMPILE", False)
    flex._flex.cache_clear()
    torch.manual_seed(0)
    model = swinrmt.create_model(name, num_classes=10, img_size=64).eval()
    x = torch.randn(2, 3, 72, 56)
    used = []
    original = flex.biased_attention
    monkeypatch.setattr(flex, "biased_attention", lambda *a, **k: used.append(1) or original(*a, **k))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "flex_attention called without torch.compile()"
        with kernels.reference():
            ref = model(x)
        with kernels.use(short_attention=False, flex_attention=True):
            y = model(x)
    assert bool(used) == (name != "gated_swinrmt_swat_nano")
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    x.requires_grad_(True)
    assert not flex.takes(x)  # CPU + grad: SDPA
    flex._flex.cache_clear()


@pytest.mark.slow
def test_compiled_flex_attention_on_cpu_equals_sdpa():
    """The compiled FlexAttention kernel on the CPU (about a minute to compile on 2 cores) against SDPA."""
    flex._flex.cache_clear()
    torch.manual_seed(0)
    model = swinrmt.create_model("gated_swinrmt_retention_nano", num_classes=10, img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        with kernels.reference():
            ref = model(x)
        with kernels.use(short_attention=False, flex_attention=True):
            y = model(x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)

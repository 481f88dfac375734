"""`biased_attention` picks a kernel per device and dtype; every choice must compute the same function."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinrmt.kernels.sdpa import biased_attention


def _reference(q, k, v, bias, scale):
    s = (q.double() @ k.double().transpose(-1, -2)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    return torch.softmax(s + bias.double(), dim=-1) @ v.double()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)], ids=["fp32", "bf16"])
@pytest.mark.parametrize("scale", [None, 1.0, 0.3])
def test_matches_softmax_attention_with_grads(dtype, tol, scale):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8) for _ in range(3))
    bias = torch.randn(1, 2, 7, 7)
    bias[..., 3] = -1.0e4  # a masked key column, as the window masks make
    leaves = [t.detach().to(dtype).requires_grad_() for t in (q, k, v)]
    y = biased_attention(*leaves, bias, scale=scale)
    assert y.dtype == dtype and y.shape == (3, 2, 7, 8)
    ref_leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    y_ref = _reference(*ref_leaves, bias, scale)
    torch.testing.assert_close(y.double(), y_ref, atol=tol, rtol=tol)
    w = torch.linspace(-1, 1, y.numel()).view_as(y)
    (y.float() * w).sum().backward()
    (y_ref * w.double()).sum().backward()
    for a, b in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad.double(), b.grad, atol=5 * tol, rtol=5 * tol)


def test_low_precision_cpu_avoids_the_slow_fused_kernel():
    """On CPU in bf16 the explicit form is used (the fused masked kernel measured 3-10x slower there)."""
    from torch.profiler import profile

    q = k = v = torch.randn(4, 2, 16, 8, dtype=torch.bfloat16)
    bias = torch.zeros(1, 2, 16, 16)
    with profile() as prof:
        biased_attention(q, k, v, bias)
    names = {e.key for e in prof.key_averages()}
    assert not any("flash_attention" in n for n in names), names
    with profile() as prof:
        biased_attention(q.float(), k.float(), v.float(), bias)
    names = {e.key for e in prof.key_averages()}
    assert any("scaled_dot_product" in n for n in names), names
    torch.testing.assert_close(biased_attention(q, k, v, bias).float(),
                               F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=bias),
                               atol=3e-2, rtol=3e-2)

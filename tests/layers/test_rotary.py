"""The complex-multiply rotary must equal the real formula it replaces (values and gradients)."""
import pytest
import torch

from swinrmt.kernels.rotate import complex_fits
from swinrmt.kernels.rotate import rotate as apply_rotary
from swinrmt.layers.rotary import rotary_tables, rotate_every_two


def _real(x, sin, cos):
    return x * cos + rotate_every_two(x) * sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["heads_first", "flat_hw"])
def test_complex_rotary_matches_real_formula(dtype, layout):
    torch.manual_seed(0)
    if layout == "heads_first":  # (B, heads, L, d) against (L, d) tables, as in MaSA2d
        x = torch.randn(2, 3, 20, 8, dtype=dtype)
        sin, cos = rotary_tables(20, 8, dtype, x.device)
    else:  # (B, H, W, heads, d) against (H, W, 1, d), as RMT's decomposed passes use it
        x = torch.randn(2, 4, 5, 3, 8, dtype=dtype)
        sin, cos = (t.view(4, 5, 1, 8) for t in rotary_tables(20, 8, dtype, x.device))
    assert complex_fits(x)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = apply_rotary(x1, sin, cos), _real(x2, sin, cos)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y1, y2, atol=tol, rtol=tol)
    g = torch.randn_like(y1)
    y1.backward(g), y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=tol, rtol=tol)


def test_rotary_falls_back_where_complex_cannot_run():
    x = torch.randn(2, 6, 8)
    sin, cos = rotary_tables(6, 8, x.dtype, x.device)
    odd = torch.randn(2, 6, 9)[..., 1:]  # odd storage offset: no complex view
    assert not complex_fits(odd) and not complex_fits(x.bfloat16())
    torch.testing.assert_close(apply_rotary(odd, sin, cos), _real(odd, sin, cos))
    yb = apply_rotary(x.bfloat16(), sin.bfloat16(), cos.bfloat16())
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), _real(x, sin, cos), atol=3e-2, rtol=3e-2)

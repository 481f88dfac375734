"""The G1 output gate's memory-lean backward (`SigmoidGate`) must equal autograd's, in values and gradients."""
from __future__ import annotations

import pytest
import torch

from swinrmt.kernels.pointwise import SigmoidGate
from swinrmt.layers.gates import OutputGate, gate_product
from swinrmt.layers.linear import Linear


def _plain(y, a, heads):
    return gate_product(y, torch.sigmoid(a), heads)


@pytest.mark.parametrize("heads", [0, 4], ids=["elementwise", "headwise"])
def test_sigmoid_gate_matches_autograd(heads):
    torch.manual_seed(0)
    y = torch.randn(2, 5, 3, 32, dtype=torch.float64, requires_grad=True)
    a = (4 * torch.randn(2, 5, 3, heads or 32, dtype=torch.float64)).requires_grad_()
    w = torch.randn_like(y)
    out = SigmoidGate.apply(y, a, heads)
    ref = _plain(y, a, heads)
    torch.testing.assert_close(out, ref)
    g = torch.autograd.grad((out * w).sum(), (y, a))
    g_ref = torch.autograd.grad((ref * w).sum(), (y, a))
    for got, want in zip(g, g_ref):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda y, a: SigmoidGate.apply(y, a, heads), (y, a))
    assert torch.autograd.gradgradcheck(lambda y, a: SigmoidGate.apply(y, a, heads), (y, a))


def test_sigmoid_gate_exact_where_the_gate_underflows():
    """dL/da comes from z (1 - g), never from z / g: exact (0) where sigmoid(a) underflows to 0."""
    y = torch.ones(4, requires_grad=True)
    a = torch.tensor([-200.0, -50.0, 0.0, 50.0], requires_grad=True)
    SigmoidGate.apply(y, a, 0).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(y.grad).all()
    torch.testing.assert_close(a.grad, torch.sigmoid(a) * (1 - torch.sigmoid(a)))


@pytest.mark.parametrize("mode", ["elementwise", "headwise"])
def test_gate_then_projection_keeps_one_tensor_less(mode):
    """Autograd would keep y, sigmoid(a) and W_O's input z; the gate keeps z (shared with W_O) and a."""
    torch.manual_seed(0)
    gate, proj = OutputGate(32, 4, mode), Linear(32, 32)
    x = torch.randn(4, 8, 8, 32)
    y = torch.randn(4, 8, 8, 32, requires_grad=True)

    def saved(fn) -> int:
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = proj(fn())
        return sum(storages.values()), out

    lean, out = saved(lambda: gate(y, x))
    plain, ref = saved(lambda: _plain(y, gate.proj(x), gate.num_heads if mode == "headwise" else 0))
    torch.testing.assert_close(out, ref)
    assert lean <= plain - y.numel() * 4


def test_gate_inference_is_the_plain_product():
    torch.manual_seed(0)
    gate = OutputGate(16, 2).eval()
    y, x = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        out = gate(y, x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, y * torch.sigmoid(x @ gate.proj.weight.T + gate.proj.bias))

"""DWConv(residual=True) folds x + conv(x) into one kernel: same values and gradients as the two-step form."""
import pytest
import torch

from swinrmt.layers.conv import DWConv


@pytest.mark.parametrize("k", [3, 5])
def test_residual_fold_equals_add(k):
    torch.manual_seed(0)
    folded = DWConv(6, k, residual=True).double()
    plain = DWConv(6, k).double()
    plain.load_state_dict(folded.state_dict())  # same parameters, same names
    x1 = torch.randn(2, 7, 9, 6, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = folded(x1), x2 + plain(x2)
    torch.testing.assert_close(y1, y2)
    g = torch.randn_like(y1)
    y1.backward(g), y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    for a, b in zip(folded.parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        DWConv(4, 4)

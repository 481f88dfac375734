"""MixupCutmix: smoothing-only mode, mixup and cutmix arithmetic, determinism, errors."""
from __future__ import annotations

import pytest
import torch

from swinrmt.data import MixupCutmix


def _batch():
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return x, torch.tensor([0, 1, 2, 3, 4, 2])  # y[0] != y[-1], the pair mixed into sample 0


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_alphas_zero_only_smooth_the_targets():
    x, y = _batch()
    xm, t = MixupCutmix(5, label_smoothing=0.1)(x, y, _g())
    assert torch.equal(xm, x)
    expected = torch.full((6, 5), 0.02)
    expected[torch.arange(6), y] = 0.92
    assert torch.allclose(t, expected)


def test_mixup_is_a_convex_pair_with_the_reversed_batch():
    x, y = _batch()
    xm, t = MixupCutmix(5, mixup_alpha=1.0)(x, y, _g(3))
    lam = t[0, y[0]].item()  # no smoothing and y[0] != y[-1]: the target weight of the own label is lam
    assert 0 < lam < 1
    assert torch.allclose(xm, lam * x + (1 - lam) * x.flip(0), atol=1e-6)
    assert torch.allclose(t.sum(1), torch.ones(6))
    xm2, t2 = MixupCutmix(5, mixup_alpha=1.0)(x, y, _g(3))
    assert torch.equal(xm, xm2) and torch.equal(t, t2)
    _, t3 = MixupCutmix(5, mixup_alpha=1.0)(x, y, _g(4))
    assert not torch.equal(t, t3)


def test_cutmix_target_weight_equals_the_pasted_area():
    x, y = _batch()
    mix = MixupCutmix(5, cutmix_alpha=1.0, label_smoothing=0.1)
    seen = 0
    for s in range(10):
        xm, t = mix(x, y, _g(s))
        pasted = (xm != x).any(1)  # (B, H, W): where sample b took pixels from sample B-1-b
        frac = pasted[0].float().mean().item()
        if frac == 0:
            continue
        seen += 1
        assert torch.equal(xm[0][:, pasted[0]], x[-1][:, pasted[0]])
        lam = 1 - frac
        off = 0.1 / 5
        assert t[0, y[0]].item() == pytest.approx(lam * (0.9 + off) + (1 - lam) * off, abs=1e-5)
        assert t[0, y[-1]].item() == pytest.approx(lam * off + (1 - lam) * (0.9 + off), abs=1e-5)
    assert seen >= 5


def test_switch_and_prob():
    x, y = _batch()
    never = MixupCutmix(5, mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.0)
    assert torch.equal(never(x, y, _g())[0], x)
    kinds = set()
    both = MixupCutmix(5, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5)
    for s in range(20):
        xm, _ = both(x, y, _g(s))
        changed = (xm != x).any(1)[0].float().mean().item()
        kinds.add("mixup" if changed == 1.0 else "cutmix")
    assert kinds == {"mixup", "cutmix"}


def test_errors():
    x, y = _batch()
    with pytest.raises(ValueError, match=r"label 7 out of range \[0, 5\)"):
        MixupCutmix(5)(x, torch.tensor([0, 1, 2, 3, 4, 7]), _g())
    with pytest.raises(ValueError, match="label_smoothing"):
        MixupCutmix(5, label_smoothing=1.0)
    with pytest.raises(ValueError, match="alpha"):
        MixupCutmix(5, mixup_alpha=-1)

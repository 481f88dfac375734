import math

import pytest
import torch

from swinrmt.layers import decay
from swinrmt.layers.mixers import RetentionMixer, SwatMixer


def test_decay_rates_follow_rmt_formula():
    g = decay.decay_rates(8, a=2.0, b=4.0)
    expected = [1 - 2 ** (-(2 + 4 * h / 8)) for h in range(8)]
    assert torch.allclose(g, torch.tensor(expected, dtype=torch.float64))
    assert torch.all(g[1:] > g[:-1]), "head 0 must decay fastest"


def test_log_decay_tables_equal_distance_times_log_gamma():
    lg = decay.log_decay_rates(4, 2.0, 6.0)
    t = decay.log_decay_1d(5, lg)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                assert t[h, i, j].item() == pytest.approx(abs(i - j) * math.log(1 - 2 ** (-(2 + 6 * h / 4))))
    t2 = decay.log_decay_2d(3, 4, lg)
    assert t2.shape == (4, 12, 12)
    # token (0,0) vs (2,3): Manhattan distance 5
    assert t2[1, 0, 2 * 4 + 3].item() == pytest.approx(5 * lg[1].item())


@pytest.mark.parametrize("n", [1, 2, 5, 8, 16])
def test_balanced_alibi_slopes_signs(n):
    s = decay.balanced_alibi_slopes(n)
    half = (n + 1) // 2
    assert s.shape == (n,)
    assert torch.all(s[:half] < 0), "fast-decay (first) heads favour near tokens"
    assert torch.all(s[half:] > 0), "slow-decay heads keep far tokens"
    assert torch.allclose(s[:half].abs(), 2.0 ** -torch.arange(1, half + 1, dtype=torch.float64))


def test_retention_pass_table_is_log_decay_plus_mask():
    m = RetentionMixer(16, 4, window_size=4, decay_a=2.0, decay_b=4.0)
    gw = m.geometry(4, 4)[1]  # one full window, no shift, no padding
    t = m.pass_tables(gw, "w", torch.float32, torch.device("cpu")).add
    expected = decay.log_decay_1d(4, decay.log_decay_rates(4, 2.0, 4.0)).float()
    assert torch.allclose(t[:, 0, 0], expected)


def test_swat_multiplier_is_gamma_power_distance():
    m = SwatMixer(16, 4, window_size=5, decay_a=2.0, decay_b=5.0)
    gw = m.geometry(5, 5)[1]
    t = m.pass_tables(gw, "w", torch.float64, torch.device("cpu"))
    g = decay.decay_rates(4, 2.0, 5.0)
    dist = decay.distance_1d(5)
    assert torch.allclose(t.mul[:, 0, 0], g[:, None, None] ** dist)
    # additive part: balanced ALiBi on |delta| and b = -log(n)
    slopes = decay.balanced_alibi_slopes(4)
    assert torch.allclose(t.add[:, 0, 0], slopes[:, None, None] * dist - math.log(5))

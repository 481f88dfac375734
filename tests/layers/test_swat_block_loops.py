"""An independent value test of a shifted, windowed SWAT mixer: float64 loops over original (unrolled) coordinates.

Shares no table, roll, pad or layout code with the package: the shift mask, the padding mask, the -log n bias, the
balanced ALiBi slopes and the decay are recomputed here from docs/design.md §3, and every sum is a Python loop. The
mixer runs in float32 at head dim 16, where the CPU kernels take the passes when they are built.
"""
import math

import pytest
import torch

from swinrmt.layers.mixers import SwatMixer


def _axis(length: int, window: int, shift: bool):
    """For each original position: (window index, region, rolled position) after a cyclic roll by -shift."""
    m = min(window, length)
    s = m // 2 if shift and length > m else 0
    out = []
    for o in range(length):
        r = (o - s) % length  # rolled position
        region = 1 if s and r >= length - s else 0
        out.append((r // m, region, r))
    return out


def _pass(q, k, v, axis_info, heads, hd, slopes, gammas):
    """One sigmoid pass along a line: q, k, v lists of (C,) float64 tensors, one per original position."""
    out = []
    for i, (wi, ri, pi) in enumerate(axis_info):
        keys = [j for j, (wj, rj, _) in enumerate(axis_info) if wj == wi and rj == ri]
        y = torch.zeros(heads * hd, dtype=torch.float64)
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            for j in keys:
                dist = abs(axis_info[j][2] - pi)
                score = float(q[i][sl] @ k[j][sl]) / math.sqrt(hd) - math.log(len(keys)) + slopes[h] * dist
                a = 1.0 / (1.0 + math.exp(-score)) * gammas[h] ** dist
                y[sl] += a * v[j][sl]
        out.append(y)
    return out


def reference(mixer: SwatMixer, x: torch.Tensor, window: int) -> torch.Tensor:
    p = {n: t.detach().double() for n, t in mixer.named_parameters()}
    b, height, width, c = x.shape
    heads, hd = mixer.num_heads, c // mixer.num_heads
    half = (heads + 1) // 2
    slopes = [-(2.0 ** -(h + 1)) for h in range(half)] + [2.0 ** -(h + 1) for h in range(heads - half)]
    gammas = [1 - 2 ** -(2 + 4 * h / heads) for h in range(heads)]
    xd = x.double()
    q = xd @ p["q.weight"].T + p["q.bias"]
    k = xd @ p["k.weight"].T + p["k.bias"]
    v = (xd @ p["v.value.weight"].T + p["v.value.bias"]) * torch.nn.functional.silu(
        xd @ p["v.gate.weight"].T + p["v.gate.bias"])
    aw, ah = _axis(width, window, True), _axis(height, window, True)
    y = torch.zeros_like(q)
    for bi in range(b):
        yw = torch.zeros(height, width, c, dtype=torch.float64)
        for r in range(height):  # width pass, row by row
            yw[r] = torch.stack(_pass(list(q[bi, r]), list(k[bi, r]), list(v[bi, r]), aw, heads, hd, slopes, gammas))
        for col in range(width):  # height pass on the width pass's output
            y[bi, :, col] = torch.stack(_pass(list(q[bi, :, col]), list(k[bi, :, col]), list(yw[:, col]), ah, heads,
                                              hd, slopes, gammas))
    yh = y.view(b, height, width, heads, hd)
    yh = yh / torch.sqrt((yh * yh).mean(-1, keepdim=True) + 1e-6)  # per-head RMS norm
    y = yh.reshape(b, height, width, c) * p["head_norm_weight"]
    return y @ p["proj.weight"].T + p["proj.bias"]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("size", [(5, 7), (8, 8)])  # padded and shifted on both axes; shifted, no padding
def test_shifted_windowed_swat_matches_float64_loops(train, size):
    torch.manual_seed(0)
    mixer = SwatMixer(32, num_heads=2, window_size=4, shift=True)
    with torch.no_grad():  # non-trivial norm weight and biases, so a dropped term shows
        for prm in mixer.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    mixer.train(train)
    x = torch.randn(2, *size, 32, requires_grad=train)
    with torch.set_grad_enabled(train):
        got = mixer(x)
    want = reference(mixer, x.detach(), window=4)
    torch.testing.assert_close(got.detach().double(), want, rtol=1e-4, atol=1e-5)

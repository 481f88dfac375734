"""Loop-based reference implementations, written independently of the package, for equivalence tests.

Deliberately naive: explicit loops over heads, rows and columns, plain softmax / sigmoid on 1-D score vectors.
"""
from __future__ import annotations

import math

import torch


def gammas(num_heads: int, a: float, b: float) -> list[float]:
    return [1.0 - 2.0 ** (-(a + b * h / num_heads)) for h in range(num_heads)]


def rotate(x: torch.Tensor, pos: float) -> torch.Tensor:
    """RMT's rotary code on one vector x (d,), position `pos`."""
    d = x.shape[-1]
    out = torch.empty_like(x)
    for i in range(d // 2):
        theta = pos / (10000 ** (i / (d // 2 - 1))) if d // 2 > 1 else pos
        c, s = math.cos(theta), math.sin(theta)
        x1, x2 = x[2 * i], x[2 * i + 1]
        out[2 * i] = x1 * c - x2 * s
        out[2 * i + 1] = x2 * c + x1 * s
    return out


def decomposed_retention(q, k, v, num_heads, a=2.0, b=4.0, rotary=False, kind="softmax",
                         alibi=None, log_n_bias=False, post_norm=False):
    """RMT's decomposed attention on a whole (H, W) map, one image: q, k, v (H, W, C) -> (H, W, C).

    Width pass: for each row, attention over the row's tokens applied to v. Height pass: for each column, attention
    over the column's tokens applied to the width-pass result. kind="sigmoid" gives SWAT's pass
    sigmoid(s + b + slope*|d|) * gamma^|d| with b = -log(n) when log_n_bias.
    """
    H, W, C = q.shape
    d = C // num_heads
    g = gammas(num_heads, a, b)
    out = torch.zeros_like(v)
    for h in range(num_heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = q[..., sl].clone(), k[..., sl].clone(), v[..., sl]
        if rotary:
            for y in range(H):
                for x in range(W):
                    qh[y, x] = rotate(qh[y, x], y * W + x)
                    kh[y, x] = rotate(kh[y, x], y * W + x)
        mid = torch.zeros_like(vh)
        for y in range(H):  # width pass
            for x in range(W):
                s = torch.stack([qh[y, x] @ kh[y, j] / math.sqrt(d) for j in range(W)])
                mid[y, x] = _weights(s, x, W, g[h], kind, alibi, h, log_n_bias) @ vh[y]
        res = torch.zeros_like(vh)
        for x in range(W):  # height pass, on the width-pass result
            for y in range(H):
                s = torch.stack([qh[y, x] @ kh[i, x] / math.sqrt(d) for i in range(H)])
                res[y, x] = _weights(s, y, H, g[h], kind, alibi, h, log_n_bias) @ mid[:, x]
        if post_norm:
            res = res / torch.sqrt((res ** 2).mean(-1, keepdim=True) + 1e-6)
        out[..., sl] = res
    return out


def _weights(s, i, n, gamma, kind, alibi, h, log_n_bias):
    dist = torch.tensor([abs(i - j) for j in range(n)], dtype=s.dtype)
    if kind == "softmax":
        return torch.softmax(s + dist * math.log(gamma), dim=0)
    z = s.clone()
    if alibi is not None:
        z = z + alibi[h] * dist
    if log_n_bias:
        z = z - math.log(n)
    return torch.sigmoid(z) * gamma ** dist


def full_2d_retention(q, k, v, num_heads, a=2.0, b=4.0):
    """RMT's full 2-D MaSA on one image without rotary: (H, W, C) -> (H, W, C)."""
    H, W, C = q.shape
    d = C // num_heads
    g = gammas(num_heads, a, b)
    out = torch.zeros_like(v)
    coords = [(y, x) for y in range(H) for x in range(W)]
    for h in range(num_heads):
        sl = slice(h * d, (h + 1) * d)
        for (y, x) in coords:
            s = torch.stack([q[y, x, sl] @ k[yy, xx, sl] / math.sqrt(d) + (abs(y - yy) + abs(x - xx)) * math.log(g[h])
                             for (yy, xx) in coords])
            w = torch.softmax(s, 0)
            out[y, x, sl] = sum(w[n] * v[yy, xx, sl] for n, (yy, xx) in enumerate(coords))
    return out

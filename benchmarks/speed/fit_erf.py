"""Fits the rational erf of csrc/depthwise_conv.cpp and checks it in float32 arithmetic against math.erf.

    python benchmarks/speed/fit_erf.py

erf(x) ~ x P(x^2) / Q(x^2), Q(0) = 1, on [0, 3.92] (beyond it erf rounds to 1 - 2e-8, so the kernel clamps x). Each
round solves the linearised least squares x P - erf Q = 0 divided by the last round's Q (Loeb's iteration), with
weights that grow where the error is largest (Lawson's), which walks the fit towards the minimax one. Prints the
coefficients as the kernel writes them (highest power first) and the largest errors of erf and of GELU.
"""
from __future__ import annotations

import math

import torch

M, N, CLIP, ROUNDS = 5, 5, 3.92, 60


def fit() -> tuple[torch.Tensor, torch.Tensor, float]:
    x = torch.cat([torch.linspace(0, CLIP, 4000, dtype=torch.float64),
                   CLIP * torch.cos(torch.linspace(0, math.pi / 2, 4000, dtype=torch.float64))]).unique()
    f, z = torch.special.erf(x), x * x
    zp, zq = z[:, None] ** torch.arange(M + 1), z[:, None] ** torch.arange(1, N + 1)
    a = torch.cat([x[:, None] * zp, -f[:, None] * zq], 1)
    q_last, weight = torch.ones_like(x), torch.ones_like(x)
    for _ in range(ROUNDS):
        w = weight.sqrt() / q_last.abs()
        sol = torch.linalg.lstsq(a * w[:, None], (f * w)[:, None]).solution[:, 0]
        p, q = sol[:M + 1], torch.cat([torch.ones(1, dtype=sol.dtype), sol[M + 1:]])
        q_last = zq @ q[1:] + 1
        err = (x * (zp @ p) / q_last - f).abs()
        weight = weight * (err / err.max() + 1e-3)
        weight /= weight.mean()
    return p, q, err.max().item()


def horner(coef: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    acc = torch.full_like(z, coef[-1].item())
    for c in coef.flip(0)[1:]:
        acc = acc * z + c.item()
    return acc


def main() -> None:
    p, q, err = fit()
    p32, q32 = p.float(), q.float()
    x = torch.linspace(-8, 8, 2_000_001)
    xc = x.clamp(-CLIP, CLIP)
    z = xc * xc
    e32 = xc * horner(p32, z) / horner(q32, z)  # the kernel's operations, in float32
    exact = torch.tensor([math.erf(v) for v in x.double().tolist()], dtype=torch.float64)
    gelu, gelu_exact = 0.5 * x.double() * (1 + e32.double()), 0.5 * x.double() * (1 + exact)
    for name, c in (("P", p32), ("Q", q32)):  # the kernel's Horner order: z^5 first
        print(f"{name} (z = x^2, z^5 .. z^0):", ", ".join(f"{v:.9e}" for v in c.flip(0).tolist()))
    print(f"max |error| of the fit (float64): {err:.2e}; of erf in float32: {(e32.double() - exact).abs().max():.2e}; "
          f"of GELU, |error| / (1 + |GELU|): {((gelu - gelu_exact).abs() / (1 + gelu_exact.abs())).max():.2e}")


if __name__ == "__main__":
    main()

"""What wrapping a kernel as `torch.library.custom_op` (with fake and autograd registrations) would cost per call,
against the `torch.autograd.Function` the kernels use now: the same body (a copy of a small tensor), forward and
backward, timed side by side in one process. The per-call difference times the kernel calls in a training step gives
the route's cost; docs/performance.md records the figures and the decision.

    python benchmarks/speed/custom_op_overhead.py [--calls 2000] [--numel 4096]
"""
from __future__ import annotations

import argparse
import time

import torch


@torch.library.custom_op("swinrmt_probe::copy", mutates_args=())
def op_copy(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@op_copy.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def _backward(ctx, grad: torch.Tensor) -> torch.Tensor:
    return grad.clone()


op_copy.register_autograd(_backward)


class FnCopy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone()


def per_call_us(fn, x: torch.Tensor, calls: int, train: bool) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        if train:
            fn(x).sum().backward()
        else:
            with torch.no_grad():
                fn(x)
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--numel", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    x = torch.randn(a.numel, requires_grad=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.numel} floats per call")
    print("| mode | autograd.Function us/call | custom_op us/call | difference us/call |")
    print("|---|---:|---:|---:|")
    for train in (False, True):
        fn_t, op_t = [], []
        for _ in range(a.rounds):  # alternate, so drifts of a shared machine hit both
            fn_t.append(per_call_us(FnCopy.apply, x, a.calls, train))
            op_t.append(per_call_us(op_copy, x, a.calls, train))
        f, o = sorted(fn_t)[a.rounds // 2], sorted(op_t)[a.rounds // 2]
        print(f"| {'train (fwd + bwd)' if train else 'inference'} | {f:.1f} | {o:.1f} | {o - f:+.1f} |")


if __name__ == "__main__":
    main()

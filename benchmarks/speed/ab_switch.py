"""One speed change, on and off, interleaved step by step in one process: its whole-model effect, measured.

    python benchmarks/speed/ab_switch.py SWITCH [--model rmt_tiny] [--mode infer train] [--steps 6] [--stem-stride 4]
                                        [--base REV]
    python benchmarks/speed/ab_switch.py revision --base REV [--model ...]

SWITCH is a field of `swinrmt.kernels.Policy` (one speed route; off runs the plain code the route replaced, so the
ratio is that route alone, with everything else equal) or one of RUNNER_SWITCHES. `kernels --base REV` compares the
C++ kernel library built from this checkout's swinrmt/kernels/csrc (on) with the one built from git revision REV's
(off; the policy's `kernel_sources`); both must have the same entry points. `revision --base REV` compares the whole
package, Python and C++, of this checkout (on) with revision REV's (off): two worker processes, one per revision,
take turns, one step at a time, so only one computes at any moment. Steps alternate on/off (and swap the order
every round), so a shared machine's load drifts hit both sides alike. Batch 64 at 64 px, fp32, the allocator as
swinrmt.runtime sets it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import dataclasses
import io
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

import torch

from swinrmt import kernels
from swinrmt.bench import _Runner
from swinrmt.kernels import build, short_attention
from swinrmt.runtime import keep_freed_memory

# the policy's routes, each switched alone; `sigmoid_groups` with the short-attention kernel off on both sides (where
# the kernel fits, it takes SWAT's passes and the merge does not apply)
POLICY_SWITCHES = [f.name for f in dataclasses.fields(kernels.Policy) if f.type in ("bool", bool)]
ALSO_OFF = {"sigmoid_groups": {"short_attention": False}}


@contextlib.contextmanager
def _prefetch(on: bool):
    """The short-attention kernel prefetching the q, k, v rows of the problem 4 ahead vs not."""
    built_in = short_attention.set_prefetch(0)
    short_attention.set_prefetch(built_in if on else 0)
    try:
        yield
    finally:
        short_attention.set_prefetch(built_in)


@contextlib.contextmanager
def _fused_optimizer(on: bool, runner):
    """Training: the optimizer step on PyTorch's fused kernel vs its CPU default (a Python-level loop)."""
    for g in runner.opt.param_groups:
        g.update(fused=True if on else None)
    try:
        yield
    finally:
        for g in runner.opt.param_groups:
            g.update(fused=True)


RUNNER_SWITCHES = {  # (on, runner) -> a context manager
    "kernel_prefetch": lambda on, runner: _prefetch(on),
    "fused_optimizer": _fused_optimizer,
}
TRAIN_ONLY = {"fused_optimizer", "lean_gate", "lean_sigmoid", "conv1x1_grads", "dw_weight_grad"}


def switch(name: str, base_sources: Path | None = None):
    """(on, runner) -> the context manager a step runs under for switch `name`."""
    if name in RUNNER_SWITCHES:
        return RUNNER_SWITCHES[name]
    if name == "kernels":
        return lambda on, runner: kernels.use(kernel_sources=None if on else base_sources)
    return lambda on, runner: kernels.use(**{name: on}, **ALSO_OFF.get(name, {}))


WORKER = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from swinrmt.bench import _Runner
from swinrmt.runtime import keep_freed_memory
keep_freed_memory()
kw = {"stem_stride": int(sys.argv[4])} if sys.argv[4] != "0" else {}
r = _Runner(sys.argv[1], sys.argv[2], "fp32", 64, 64, torch.device("cpu"), 100, model_kwargs=kw)
import swinrmt
print("ready", swinrmt.__file__, flush=True)
for line in sys.stdin:
    print(r.step(), flush=True)
"""


class _Worker:
    """A process that runs one `_Runner` step per line it reads, on the swinrmt found first on `pythonpath`."""

    def __init__(self, pythonpath: Path, model: str, mode: str, stem_stride: int | None):
        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
        self.p = subprocess.Popen([sys.executable, "-c", WORKER, model, mode,
                                   str(torch.get_num_threads()), str(stem_stride or 0)], env=env, text=True,
                                  cwd=pythonpath,  # `python -c` puts the working directory first on sys.path
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = self.p.stdout.readline().split()
        if not ready or ready[0] != "ready" or not ready[1].startswith(str(pythonpath)):
            raise SystemExit(f"worker on {pythonpath} did not start (got {ready})")

    def step(self) -> float:
        self.p.stdin.write("step\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=60)


def measure_revisions(base: Path, model: str, mode: str, steps: int,
                      stem_stride: int | None = None) -> tuple[float, float]:
    """Median step times (ms) of this checkout (on) and of the package exported to `base` (off), interleaved."""
    root = Path(__file__).resolve().parents[2]
    workers = {True: _Worker(root, model, mode, stem_stride), False: _Worker(base, model, mode, stem_stride)}
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for on in (True, False):  # warm-up both
            workers[on].step()
        for i in range(steps):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                times[on].append(workers[on].step())
    finally:
        for w in workers.values():
            w.close()
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def export_revision(rev: str, folder: Path) -> Path:
    """Revision `rev`'s swinrmt package, exported into `folder` (its kernels build and cache on first use)."""
    root = Path(__file__).resolve().parents[2]
    archive = subprocess.run(["git", "-C", str(root), "archive", rev, "swinrmt"], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def kernel_sources_at(rev: str, folder: Path) -> Path:
    """Revision `rev`'s C++ sources, exported into `folder` and built once (so the timed steps never compile)."""
    root = Path(__file__).resolve().parents[2]
    for path in ("swinrmt/kernels/csrc", "swinrmt/layers/csrc"):  # where the sources lived before swinrmt/kernels/
        archive = subprocess.run(["git", "-C", str(root), "archive", rev, path], capture_output=True)
        if archive.returncode == 0:
            break
    else:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    if build.load() is None:
        raise SystemExit("the CPU kernels cannot be built here: nothing to compare")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")  # refuses members that would land outside folder
    sources = folder / path
    with kernels.use(kernel_sources=sources):
        if build.load() is None:
            raise SystemExit(f"revision {rev}'s kernels do not build here")
    return sources


def measure(side, model: str, mode: str, steps: int, stem_stride: int | None = None) -> tuple[float, float]:
    """Median step times (ms) with the switch on and off; `side(on, runner)` is the switch's context manager."""
    kwargs = {"stem_stride": stem_stride} if stem_stride else {}
    # the step `swinrmt bench` times
    runner = _Runner(model, mode, "fp32", 64, 64, torch.device("cpu"), 100, model_kwargs=kwargs)
    times: dict[bool, list[float]] = {True: [], False: []}
    for on in (True, False):  # warm-up both
        with side(on, runner):
            runner.step()
    for i in range(steps):
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            with side(on, runner):
                times[on].append(runner.step())
    return statistics.median(times[True]) * 1e3, statistics.median(times[False]) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("switch", choices=sorted([*POLICY_SWITCHES, *RUNNER_SWITCHES, "kernels", "revision"]))
    p.add_argument("--model", default="rmt_tiny")
    p.add_argument("--mode", nargs="+", choices=("infer", "train"), default=["infer", "train"])
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--stem-stride", type=int, default=None, help="4: the public RMT-T layout at 64 px")
    p.add_argument("--base", help="kernels, revision: the git revision to compare with")
    a = p.parse_args()
    if (a.switch in ("kernels", "revision")) != (a.base is not None):
        p.error("--base goes with the kernels and revision switches, and they need it")
    keep_freed_memory()
    with tempfile.TemporaryDirectory(prefix="swinrmt-base-") as tmp:
        if a.switch == "revision":
            base = export_revision(a.base, Path(tmp))
        else:
            side = switch(a.switch, kernel_sources_at(a.base, Path(tmp)) if a.base else None)
        for mode in a.mode:
            if mode == "infer" and a.switch in TRAIN_ONLY:
                print(f"| {a.switch} | {a.model} | infer | - | - | (training only) |", flush=True)
                continue
            if a.switch == "revision":
                on, off = measure_revisions(base, a.model, mode, a.steps, a.stem_stride)
            else:
                on, off = measure(side, a.model, mode, a.steps, a.stem_stride)
            model = a.model + (f" (stem {a.stem_stride})" if a.stem_stride else "")
            print(f"| {a.switch} | {model} | {mode} | {off:.0f} | {on:.0f} | {on / off:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""Run several trainings at once on one machine, the CPU threads split between them (`swinrmt compare --jobs N`).

Why: a nano model uses two cores poorly. On a 2-core AMD EPYC, rmt_nano at 32 px and batch 128 trains at 900
images/s on two threads but at 681 on one, so two one-thread runs side by side train about 1.5x as many images per
CPU-hour as the same runs one after another (benchmarks/reproduction/cifar10-converge/README.md has the measurement).

Each run is a child process (spawn: no state inherited from the parent) that trains exactly as `swinrmt train` would
with the same recipe and thread count, so a run trained in a pool is bit-identical to the same run trained alone
(tests/test_pool.py). A child writes its console output to its own log file. A child that fails (an exception,
a crash, the OOM killer) is reported and costs no other job its run; a killed pool (the children die with the parent,
PR_SET_PDEATHSIG) leaves every unfinished run at its last checkpoint, and the same command resumes them all.

The parent draws one progress display for all jobs, read from the runs' own `metrics.jsonl`, so the children need no
channel back but their exit status and a one-line error.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass
class Job:
    """One training to run: `finish(result)` is called in the child after `train` returns (e.g. writes result.json)."""

    label: str
    run_dir: Path
    recipe: dict[str, Any] | None  # None: resume from the run directory's own config.yaml
    epochs: int
    meta: dict[str, Any]  # what `finish` needs beside the training result (label, seed, ...)
    log: Path  # the child's console output (outside run_dir, which the trainer wants empty for a fresh run)
    restart: bool = False  # train `recipe` afresh over a run that stopped before its first checkpoint

    @property
    def verb(self) -> str:
        """What the logs say this job does, so a restart over a run that never checkpointed is never silent."""
        if self.recipe is None:
            return "resuming"
        return "restarting (it stopped before its first checkpoint)" if self.restart else "training"


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed pool must not leave orphans training on
    except (OSError, AttributeError):
        pass


def _child(job: Job, threads: int, device: str, finish: Callable[[Job, dict[str, Any]], None], errors: Any) -> None:
    _die_with_parent()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(job.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    try:
        import torch

        from .train.loop import train
        from .train.recipe import Recipe

        torch.set_num_threads(threads)
        recipe = Recipe.from_dict(job.recipe) if job.recipe is not None else None
        resume = recipe is None
        print(f"[pool] {job.label}: {job.verb} on {threads} thread(s)", flush=True)
        res = train(recipe, job.run_dir, resume=resume, overwrite=job.restart, device=device, progress=False)
        finish(job, {**res, "threads": threads})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then the child exits non-zero
        traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        errors.put(f"{type(exc).__name__}: {msg}")
        sys.stdout.flush()
        os._exit(1)


def _progress(job: Job) -> tuple[float, str]:
    """(fraction done, short status) from the run's metrics.jsonl (its last step or epoch line)."""
    path = job.run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return 0.0, "starting"
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("kind") == "epoch":
            done, status = rec["epoch"] + 1, f"e{rec['epoch'] + 1} {rec.get('test_top1', float('nan')):.1f}%"
            return min(1.0, done / job.epochs), status
        if rec.get("kind") == "step" and rec.get("steps_per_epoch"):
            frac = (rec["epoch"] + rec["batch"] / rec["steps_per_epoch"]) / job.epochs
            return min(1.0, frac), f"e{rec['epoch'] + 1} {100 * rec['batch'] / rec['steps_per_epoch']:.0f}%"
    return 0.0, "starting"


def run_pool(jobs: Sequence[Job], *, workers: int, threads: int, device: str,
             finish: Callable[[Job, dict[str, Any]], None], progress: bool = True,
             status_every_s: float = 300.0) -> list[tuple[str, str, str]]:
    """Run `jobs`, `workers` at a time, each on `threads` torch threads; returns the failures (label, log, error).

    `finish` must be a module-level function (it is pickled into the spawned child).
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"--jobs must be >= 1, got {workers}")
    ctx = mp.get_context("spawn")
    pending, running = list(jobs), {}
    failures: list[tuple[str, str, str]] = []
    done = 0
    bar = tqdm(total=len(jobs), unit="run", disable=not progress, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.2f}/{total} runs [{elapsed}<{remaining}] {postfix}")
    last_status = time.monotonic()
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                errors = ctx.SimpleQueue()  # written synchronously: the message is there before the child exits
                p = ctx.Process(target=_child, args=(job, threads, device, finish, errors), name=job.label)
                p.start()
                running[p] = job, errors
                tqdm.write(f"[pool] started {job.label} -> {job.run_dir} (log: {job.log})", file=sys.stdout)
            time.sleep(0.5)
            for p in [p for p in running if not p.is_alive()]:
                job, errors = running.pop(p)
                p.join()
                msg = None if p.exitcode == 0 or errors.empty() else errors.get()
                errors.close()
                if p.exitcode == 0:
                    done += 1
                    tqdm.write(f"[pool] finished {job.label}", file=sys.stdout)
                else:
                    msg = msg or f"the process died with exit code {p.exitcode} (killed? out of memory?)"
                    failures.append((job.label, str(job.log), msg))
                    tqdm.write(f"[pool] FAILED {job.label}: {msg} (log: {job.log})", file=sys.stdout)
            states = {job.label: _progress(job) for job, _ in running.values()}
            bar.n = done + len(failures) + sum(f for f, _ in states.values())
            bar.set_postfix_str("; ".join(f"{k} {s}" for k, (_, s) in states.items()), refresh=False)
            bar.refresh()
            if not progress and time.monotonic() - last_status > status_every_s and states:
                last_status = time.monotonic()
                print(f"[pool] {done}/{len(jobs)} done; " + "; ".join(f"{k} {s}" for k, (_, s) in states.items()),
                      flush=True)
    finally:
        for p in running:  # interrupted: stop the children; their runs resume from the last checkpoint
            p.kill()
            p.join()
        bar.close()
    return failures

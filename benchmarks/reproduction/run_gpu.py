#!/usr/bin/env python3
"""Train rmt_tiny, gated_swinrmt_retention_tiny and gated_swinrmt_swat_tiny with the `tiny-imagenet` recipe on one GPU
within a wall-clock budget (issue 21, item 4). Start it through `run_gpu.sh`; `--help` lists the options.

How it works:
- Data: the parent extracts the archive and builds the decode-once cache (swinrmt.data.decoded) once; each run then
  holds its splits on the GPU as uint8 (N, H, W, 3) + int64 labels and makes its batches there
  (swinrmt.data.device: random-resized-crop + flip, RandAugment, normalise, random erasing; the trainer's mixup /
  cutmix on the device batch), through the trainer's opt-in `loader_factory` hook. Nothing is decoded per step.
- One trainer: every run is `swinrmt.train.Trainer` (checkpoints, EMA, evaluation, metrics.jsonl, eval.json), run
  directories as `swinrmt compare` lays them out (`OUT/runs/<model>/seed-<k>`), and the report is
  `swinrmt.compare.write_report` (report.md, runs.csv/json, curves) plus this script's summary.md / summary.json.
- Concurrency: the runs train side by side as separate processes on the one GPU, as many at once as fit: each run's
  need is measured in the parent (peak memory of two training steps of each model, + its EMA, its dataset copy and
  1.5 GB of context), against the free GPU memory, and at most half the CPU cores. More runs than fit go in waves,
  each wave an equal share of the remaining budget. The models are small enough that one eager process leaves the
  GPU mostly idle between kernel launches; processes (not CUDA streams in one process) each have their own Python
  thread to launch kernels.
- Budget: `--budget` seconds of wall time for everything (default 660 s, so that the whole script with start-up and
  report fits in 12 minutes of device time). In the first wave every run first trains a throwaway copy of itself
  (same recipe, same batches) in lock-step with the others, so each measures its steps/s under the real
  concurrency, plus the cost of an epoch end (evaluation, checkpoint, plot). The parent then sets one number of
  epochs for every run (the largest all of them fit before the deadline, capped by `--max-epochs`), scales the
  recipe's warmup with it (5 of 100 epochs stays 5 %; `--keep-warmup` keeps it in epochs), and the real runs start
  from step 0 with that schedule: each is exactly the run `swinrmt train` would make with those epochs. A run still
  training at its deadline stops cleanly (checkpoint, evaluation of raw and EMA weights, `partial.json`); the
  parent kills nothing before the deadline.
- bf16 and torch.compile: `--precision auto` (default) measures eager bf16 against fp32 in the probe and keeps the
  faster for all runs (one protocol); `bf16` / `fp32` fix it. `--compile auto` (default) measures compiled against
  eager in the probe only when the budget is at least 30 minutes, else stays eager: on the 16-core GPU machine a
  tiny model's training graph took 155 s to more than 195 s to compile from a cold Inductor cache
  (benchmarks/speed/README.md, eleventh session), a quarter of a 12-minute budget before the first compiled step.
  `--compile on` compiles regardless, `off` never.
- Results are kept: `result.json` of a finished run is written once (a hard link of a complete temp file: atomic,
  never replaced); a rerun of the same command skips finished runs, resumes a run stopped at the deadline from its
  checkpoint, and keeps the epochs decided the first time (`OUT/run_gpu.json`), so all runs of one folder share one
  protocol.
- `--test` (or RUN_GPU_TEST=1): the same machinery on CPU in well under two minutes: the nano models, 48 training
  and 32 test images of the built-in digits (or of `--data`), 32 px, batch 16, at most 2 epochs.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_MODELS = ("rmt_tiny", "gated_swinrmt_retention_tiny", "gated_swinrmt_swat_tiny")
DATA_FILE = "tiny-imagenet-100.tar.gz"
DATA_CANDIDATES = (Path("/work/shared/data") / DATA_FILE, REPO.parent / "shared" / "data" / DATA_FILE,
                   REPO / "shared" / "data" / DATA_FILE)
PLAN_FILE, RESULT, PARTIAL, LOCK = "run_gpu.json", "result.json", "partial.json", ".run_gpu.lock"
DEFAULT_BUDGET_S, TEST_BUDGET_S = 660.0, 90.0
AUTO_COMPILE_MIN_BUDGET_S = 1800.0
SAFETY = 0.9  # share of the measured time budget the epochs are planned to fill
#: Test mode: a few dozen images, nano models, every stage still runs (probe, plan, train, eval, EMA, report).
TEST_OVERRIDES = ("img_size=32", "batch_size=16", "data.limit_train=48", "data.limit_test=32",
                  "data.eval_batch_size=32", "data.num_workers=0", "ckpt_every_steps=0", "log_every_steps=1")


class UsageError(ValueError):
    """A bad argument or input: one line on stderr, exit code 2."""


def log(msg: str) -> None:
    print(f"[run_gpu {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- settings ----------------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """Everything a run of this script decides before training, validated up front (one-line errors)."""

    test: bool
    models: list[str]
    seeds: list[int]
    recipe_name: str
    overrides: list[str]
    data: str | None  # an archive / directory, or None for the built-in digits (test mode)
    out: Path
    budget_s: float
    precision: str
    compile: str
    compile_mode: str
    epochs: int | None
    max_epochs: int
    keep_warmup: bool
    concurrency: str
    device: str
    warm_steps: int
    measure_s: float
    export: Path | None
    base: Any = None  # the resolved Recipe every run derives from
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run_gpu.sh", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--test", action="store_true", default=os.environ.get("RUN_GPU_TEST", "") == "1",
                   help="CPU test mode: nano models, a few dozen images, a tiny budget (also RUN_GPU_TEST=1)")
    p.add_argument("--data", default=os.environ.get("RUN_GPU_DATA"),
                   help=f"dataset archive or directory (env RUN_GPU_DATA; default: the first existing of "
                        f"{', '.join(map(str, DATA_CANDIDATES))}; test mode: the built-in digits)")
    p.add_argument("--models", nargs="+", default=None, help=f"models (default: {' '.join(DEFAULT_MODELS)}; "
                   "test mode: their _nano sizes)")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per model (default 1)")
    p.add_argument("--recipe", default="tiny-imagenet", help="shipped recipe or YAML file (default tiny-imagenet)")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="recipe overrides for every run, e.g. eval_every_epochs=2")
    p.add_argument("--out", default=None, help="output folder (default runs/gpu-tin100; test: runs/gpu-test)")
    p.add_argument("--budget", type=float, default=None,
                   help=f"wall-clock seconds for the whole script (env RUN_GPU_BUDGET_S; default "
                        f"{DEFAULT_BUDGET_S:.0f}, test {TEST_BUDGET_S:.0f})")
    p.add_argument("--precision", default="auto", help="auto (measure bf16 vs fp32, keep the faster), bf16, fp32")
    p.add_argument("--compile", default="auto", help="auto (measure when the budget is >= 30 min), on, off")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode (default, reduce-overhead, ...)")
    p.add_argument("--epochs", type=int, default=None, help="fix the epochs instead of deriving them from the budget")
    p.add_argument("--max-epochs", type=int, default=None, help="cap on the budgeted epochs (default: the recipe's)")
    p.add_argument("--keep-warmup", action="store_true", help="keep the recipe's warmup epochs instead of scaling")
    p.add_argument("--concurrency", default="auto", help="runs at once: auto (from free GPU memory) or N")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cpu")
    p.add_argument("--warm-steps", type=int, default=None, help="probe: steps before each measurement (10; test 1)")
    p.add_argument("--measure-s", type=float, default=None, help="probe: seconds per measurement (6; test 0.5)")
    p.add_argument("--export", default=None, help="copy the small result files (no checkpoints) here at the end")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def resolve(args: argparse.Namespace) -> Settings:
    """Check every argument and input before any work; the errors are one line each."""
    from swinrmt.compare import plan_runs
    from swinrmt.registry import get_entry
    from swinrmt.train.recipe import load_recipe

    test = bool(args.test)
    models = list(args.models) if args.models else [m.replace("_tiny", "_nano") if test else m for m in DEFAULT_MODELS]
    for m in models:
        get_entry(m)  # "unknown model ..., Did you mean ...": one line
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    for name, choices in (("precision", ("auto", "bf16", "fp32")), ("compile", ("auto", "on", "off"))):
        if getattr(args, name) not in choices:
            raise UsageError(f"--{name} must be one of {', '.join(choices)}, got {getattr(args, name)!r}")
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda[:N], got {args.device!r}")
    if args.concurrency != "auto" and (not args.concurrency.isdigit() or int(args.concurrency) < 1):
        raise UsageError(f"--concurrency must be auto or a positive integer, got {args.concurrency!r}")
    budget = args.budget if args.budget is not None else float(os.environ.get("RUN_GPU_BUDGET_S") or
                                                                (TEST_BUDGET_S if test else DEFAULT_BUDGET_S))
    if not budget > 0:
        raise UsageError(f"--budget must be > 0 seconds, got {budget}")
    for name in ("epochs", "max_epochs", "warm_steps"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "warm_steps" else 1):
            raise UsageError(f"--{name.replace('_', '-')} must be >= {0 if name == 'warm_steps' else 1}, got {v}")
    data = args.data
    explicit = data is not None
    if data is None and not test:
        data = next((str(c) for c in DATA_CANDIDATES if c.exists()), str(DATA_CANDIDATES[0]))
    if data is not None and not Path(data).expanduser().exists():
        raise UsageError(f"dataset not found: {data} (pass --data PATH or set RUN_GPU_DATA)")
    if not test and args.device != "cpu":
        import torch

        from swinrmt.train.distributed import cuda_absence

        if not torch.cuda.is_available():  # never fall back to a silent full-recipe run on the CPU
            raise UsageError(f"no CUDA device: {cuda_absence()} ({sys.executable}); run_gpu trains on a GPU "
                             "(set PYTHON to an interpreter with a CUDA build of torch; --test for the CPU check, "
                             "--device cpu to train on the CPU anyway)")
    overrides = [*TEST_OVERRIDES] if test else []
    if data is None:
        overrides += ["data.name=digits", "data.root=null"]
    else:
        data = str(Path(data).expanduser().resolve())
        overrides += [f"data.root={data}"]
        if test and explicit:
            overrides.remove("img_size=32")  # a subset of the real data at its native size
    overrides += list(args.overrides)
    try:
        base = load_recipe(args.recipe, overrides + ["model.compile=false"])
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    plan_runs(models, list(range(args.seeds)), [{}])
    max_epochs = args.max_epochs or (2 if test else base.epochs)
    out = Path(args.out or ("runs/gpu-test" if test else "runs/gpu-tin100")).expanduser().resolve()
    return Settings(test=test, models=models, seeds=list(range(args.seeds)), recipe_name=args.recipe,
                    overrides=overrides, data=data, out=out, budget_s=float(budget), precision=args.precision,
                    compile=args.compile, compile_mode=args.compile_mode, epochs=args.epochs, max_epochs=max_epochs,
                    keep_warmup=args.keep_warmup, concurrency=args.concurrency, device=args.device,
                    warm_steps=args.warm_steps if args.warm_steps is not None else (1 if test else 10),
                    measure_s=args.measure_s if args.measure_s is not None else (0.5 if test else 6.0),
                    export=Path(args.export).resolve() if args.export else None, base=base)


# -- small file helpers ------------------------------------------------------------------------------------------------
def write_once(path: Path, obj: Any) -> None:
    """JSON to `path` atomically, never over an existing file (a finished run's result is kept as is)."""
    from swinrmt.atomic import write_json

    write_json(path, obj, replace=False)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- the plan: what every run of one output folder shares --------------------------------------------------------------
def protocol_of(base: Any) -> dict[str, Any]:
    """The recipe minus what differs per run or is decided here (model, seed, epochs, warmup, precision, compile)."""
    d = base.to_dict()
    d["seed"] = d["epochs"] = d["precision"] = None
    d["model"] = {**d["model"], "name": None, "overrides": None, "compile": None}
    d["sched"] = {**d["sched"], "warmup_epochs": None}
    d["data"] = {**d["data"], "root": Path(d["data"]["root"]).name if d["data"]["root"] else None}
    return d


def load_plan(s: Settings) -> dict[str, Any]:
    """The folder's plan (`run_gpu.json`), checked against this invocation; a new folder gets a fresh one."""
    from swinrmt.atomic import write_text
    from swinrmt.compare import PLAN, _check_plan

    protocol = protocol_of(s.base)
    _check_plan(s.out, protocol)  # "holds a comparison under a different recipe (differs in: ...)"
    plan = read_json(s.out / PLAN_FILE) or {"recipe_name": s.recipe_name, "epochs": None, "warmup_epochs": None,
                                           "precision": None, "compile": {}, "probe": {}, "waves": []}
    if s.epochs is not None and plan["epochs"] not in (None, s.epochs):
        raise UsageError(f"{s.out} was planned with {plan['epochs']} epochs, not --epochs {s.epochs}; "
                         "use another --out")
    if s.precision != "auto" and plan["precision"] not in (None, s.precision):
        raise UsageError(f"{s.out} was planned with precision {plan['precision']}, not {s.precision}; "
                         "use another --out")
    old = read_json(s.out / PLAN) or {}
    labels = list(dict.fromkeys([*old.get("labels", []), *s.models]))
    write_text(s.out / PLAN, json.dumps({"recipe": protocol, "recipe_name": s.recipe_name, "labels": labels}, indent=1))
    return plan


def save_plan(s: Settings, plan: dict[str, Any]) -> None:
    from swinrmt.atomic import write_text

    write_text(s.out / PLAN_FILE, json.dumps(plan, indent=1))


def plan_epochs(rates: list[dict[str, Any]], *, now: float, stop_at: float, max_epochs: int,
                safety: float = SAFETY) -> tuple[int, list[int]]:
    """The one number of epochs every run fits before `stop_at`, and each run's own limit.

    Each rate: `steps_per_s` (measured under the real concurrency), `steps_per_epoch`, `epoch_end_s` (evaluation +
    checkpoint + plot) and `setup_s` (building the real trainer, compiling included). A run of E epochs takes
    setup + E * (steps_per_epoch / steps_per_s + epoch_end_s); the plan fills `safety` of the time left.
    """
    own = []
    for r in rates:
        per_epoch = r["steps_per_epoch"] / max(r["steps_per_s"], 1e-9) + r["epoch_end_s"]
        own.append(int(math.floor((safety * (stop_at - now) - r["setup_s"]) / per_epoch)))
    return max(1, min([max_epochs, *own])), own


def scaled_warmup(base: Any, epochs: int, keep: bool) -> float:
    """The recipe's warmup, as the same share of the run (5 of 100 epochs -> 5 %), or kept in epochs."""
    w = float(base.sched.warmup_epochs)
    return w if keep else round(w * epochs / base.epochs, 4)


# -- data and device (parent) ------------------------------------------------------------------------------------------
def prepare_data(s: Settings) -> dict[str, Any]:
    """Extract / decode-cache / verify both splits once here, so the runs only open the cache; sizes for the plan."""
    from swinrmt.train.builders import load_split

    r, d = s.base, s.base.data
    t0 = time.time()
    common = dict(root=d.root, on_corrupt=d.on_corrupt, seed=d.split_seed, img_size=r.img_size,
                  num_classes=r.model.num_classes, verify=d.verify, show_warnings=True, decode_cache=d.decode_cache)
    train = load_split(d.name, d.train_split, limit=d.limit_train, **common)
    n_classes = r.model.num_classes or train.num_classes
    test = load_split(d.name, d.test_split, limit=d.limit_test, **{**common, "num_classes": n_classes})
    img_size = r.img_size or getattr(train, "default_img_size", None)
    first = train[0][0]
    info = {"n_train": len(train), "n_test": len(test), "num_classes": n_classes, "img_size": img_size,
            "image_hw": [first.size[1], first.size[0]], "prepare_s": time.time() - t0}
    info["data_bytes"] = (info["n_train"] + info["n_test"]) * 3 * first.size[0] * first.size[1]
    info["steps_per_epoch"] = info["n_train"] // r.batch_size
    if info["steps_per_epoch"] < 1:
        raise UsageError(f"the training set ({len(train)} images) is smaller than one batch ({r.batch_size})")
    return info


def pick_device(s: Settings) -> str:
    import torch

    if s.test or s.device == "cpu":
        return "cpu"
    if s.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UsageError(f"--device {s.device}: CUDA is not available (use --device cpu or --test)")
    return s.device


def device_name(device: str) -> str:
    import torch

    from swinrmt.compare import machine

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return machine(threads=False)


def gpu_need_bytes(s: Settings, info: dict[str, Any], device: str, precision: str) -> int:
    """Bytes one run needs on the GPU: measured peak of two training steps of the largest model at the recipe's batch
    size (plus its EMA copy), its dataset copy and 1.5 GB for the CUDA context, workspaces and fragmentation."""
    import torch
    import torch.nn.functional as F

    from swinrmt import create_model

    dev, r = torch.device(device), s.base
    need = 0
    for name in dict.fromkeys(s.models):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        model = create_model(name, num_classes=info["num_classes"], img_size=info["img_size"],
                             drop_path_rate=r.model.drop_path_rate).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        x = torch.randn(r.batch_size, 3, info["img_size"], info["img_size"], device=dev)
        y = torch.randint(0, info["num_classes"], (r.batch_size,), device=dev)
        for _ in range(2):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize(dev)
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        need = max(need, torch.cuda.max_memory_allocated(dev) - before + params)
        del model, opt, x, y, loss
        gc.collect()
        torch.cuda.empty_cache()
    return int(need * 1.2 + info["data_bytes"] + 1.5e9)


def concurrency(s: Settings, info: dict[str, Any], device: str, n_runs: int) -> tuple[int, dict[str, Any]]:
    """How many runs train at once: `--concurrency N`, or on CUDA as many as the free memory holds (at most half the
    CPU cores: each run's Python thread launches its kernels), on CPU (test mode) all of them, one thread each."""
    cores = os.cpu_count() or 2
    if s.concurrency != "auto":
        return min(n_runs, int(s.concurrency)), {"how": "--concurrency"}
    if not device.startswith("cuda"):
        return n_runs if s.test else min(n_runs, max(1, cores // 2)), {"how": "cpu"}
    import torch

    precision = "fp32" if s.precision in ("auto", "fp32") else "bf16"  # fp32 needs more: size for the larger
    need = gpu_need_bytes(s, info, device, precision)
    free, total = torch.cuda.mem_get_info(torch.device(device))
    fit = int(0.9 * free // need)
    n = max(1, min(n_runs, fit, max(1, cores // 2)))
    return n, {"how": "free memory", "need_gb": need / 1e9, "free_gb": free / 1e9, "total_gb": total / 1e9,
               "fit": fit, "cores": cores}


# -- the parent: waves of worker processes -----------------------------------------------------------------------------
class Worker:
    """One run's process and its line-based JSON channel (stdout: events; stdin: commands; stderr: the log)."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str]) -> None:
        self.spec, self.label = spec, spec["name"]
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self.stopped = False  # stopped by the parent at the deadline (not a failure: a rerun resumes it)
        self._buf = b""
        Path(spec["log"]).parent.mkdir(parents=True, exist_ok=True)
        spec_path = Path(spec["log"]).with_suffix(".worker.json")
        spec_path.write_text(json.dumps(spec, indent=1))
        self._log = open(spec["log"], "ab")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                     cwd=str(REPO))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, cmd: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        new = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "error":
                self.error = ev.get("message")
            new.append(ev)
        self.events += new
        return new

    def stop(self, grace_s: float = 10.0) -> None:
        if self.alive:
            self.stopped = True
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Wave:
    """The workers of one wave and the event loop that reads them."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.sel = selectors.DefaultSelector()
        for w in workers:
            self.sel.register(w.proc.stdout, selectors.EVENT_READ, w)

    def pump(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout=max(0.0, timeout)):
            w: Worker = key.data
            data = os.read(key.fd, 65536)
            if not data:
                self.sel.unregister(key.fileobj)
                continue
            for ev in w.feed(data):
                self._echo(w, ev)

    @staticmethod
    def _echo(w: Worker, ev: dict[str, Any]) -> None:
        kind = ev.get("event")
        if kind == "rate":
            log(f"{w.label}: {ev['config']} {ev['steps_per_s']:.2f} steps/s "
                f"({ev['steps_per_s'] * ev['batch_size']:.0f} img/s), epoch end {ev['epoch_end_s']:.1f} s")
        elif kind in ("progress", "done", "deadline", "error", "started"):
            log(f"{w.label}: {ev.get('message', kind)}")

    def wait_for(self, kind: str, count: int, until: float) -> list[Worker]:
        """Pump until every live worker has `count` events of `kind` (or `until`); returns those that have."""
        while time.time() < until:
            live = [w for w in self.workers if w.alive or w.proc.stdout.fileno() in self.sel.get_map()]
            if all(sum(e.get("event") == kind for e in w.events) >= count for w in live if w.error is None):
                break
            if not live:
                break
            self.pump(min(1.0, until - time.time()))
        return [w for w in self.workers if sum(e.get("event") == kind for e in w.events) >= count]

    def last(self, w: Worker, kind: str) -> dict[str, Any]:
        return [e for e in w.events if e.get("event") == kind][-1]


def worker_spec(s: Settings, run: Any, *, mode: str, recipe: dict[str, Any], device: str, threads: int, stop_at: float,
                concurrency_n: int, dev_name: str, probe: dict[str, Any], compile_on: bool) -> dict[str, Any]:
    run_dir = run.directory(s.out)
    return {"name": f"{run.label}/seed-{run.seed}", "run_dir": str(run_dir), "out": str(s.out), "mode": mode,
            "recipe": recipe, "device": device, "threads": threads, "stop_at": stop_at,
            "meta": {"label": run.label, "model": run.model, "overrides": run.overrides, "seed": run.seed},
            "log": str(s.out / "logs" / f"{run_dir.parent.name}-{run_dir.name}.log"), "concurrency": concurrency_n,
            "device_name": dev_name, "probe": probe, "compile": compile_on, "compile_mode": s.compile_mode,
            "test": s.test}


def run_wave(s: Settings, runs: list[Any], plan: dict[str, Any], *, info: dict[str, Any], device: str, dev_name: str,
             n_at_once: int, deadline: float, reserve_s: float) -> dict[str, str]:
    """Train one wave of runs side by side until `deadline`; returns {run name: error} of the failed ones."""
    cores = os.cpu_count() or 2
    threads = max(1, cores // n_at_once) if device == "cpu" else max(1, min(4, cores // n_at_once))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_COMPILE_THREADS": str(max(1, cores // n_at_once)),
           "PYTHONPATH": str(REPO) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    if device == "cpu":
        env["OMP_NUM_THREADS"] = str(threads)
    stop_at = deadline - reserve_s
    fixed = plan["epochs"] is not None
    if s.compile == "auto":
        probe_compile = device.startswith("cuda") and s.budget_s >= AUTO_COMPILE_MIN_BUDGET_S
    else:
        probe_compile = False
    compile_default = s.compile == "on"
    precisions = ["bf16", "fp32"] if s.precision == "auto" else [s.precision]
    if not fixed:
        for run in runs:
            if (run.directory(s.out) / "checkpoints").is_dir():
                raise UsageError(f"{run.directory(s.out)} has a checkpoint but {s.out / PLAN_FILE} holds no plan; "
                                 "restore that file or use another --out")
    workers = []
    for run in runs:
        r = s.base.with_overrides([f"model.name={run.model}", f"seed={run.seed}"])
        if fixed:
            r = r.with_overrides([f"epochs={plan['epochs']}", f"sched.warmup_epochs={plan['warmup_epochs']}",
                                  f"precision={plan['precision']}"])
            compile_on = plan["compile"].get(run.model, compile_default)
        else:
            r = r.with_overrides([f"epochs={s.max_epochs}", f"precision={precisions[0]}"])
            compile_on = compile_default
        probe = {"precisions": precisions, "compile": probe_compile or compile_default, "warm_steps": s.warm_steps,
                 "measure_s": s.measure_s}
        spec = worker_spec(s, run, mode="fixed" if fixed else "probe", recipe=r.to_dict(), device=device,
                           threads=threads, stop_at=stop_at, concurrency_n=n_at_once, dev_name=dev_name, probe=probe,
                           compile_on=compile_on)
        workers.append(Worker(spec, env))
        log(f"started {spec['name']} ({spec['mode']}) -> {spec['run_dir']} (log {spec['log']})")
    wave = Wave(workers)
    try:
        if not fixed:
            try:
                decide_plan(s, wave, plan, precisions=precisions, probe_compile=probe_compile,
                            compile_default=compile_default, stop_at=stop_at, info=info, n_at_once=n_at_once)
            except RuntimeError as exc:  # no run measured anything: this wave fails, the report is still written
                log(f"probe failed: {exc}")
                return {w.label: w.error or str(exc) for w in workers}
        while time.time() < deadline and any(w.alive for w in workers):
            wave.pump(min(1.0, deadline - time.time()))
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(max(0.1, min(5.0, deadline + 5 - time.time())))
        wave.pump(0)
    finally:
        for w in workers:
            if w.alive:
                log(f"{w.label}: still running at the deadline, stopped (its last checkpoint stays for a rerun)")
            w.stop()
    failed = {}
    for w in workers:
        if w.proc.returncode not in (0, None) and not w.stopped:
            failed[w.label] = w.error or f"the process exited with code {w.proc.returncode} (log: {w.spec['log']})"
    return failed


def decide_plan(s: Settings, wave: Wave, plan: dict[str, Any], *, precisions: list[str], probe_compile: bool,
                compile_default: bool, stop_at: float, info: dict[str, Any], n_at_once: int) -> None:
    """The probe, in lock-step: each measurement starts when every run is warm, so each sees the real concurrency;
    then one plan (epochs, warmup, precision; compile per model) goes to every run and into `run_gpu.json`."""
    phase_s = 120.0 if not s.test else 60.0
    n_warm = n_rate = 0

    def measure(configs: str) -> list[Worker]:
        nonlocal n_warm, n_rate
        n_warm += 1
        wave.wait_for("warm", n_warm, min(stop_at, time.time() + (900.0 if "compiled" in configs else phase_s)))
        n_rate += 1
        for w in wave.workers:
            w.send({"cmd": "measure"})
        return wave.wait_for("rate", n_rate, min(stop_at, time.time() + s.measure_s * 3 + phase_s))

    rates: dict[str, dict[str, dict[str, Any]]] = {}  # worker -> config -> rate event
    for i, p in enumerate(precisions):
        if i:
            for w in wave.workers:
                w.send({"cmd": "set", "precision": p, "compile": compile_default})
        for w in measure(p):
            rates.setdefault(w.label, {})[wave.last(w, "rate")["config"]] = wave.last(w, "rate")
    if not rates:
        raise RuntimeError("no run reported a throughput; see the logs in " + str(s.out / "logs"))
    now = time.time()
    mode = "compiled" if compile_default else "eager"
    chosen_p = precisions[0]
    if len(precisions) > 1:  # the precision all runs fit the most epochs in (one protocol for all of them)
        def epochs_with(p: str) -> int:
            rs = [r[f"{mode}-{p}"] for r in rates.values() if f"{mode}-{p}" in r]
            return plan_epochs(rs, now=now, stop_at=stop_at, max_epochs=10**6)[0] if rs else -1
        chosen_p = max(precisions, key=epochs_with)
        log(f"precision: {chosen_p} (epochs that fit: " + ", ".join(f"{p} {epochs_with(p)}" for p in precisions) + ")")
    compiled: dict[str, bool] = {w.label: compile_default for w in wave.workers}
    if probe_compile:
        for w in wave.workers:
            w.send({"cmd": "set", "precision": chosen_p, "compile": True})
        for w in measure("compiled"):
            ev = wave.last(w, "rate")
            rates.setdefault(w.label, {})[ev["config"]] = ev
        for label, r in rates.items():
            c, e = r.get(f"compiled-{chosen_p}"), r.get(f"eager-{chosen_p}")
            compiled[label] = bool(c and e and c["steps_per_s"] > e["steps_per_s"])
    chosen = []
    for label, r in rates.items():
        ev = dict(r.get(f"{'compiled' if compiled[label] else mode}-{chosen_p}") or next(iter(r.values())))
        if not compiled[label]:
            ev["setup_s"] -= ev.get("compile_s", 0.0)  # no compile in the real run
        chosen.append(ev)
    if s.epochs is not None:
        epochs, own = s.epochs, []
    else:
        epochs, own = plan_epochs(chosen, now=time.time(), stop_at=stop_at, max_epochs=s.max_epochs)
    warmup = scaled_warmup(s.base, epochs, s.keep_warmup)
    by_model = {w.spec["meta"]["model"]: compiled[w.label] for w in wave.workers if w.label in compiled}
    plan.update(epochs=epochs, warmup_epochs=warmup, precision=chosen_p, compile={**plan["compile"], **by_model},
                probe={"rates": rates, "epochs_each": dict(zip(rates, own)), "concurrency": n_at_once,
                       "decided": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stop_at_s": stop_at - time.time()})
    save_plan(s, plan)
    log(f"plan: {epochs} epochs (each run fits {own or 'fixed'}), warmup {warmup} epochs, precision {chosen_p}, "
        f"compile {by_model}")
    for w in wave.workers:
        w.send({"cmd": "plan", "epochs": epochs, "warmup_epochs": warmup, "precision": chosen_p,
                "compile": compiled.get(w.label, compile_default)})


# -- reports -----------------------------------------------------------------------------------------------------------
def run_rows(s: Settings, runs: list[Any], failed: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        d, name = run.directory(s.out), f"{run.label}/seed-{run.seed}"
        res, part = read_json(d / RESULT), read_json(d / PARTIAL)
        if res:
            rows.append({**res, "status": "finished", "run_dir": str(d)})
        elif part:
            rows.append({**part, "run_dir": str(d)})
        else:
            status = "failed" if name in failed else ("unfinished" if (d / "checkpoints").exists() else "not started")
            rows.append({**{"label": run.label, "model": run.model, "seed": run.seed}, "status": status,
                         "error": failed.get(name), "run_dir": str(d)})
    return rows


def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def write_summary(s: Settings, rows: list[dict[str, Any]], plan: dict[str, Any], extra: dict[str, Any]) -> None:
    from swinrmt.atomic import write_text

    done = [r for r in rows if r["status"] == "finished"]
    compiled = ", ".join(m for m, on in (plan.get("compile") or {}).items() if on) or "off"
    compiled = compiled if compiled == "off" else f"on for {compiled}"
    summary = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "recipe": s.recipe_name, "test_mode": s.test,
               "data": s.data or "digits (built in)", "budget_s": s.budget_s, **extra, "plan": plan,
               "runs": [{k: v for k, v in r.items() if k not in ("probe",)} for r in rows],
               "finished": len(done), "total": len(rows)}
    write_text(s.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    lines = [f"# run_gpu: {', '.join(dict.fromkeys(r['label'] for r in rows))}", "",
             f"Recipe `{s.recipe_name}` on {summary['data']}; device {extra.get('device', '-')}; budget "
             f"{s.budget_s:.0f} s, this invocation took {extra.get('wall_s', 0):.0f} s; "
             f"{len(done)} of {len(rows)} runs finished.", "",
             f"Plan: {plan.get('epochs')} epochs, warmup {plan.get('warmup_epochs')} epochs, precision "
             f"{plan.get('precision')}, torch.compile {compiled}, up to {extra.get('concurrency')} runs at once on "
             "one device.", "",
             "| model | seed | status | epochs | raw top-1 % | EMA top-1 % | images/s | train time | wall time | "
             "precision | compile | device |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| `{r['label']}` | {r['seed']} | {status} | {fmt(r.get('epochs_done', r.get('epochs')), 'g')} | "
                     f"{fmt(r.get('test_top1'))} | {fmt(r.get('test_ema_top1'))} | {fmt(r.get('img_per_s'), '.0f')} | "
                     f"{fmt(r.get('train_s'), '.0f')} s | {fmt(r.get('wall_s'), '.0f')} s | {r.get('precision', '-')} "
                     f"| {'on' if r.get('compile') else 'off'} | {r.get('device', '-')} |")
    lines += ["", "images/s: training images over the sum of the epochs' training time (evaluation and checkpoints "
              "not included), each run while sharing the device with the others of its wave. `report.md` (if any "
              "run finished) has the comparison with paired differences; per-run files are in `runs/`.", ""]
    write_text(s.out / "summary.md", "\n".join(lines))


def export(s: Settings) -> None:
    """Copy the report and each run's small files (no checkpoints) to `--export`."""
    assert s.export is not None
    keep = {"result.json", "partial.json", "config.yaml", "metrics.jsonl", "eval.json", "curves.png"}
    for p in s.out.rglob("*"):
        rel = p.relative_to(s.out)
        if p.is_file() and not p.name.startswith(".") and "checkpoints" not in rel.parts and "tmp" not in rel.parts:
            if rel.parts[0] != "runs" or p.name in keep:
                (s.export / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, s.export / rel)


def run(s: Settings) -> int:
    from swinrmt.compare import plan_runs, write_report

    t0 = time.time()
    deadline = t0 + s.budget_s
    report_reserve = 5.0 if s.test else 15.0
    failed: dict[str, str] = {}
    extra: dict[str, Any] = {}
    from swinrmt.atomic import exclusive

    s.out.mkdir(parents=True, exist_ok=True)
    with exclusive(s.out, LOCK, "run_gpu.py", error=UsageError):
        plan = load_plan(s)
        if s.epochs is not None and plan["epochs"] is None:
            plan.update(epochs=s.epochs, warmup_epochs=scaled_warmup(s.base, s.epochs, s.keep_warmup),
                        precision="bf16" if s.precision == "auto" else s.precision)
            save_plan(s, plan)
        runs = plan_runs(s.models, s.seeds, [{}])
        pending = [r for r in runs if not (r.directory(s.out) / RESULT).exists()]
        log(f"{len(runs)} run(s): {len(runs) - len(pending)} finished (kept, skipped), {len(pending)} to train; "
            f"budget {s.budget_s:.0f} s -> {s.out}")
        device = pick_device(s)
        extra.update(device=device_name(device))
        if pending:
            info = prepare_data(s)
            log(f"data: {info['n_train']} train / {info['n_test']} test images, {info['num_classes']} classes, "
                f"{info['img_size']} px ({info['prepare_s']:.1f} s)")
            n, how = concurrency(s, info, device, len(pending))
            extra.update(concurrency=n, concurrency_how=how, data_info=info)
            log(f"device {extra['device']}: {n} run(s) at once ({json.dumps(how)})")
            waves = [pending[i: i + n] for i in range(0, len(pending), n)]
            for k, wave_runs in enumerate(waves):
                wave_deadline = time.time() + (deadline - report_reserve - time.time()) / (len(waves) - k)
                if wave_deadline - time.time() < 5:
                    log(f"no time left for wave {k + 1} of {len(waves)}; a rerun continues")
                    break
                log(f"wave {k + 1}/{len(waves)}: {', '.join(r.label for r in wave_runs)} until "
                    f"+{wave_deadline - t0:.0f} s")
                reserve = 3.0 if s.test else max(20.0, 0.03 * s.budget_s)
                failed.update(run_wave(s, wave_runs, plan, info=info, device=device, dev_name=extra["device"],
                                       n_at_once=n, deadline=wave_deadline, reserve_s=reserve))
                plan = read_json(s.out / PLAN_FILE) or plan
                plan.setdefault("waves", []).append({"runs": [f"{r.label}/seed-{r.seed}" for r in wave_runs],
                                                     "concurrency": n, "budget_s": wave_deadline - t0})
                save_plan(s, plan)
        rows = run_rows(s, runs, failed)
        if any(r["status"] == "finished" for r in rows):
            try:
                write_report(s.out)
            except Exception as exc:  # noqa: BLE001 - the summary below still gets written
                log(f"warning: report.md not written: {type(exc).__name__}: {exc}")
        extra["wall_s"] = time.time() - t0
        write_summary(s, rows, plan, extra)
        if s.export:
            export(s)
    for r in rows:
        log(f"{r['label']}/seed-{r['seed']}: {r['status']}, raw top-1 {fmt(r.get('test_top1'))} %, EMA "
            f"{fmt(r.get('test_ema_top1'))} %, {fmt(r.get('img_per_s'), '.0f')} img/s")
    log(f"done in {time.time() - t0:.0f} s (budget {s.budget_s:.0f} s): {s.out / 'summary.md'}")
    return 1 if failed else 0


# -- the worker: one run -----------------------------------------------------------------------------------------------
class DeadlineReached(Exception):
    """Raised from the trainer's step callback when the run's time is up."""


class Channel:
    """The worker's side: events out on the original stdout (stdout itself now goes to the log), commands in."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # prints, tqdm.write and C-level output go to the log, never into the channel
        os.set_blocking(0, False)
        self._buf = b""
        self.pending: list[dict[str, Any]] = []

    def send(self, event: str, **kw: Any) -> None:
        self._out.write(json.dumps({"event": event, **kw}) + "\n")
        self._out.flush()

    def poll(self) -> None:
        while True:
            try:
                data = os.read(0, 65536)
            except BlockingIOError:
                return
            if not data:
                raise SystemExit("run_gpu worker: the parent went away")
            self._buf += data
            *lines, self._buf = self._buf.split(b"\n")
            self.pending += [json.loads(x) for x in lines if x.strip()]

    def next(self) -> dict[str, Any] | None:
        self.poll()
        return self.pending.pop(0) if self.pending else None


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Probe:
    """A throwaway copy of the run (temp directory) that measures steps/s and an epoch end's cost, on command."""

    def __init__(self, spec: dict[str, Any], factory: Any, chan: Channel) -> None:
        from swinrmt.train.loop import Trainer
        from swinrmt.train.recipe import Recipe

        self.spec, self.chan = spec, chan
        tmp_root = Path(spec["out"]) / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="probe-", dir=tmp_root))
        t0 = time.perf_counter()
        self.tr = Trainer(Recipe.from_dict(spec["recipe"]), self.dir, device=spec["device"], progress=False,
                          loader_factory=factory)
        self.setup_s = time.perf_counter() - t0
        self.compile_s, self.compiled = 0.0, False
        self._batches = self._forever()

    def _forever(self) -> Iterator[tuple[Any, Any]]:
        loader, epoch = self.tr.train_loader, 0
        while True:
            loader.set_epoch(epoch)
            for x, y, _ in loader:
                yield x, y
            epoch += 1

    def step(self) -> None:
        x, y = next(self._batches)
        self.tr._train_step(x, y)

    def config(self) -> str:
        return f"{'compiled' if self.compiled else 'eager'}-{self.tr.recipe.precision}"

    def warm(self, steps: int) -> None:
        for _ in range(max(1, steps)):
            self.step()
        _sync(self.tr.device)

    def epoch_end_s(self) -> float:
        """Evaluation (raw + EMA), the checkpoint (twice: last and, when improved, best) and the plot of an epoch."""
        from swinrmt.train.loop import CURVES, METRICS
        from swinrmt.train.metrics import plot_curves, read_jsonl

        tr = self.tr
        t0 = time.perf_counter()
        tr._evaluate()
        t1 = time.perf_counter()
        tr._save(["last"])
        t2 = time.perf_counter()
        plot_curves(read_jsonl(tr.run_dir / METRICS), tr.run_dir / CURVES)
        t3 = time.perf_counter()
        self.eval_s, self.save_s, self.plot_s = t1 - t0, t2 - t1, t3 - t2
        return (t1 - t0) / tr.recipe.eval_every_epochs + 2 * (t2 - t1) + (t3 - t2) + 0.2

    def measure(self, seconds: float) -> float:
        _sync(self.tr.device)
        t0, n = time.perf_counter(), 0
        while n < 2 or time.perf_counter() - t0 < seconds:
            self.step()
            n += 1
        _sync(self.tr.device)
        return n / (time.perf_counter() - t0)

    def set(self, precision: str, compile_on: bool) -> None:
        import torch

        self.tr.recipe.precision = precision  # autocast reads it at every step
        if compile_on != self.compiled:
            mode = self.spec["compile_mode"]
            self.tr.train_module = (torch.compile(self.tr.model, mode=None if mode == "default" else mode)
                                    if compile_on else self.tr.model)
            self.compiled = compile_on
            if compile_on:
                t0 = time.perf_counter()
                self.warm(1)
                self.compile_s = time.perf_counter() - t0

    def run(self) -> dict[str, Any]:
        """Warm, report, then follow the parent's commands (measure / set) until the plan comes; the probe keeps
        training while it waits, so the others measure under the same load."""
        p = self.spec["probe"]
        if self.spec["compile"]:
            self.set(self.tr.recipe.precision, True)
        self.warm(p["warm_steps"])
        epoch_end = self.epoch_end_s()
        self.warm(p["warm_steps"])
        self.chan.send("warm", config=self.config())
        while True:
            cmd = self.chan.next()
            if cmd is None:
                self.step()
                continue
            if cmd["cmd"] == "plan":
                return cmd
            if cmd["cmd"] == "measure":
                rate = self.measure(p["measure_s"])
                self.chan.send("rate", config=self.config(), steps_per_s=rate, batch_size=self.tr.recipe.batch_size,
                               steps_per_epoch=self.tr.steps_per_epoch, epoch_end_s=epoch_end,
                               setup_s=self.setup_s + self.compile_s, compile_s=self.compile_s,
                               eval_s=self.eval_s, save_s=self.save_s, plot_s=self.plot_s)
            elif cmd["cmd"] == "set":
                self.set(cmd["precision"], cmd["compile"])
                self.warm(p["warm_steps"])
                self.chan.send("warm", config=self.config(), compile_s=self.compile_s)

    def close(self) -> None:
        import torch

        self.tr.logger.close()
        del self.tr, self._batches
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        shutil.rmtree(self.dir, ignore_errors=True)


def worker_main(spec_path: str) -> int:
    """One run: (probe mode) the throwaway probe and the parent's plan, then the real training with a deadline."""
    spec = json.loads(Path(spec_path).read_text())
    chan = Channel()
    t_start = time.time()
    try:
        from swinrmt.pool import _die_with_parent

        _die_with_parent()
        import torch

        from swinrmt.compare import machine, model_size
        from swinrmt.data.device import DeviceData
        from swinrmt.train.loop import Trainer, load_run_recipe
        from swinrmt.train.metrics import read_jsonl
        from swinrmt.train.recipe import Recipe

        torch.set_num_threads(spec["threads"])
        run_dir = Path(spec["run_dir"])
        if (run_dir / RESULT).exists():  # the parent never starts one, but a finished run is never touched
            chan.send("done", message="already finished")
            return 0
        factory = DeviceData()
        recipe = Recipe.from_dict(spec["recipe"])
        compile_on, probe_info = spec["compile"], None
        resume = (run_dir / "checkpoints" / "last.safetensors").is_file()
        if spec["mode"] == "probe" and not resume:
            probe = Probe(spec, factory, chan)
            plan = probe.run()
            probe_info = {"setup_s": probe.setup_s, "compile_s": probe.compile_s, "eval_s": probe.eval_s,
                          "save_s": probe.save_s, "steps": probe.tr.step}
            probe.close()
            recipe = recipe.with_overrides([f"epochs={plan['epochs']}", f"sched.warmup_epochs={plan['warmup_epochs']}",
                                            f"precision={plan['precision']}"])
            compile_on = plan["compile"]
        mode = spec["compile_mode"]
        recipe = recipe.with_overrides([f"model.compile={str(compile_on and mode == 'default').lower()}"])
        if resume:
            recipe = load_run_recipe(run_dir)
        last_note = [time.time()]

        def on_step(tr: Any) -> None:
            now = time.time()
            if now >= spec["stop_at"]:
                raise DeadlineReached
            if now - last_note[0] >= (5 if spec["test"] else 30):
                last_note[0] = now
                chan.send("progress", message=f"epoch {tr.epoch + 1}/{tr.recipe.epochs}, batch {tr.batch_in_epoch}/"
                                              f"{tr.steps_per_epoch}, step {tr.step}")

        tr = Trainer(recipe, run_dir, resume=resume, overwrite=not resume, device=spec["device"], progress=False,
                     loader_factory=factory, step_callback=on_step)
        if compile_on and mode != "default":
            tr.train_module = torch.compile(tr.model, mode=mode)
        chan.send("started", message=f"{'resuming' if resume else 'training'} {tr.recipe.epochs} epochs "
                                     f"({tr.recipe.precision}, compile {'on' if compile_on else 'off'})")
        common = {**spec["meta"], "epochs": tr.recipe.epochs, "precision": tr.recipe.precision,
                  "compile": bool(compile_on), "compile_mode": mode if compile_on else None,
                  "device": spec["device_name"], "machine": machine(threads=False), "threads": spec["threads"],
                  "concurrency": spec["concurrency"], "probe": probe_info, "batch_size": tr.recipe.batch_size}
        try:
            res = tr.fit()
        except DeadlineReached:
            tr._save(["last"])
            ev = tr._evaluate()
            done = tr.epoch + tr.batch_in_epoch / tr.steps_per_epoch
            epochs_log = [e for e in read_jsonl(run_dir / "metrics.jsonl") if e.get("kind") == "epoch"]
            train_s = sum(e["epoch_time_s"] for e in epochs_log)
            partial = {**common, "status": "stopped at the deadline", "epochs_done": round(done, 3), **ev,
                       "steps": tr.step, "train_s": train_s, "wall_s": time.time() - t_start,
                       "img_per_s": sum(e["img_per_s"] * e["epoch_time_s"] for e in epochs_log) / train_s
                       if train_s else None, "stopped": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            from swinrmt.atomic import write_text

            write_text(run_dir / PARTIAL, json.dumps(partial, indent=1) + "\n")
            chan.send("deadline", message=f"stopped at the deadline after {done:.2f} of {tr.recipe.epochs} epochs; "
                                          f"top-1 {ev['test_top1']:.2f} %, a rerun resumes it")
            return 0
        epochs_log = [e for e in read_jsonl(run_dir / "metrics.jsonl") if e.get("kind") == "epoch"]
        train_s = sum(e["epoch_time_s"] for e in epochs_log)
        result = {**common, "status": "finished", "test_top1": res["test_top1"], "best_top1": res.get("best_top1"),
                  **{k: v for k, v in res.items() if k.startswith("test_") and k != "test_top1"},
                  "wall_s": time.time() - t_start, "train_s": train_s, "steps": res["steps"],
                  "train_images": res["train_images"], "img_per_s": res["train_images"] / train_s if train_s else None,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **model_size(run_dir)}
        write_once(run_dir / RESULT, result)
        ema = f", EMA {result['test_ema_top1']:.2f} %" if "test_ema_top1" in result else ""
        chan.send("done", message=f"finished: top-1 {result['test_top1']:.2f} %{ema}, "
                                  f"{fmt(result['img_per_s'], '.0f')} img/s")
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported to the parent in one line, traceback in the log
        traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with contextlib.suppress(Exception):
            chan.send("error", message=f"{type(exc).__name__}: {msg}")
        return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    try:
        return run(resolve(args))
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # UsageError is a ValueError
        lines = str(exc).splitlines() or [type(exc).__name__]
        print(f"run_gpu: error: {lines[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("run_gpu: interrupted (finished runs are kept; rerun to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`swinrmt bench`: images/s, step latency, peak memory, FLOPs and MFU of registered models, CPU or CUDA.

What is measured, and how (so that figures from different commits and machines compare):
- Step time: the median of `--steps` timed steps after `--warmup` untimed ones. With several models, the timed steps are
  *interleaved* (one step of each model per round), so a change of machine load during the run hits every model alike
  and the ratios between models stay meaningful. A train step is forward + cross-entropy + backward + the trainer's
  AdamW step (`swinrmt.train.optim.build_optimizer`: fused where PyTorch has the kernel) + zero_grad; an infer step is
  an eval-mode forward under `torch.inference_mode()`. CUDA steps are synchronised.
- FLOPs: `swinrmt.flops.count_forward_flops` (2 x MACs of the forward, math attention backend); a train step counts
  3 x forward. Achieved FLOP/s = FLOPs per step / median step time.
- MFU: achieved FLOP/s / peak FLOP/s, where the peak is measured in the same run by a large square matrix multiply in
  the same precision on the same threads / device (`measure_peak_flops`, median of repeats), once before and once in
  every timed round; the peak is the best of these samples (another process on the machine can only lower a sample).
  On CPU each sample is the faster of aten's mm (MKL) and oneDNN, the GEMM the models' projections run on
  (`swinrmt.layers.linear`); `peak_flops_by_kernel` in the JSON keeps both rates of the first sample.
  `mfu_paired` divides each timed step by the peak sample of its own round and takes the median: on a machine whose
  speed drifts (a shared VM), it compares each step with what the matmul reached at that time, where `mfu` compares
  the median step with the best moment of the whole run.
- Peak memory. CUDA: each model's warm-up steps run alone, one model after another, and `peak_mem_mb` is
  `torch.cuda.max_memory_allocated()` over them minus what was allocated before its first step (so, as on CPU, the
  memory the step itself needs: activations, gradients, optimizer state, workspace; not the weights). CPU: torch's CPU allocator keeps no
  statistics and tracemalloc does not see it, so each model runs again in a *fresh child process*, which records its
  resident set size after building the model, optimizer and batch, then runs `--mem-steps` steps and reads the
  kernel's high-water mark of its resident set (VmHWM in /proc/self/status on Linux; ru_maxrss elsewhere). `peak_mem_mb` is that high-water mark
  minus the RSS before the first step: the memory the step itself needs (activations, gradients, optimizer state,
  workspace), excluding the weights and the Python/torch runtime; `rss_peak_mb` is the absolute high-water mark.
- Precision: `fp32`, or `bf16` / `fp16` autocast (weights stay float32, as in mixed-precision training).
- `--compile`: `torch.compile` (Inductor, default mode) of each model; `first_step_s` (every run) is the wall time of
  the first warm-up step, which holds the compilation, and in inference `compiled_rel_error` is
  ||compiled(x) - eager(x)|| / ||eager(x)|| on the benchmark batch, so a compiled figure comes with proof that the
  compiled model computes what the eager one does.

Results go to stdout as a table and to `--out` as JSON (`SCHEMA_KEYS` lists the keys of each result row). The JSON is
rewritten (atomically) after every (precision, mode) group with `"complete": false`, then once more with `true` at the
end, so a run cut off by a time limit still leaves the tables it finished. An existing `--out` file is never replaced
unless `--overwrite` is given: a benchmark result is a result.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .atomic import write_json
from .flops import TRAIN_FLOPS_FACTOR, count_forward_flops
from .runtime import allocator_name, keep_freed_memory

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("train", "infer")
DEFAULT_MODELS = ("rmt_tiny", "gated_swinrmt_retention_tiny", "gated_swinrmt_swat_tiny")
SCHEMA_KEYS = ("model", "mode", "precision", "device", "img_size", "batch", "params", "stem_stride", "window",
               "images_per_s", "step_ms", "step_ms_p10", "step_ms_p90", "step_ms_all", "flops_per_image",
               "flops_per_step", "achieved_flops", "peak_flops", "mfu", "peak_mem_mb", "rss_peak_mb",
               "step_time_ratio", "peak_mem_ratio", "baseline", "first_step_s", "compiled_rel_error",
               "mfu_paired", "peak_flops_rounds")


# ----------------------------------------------------------------------------------------------------------------------
# Small pure helpers (tested directly)
# ----------------------------------------------------------------------------------------------------------------------
def mfu(flops_per_step: float, step_seconds: float, peak_flops: float) -> float:
    """Model FLOP utilisation: (FLOPs per step / seconds per step) / peak FLOP/s."""
    if step_seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"step_seconds and peak_flops must be positive, got {step_seconds}, {peak_flops}")
    return flops_per_step / step_seconds / peak_flops


def step_flops(flops_per_image: int, batch: int, mode: str) -> int:
    """FLOPs of one step: batch x forward FLOPs, x TRAIN_FLOPS_FACTOR (3) when training."""
    return flops_per_image * batch * (TRAIN_FLOPS_FACTOR if mode == "train" else 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    pos = (len(v) - 1) * q / 100.0
    lo, hi = int(pos), min(int(pos) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bfloat16 instructions here (AVX-512 BF16 / AMX); elsewhere bf16 matmuls are emulated."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _peak_kernels(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """The large-GEMM kernels the models' own layers can reach: aten's mm (MKL on CPU, cuBLAS on CUDA) and, for CPU
    float32/bfloat16, oneDNN's linear (`swinrmt.kernels.linear` runs the projections on it; on AMD CPUs it beats MKL
    by about 20 %, so a peak measured with mm alone would let layers run above "peak")."""
    from .kernels.onednn import HAVE_ONEDNN_LINEAR

    kernels: dict[str, Any] = {"aten.mm": lambda: a @ b}
    # oneDNN's bfloat16 linear has no fast path on CPUs without AVX-512 (it ran for minutes on an AVX2 EPYC), and
    # the models' bfloat16 projections never reach it (under autocast F.linear takes them)
    onednn_dtypes = (torch.float32, torch.bfloat16) if _cpu_has_native_bf16() else (torch.float32,)
    if a.device.type == "cpu" and a.dtype in onednn_dtypes and HAVE_ONEDNN_LINEAR:
        bt = b.t().contiguous()
        kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], "")
    return kernels


def peak_flops_by_kernel(device: str | torch.device = "cpu", precision: str = "fp32", n: int | None = None,
                         repeats: int = 7) -> dict[str, float]:
    """FLOP/s of one n x n @ n x n product (2 n^3 FLOPs) in `precision`, median over `repeats`, per GEMM kernel.

    CPU default n = 2048 (large enough to saturate the BLAS on a few cores without taking seconds), CUDA n = 8192.
    """
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = PRECISIONS[precision]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    rates = {}
    for name, fn in _peak_kernels(a, b).items():
        for _ in range(2):
            fn()
        _sync(device)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        rates[name] = 2.0 * n ** 3 / statistics.median(times)
    return rates


def measure_peak_flops(device: str | torch.device = "cpu", precision: str = "fp32", n: int | None = None,
                       repeats: int = 7) -> float:
    """Peak FLOP/s of this machine: the fastest kernel of `peak_flops_by_kernel`."""
    return max(peak_flops_by_kernel(device, precision, n, repeats).values())


# ----------------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------------
class _Runner:
    """One model, ready to step in one mode and precision."""

    def __init__(self, name: str, mode: str, precision: str, img_size: int, batch: int, device: torch.device,
                 num_classes: int, compile: bool = False, model_kwargs: dict | None = None, seed: int = 0):
        from .registry import create_model
        from .train.optim import build_optimizer
        from .train.recipe import OptimCfg

        torch.manual_seed(seed)
        self.name, self.mode, self.precision, self.device = name, mode, precision, device
        self.model = create_model(name, num_classes=num_classes, img_size=img_size, **(model_kwargs or {}))
        self.model.to(device)
        self.model.train(mode == "train")
        self.x = torch.randn(batch, 3, img_size, img_size, device=device)
        self.y = torch.randint(0, num_classes, (batch,), device=device)
        # the trainer's optimizer (parameter groups, fused kernel), so a bench step is a training step
        self.opt = build_optimizer(self.model, OptimCfg(lr=1e-4)) if mode == "train" else None
        self.fn = torch.compile(self.model) if compile else self.model

    def _ctx(self):
        dtype = PRECISIONS[self.precision]
        return nullcontext() if dtype == torch.float32 else torch.autocast(self.device.type, dtype=dtype)

    def compiled_rel_error(self) -> float:
        """||compiled(x) - eager(x)|| / ||eager(x)|| in this runner's precision: a compiled model is timed only
        beside proof that it computes what the eager one does (eval mode: no dropout to tell them apart)."""
        with torch.inference_mode(), self._ctx():
            got, want = self.fn(self.x).float(), self.model(self.x).float()
        return float((got - want).norm() / want.norm().clamp_min(1e-30))

    def step(self) -> float:
        """Run one step; return its wall time in seconds (synchronised on CUDA)."""
        _sync(self.device)
        t0 = time.perf_counter()
        if self.mode == "train":
            with self._ctx():
                loss = F.cross_entropy(self.fn(self.x), self.y)
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), self._ctx():
                self.fn(self.x)
        _sync(self.device)
        return time.perf_counter() - t0


def _cuda_allocated(device: torch.device) -> int:
    """Bytes allocated on `device` now, after resetting its high-water mark (0 off CUDA)."""
    if device.type != "cuda":
        return 0
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the high-water mark so far
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    """Peak RSS of this process image. Linux: VmHWM of /proc/self/status. Not ru_maxrss there: Linux carries
    ru_maxrss across fork + exec, so a child of a big parent would report the parent's high-water mark."""
    try:
        with open("/proc/self/status") as f:
            for ln in f:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def memory_child(spec: dict) -> dict:
    """Run inside a fresh process: RSS before the first step, kernel high-water mark after `mem_steps` steps."""
    torch.set_num_threads(spec["threads"])
    keep_freed_memory()  # measured under the allocator the timed steps ran under
    from . import kernels

    # a fresh process: the defaults hold unless the reference path is asked for
    with kernels.reference() if spec.get("reference", False) else nullcontext():
        return _measure_memory(spec)


def _measure_memory(spec: dict) -> dict:
    r = _Runner(spec["model"], spec["mode"], spec["precision"], spec["img_size"], spec["batch"],
                torch.device("cpu"), spec["num_classes"], spec.get("compile", False), spec.get("model_kwargs"))
    before = _rss_bytes()
    for _ in range(spec["mem_steps"]):
        r.step()
    peak = _maxrss_bytes()
    return {"peak_mem_mb": (peak - before) / 2 ** 20, "rss_peak_mb": peak / 2 ** 20}


def _cpu_peak_memory(spec: dict) -> dict:
    cmd = [sys.executable, "-m", "swinrmt.bench", "--memory-child", json.dumps(spec)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {spec['model']} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------------
def _machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": str(device), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "cpu": platform.processor(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cpu":  # which CPU paths ran (swinrmt.kernels: the C++ kernels, the projections' GEMM)
        from .kernels import onednn, policy

        pol = policy.current()
        info["cpu_kernels"] = pol.cpp
        info["cpu_linear"] = "onednn" if pol.onednn_linear and onednn.HAVE_ONEDNN_LINEAR else "aten"
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), info["cpu"])
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["matmul_tf32"], info["cudnn_tf32"] = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            info["git_commit"] = sha.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def run_bench(models: Sequence[str] = DEFAULT_MODELS, img_size: int = 64, batch: int = 64,
              modes: Sequence[str] = ("train",), precisions: Sequence[str] = ("fp32",), steps: int = 10,
              warmup: int = 2, device: str = "cpu", compile: bool = False, memory: bool = True, mem_steps: int = 2,
              num_classes: int = 100, model_kwargs: dict | None = None, baseline: str | None = None,
              threads: int | None = None, reference: bool = False, log=print,
              on_group: Callable[[dict[str, Any]], None] | None = None, tf32: bool = True) -> dict[str, Any]:
    """Benchmark every (mode, precision, model); returns the JSON-ready report (see module docstring).

    `tf32`: on CUDA, float32 matmuls and cuDNN convolutions on TF32 tensor cores (the recipes' default `cuda.tf32`,
    `swinrmt.train.cuda_settings`), or both strict IEEE float32; recorded in the report's config and machine info.
    No effect on CPU (recorded as null there).

    `on_group(report)` is called after each (precision, mode) group with the report so far (`"complete": False`), so a
    caller can save what is finished before a long run is cut off."""
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode {m!r} is not one of {MODES}")
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"precision {p!r} is not one of {tuple(PRECISIONS)}")
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    if batch < 1:  # images per second of an empty batch mean nothing
        raise ValueError(f"--batch must be >= 1, got {batch}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if threads:
        torch.set_num_threads(threads)
    if dev.type == "cpu":
        keep_freed_memory()  # what the trainer runs under (see swinrmt.runtime)
    from . import kernels

    from types import SimpleNamespace

    from .train import cuda_settings

    saved = cuda_settings.apply(SimpleNamespace(tf32=tf32, deterministic=False), dev)
    try:
        with kernels.reference() if reference else nullcontext():  # --reference-path: plain PyTorch code
            return _run_bench(models, img_size, batch, modes, precisions, steps, warmup, dev, compile, memory,
                              mem_steps, num_classes, model_kwargs, baseline, reference, log, on_group)
    finally:
        cuda_settings.restore(saved)


def _run_bench(models, img_size, batch, modes, precisions, steps, warmup, dev, compile, memory, mem_steps,
               num_classes, model_kwargs, baseline, reference, log, on_group) -> dict[str, Any]:
    baseline = baseline or models[0]
    report: dict[str, Any] = {"machine": _machine_info(dev), "config": {
        "models": list(models), "img_size": img_size, "batch": batch, "modes": list(modes),
        "precisions": list(precisions), "steps": steps, "warmup": warmup, "compile": compile,
        "num_classes": num_classes, "model_kwargs": model_kwargs or {}, "baseline": baseline,
        "fast_path": not reference, "cpu_allocator": allocator_name(),
        "tf32": torch.backends.cuda.matmul.allow_tf32 if dev.type == "cuda" else None,
        "memory_method": ("torch.cuda.max_memory_allocated over the warm-up steps - allocated before"
                          if dev.type == "cuda" else
                          "fresh child process: ru_maxrss after steps - RSS before the first step"),
        "argv": sys.argv[1:]}, "load_avg_start": _loadavg(), "peak_flops": {}, "results": [], "complete": False}
    from .registry import create_model

    flops = {}
    info = {}
    for name in models:
        with torch.device("meta"):
            m = create_model(name, num_classes=num_classes, img_size=img_size, **(model_kwargs or {}))
        flops[name] = count_forward_flops(m, img_size)
        info[name] = {"params": sum(p.numel() for p in m.parameters()),
                      "stem_stride": getattr(m, "stem_stride", getattr(m, "patch_size", None)),
                      "window": getattr(m, "window_size", None)}
        del m
    for precision in precisions:
        if dev.type == "cpu" and precision == "bf16" and not _cpu_has_native_bf16():
            log("note: this CPU has no native bfloat16 (AVX-512 BF16 / AMX): bf16 matmuls run emulated, tens of times "
                "slower than fp32, and so does this run")
        peaks = report.setdefault("peak_flops_samples", {}).setdefault(precision, [])
        by_kernel = peak_flops_by_kernel(dev, precision)
        report.setdefault("peak_flops_by_kernel", {})[precision] = by_kernel
        peaks.append(max(by_kernel.values()))
        rates = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in by_kernel.items())
        log(f"peak {precision} matmul: {peaks[-1] / 1e9:.1f} GFLOP/s ({rates}; {dev}, "
            f"{torch.get_num_threads()} threads)")
        for mode in modes:
            if compile:  # compiled code is cached per code object: start each group clear of the last one's entries
                torch._dynamo.reset()
            runners = [_Runner(n, mode, precision, img_size, batch, dev, num_classes, compile, model_kwargs)
                       for n in models]
            first_step: dict[str, float] = {}
            cuda_mem: dict[str, float] = {}
            compile_err: dict[str, float] = {}
            for r in runners:  # one model after another, so each one's memory is measured alone
                before = _cuda_allocated(dev)
                for _ in range(max(warmup, 1 if memory and dev.type == "cuda" else 0)):
                    t = r.step()
                    first_step.setdefault(r.name, t)
                if dev.type == "cuda":
                    cuda_mem[r.name] = (torch.cuda.max_memory_allocated(dev) - before) / 2 ** 20
                if compile and mode == "infer":
                    compile_err[r.name] = r.compiled_rel_error()
            times: dict[str, list[float]] = {r.name: [] for r in runners}
            round_peaks: list[float] = []
            for _ in range(steps):  # interleaved rounds: load drift hits every model alike (the peak matmul too)
                round_peaks.append(measure_peak_flops(dev, precision, repeats=3))
                peaks.append(round_peaks[-1])
                for r in runners:
                    times[r.name].append(r.step())
            del runners
            # the machine's peak = the best matmul rate seen in this run (contention only ever lowers a sample)
            peak = max(peaks)
            report["peak_flops"][precision] = peak
            rows = []
            for name in models:
                med = statistics.median(times[name])
                fps = step_flops(flops[name], batch, mode)
                row: dict[str, Any] = {
                    "model": name, "mode": mode, "precision": precision, "device": str(dev), "img_size": img_size,
                    "batch": batch, **info[name], "images_per_s": batch / med, "step_ms": med * 1e3,
                    "step_ms_p10": percentile(times[name], 10) * 1e3, "step_ms_p90": percentile(times[name], 90) * 1e3,
                    "step_ms_all": [t * 1e3 for t in times[name]], "flops_per_image": flops[name],
                    "flops_per_step": fps, "achieved_flops": fps / med, "peak_flops": peak,
                    "mfu": mfu(fps, med, peak), "peak_mem_mb": None, "rss_peak_mb": None,
                    "first_step_s": first_step.get(name), "compiled_rel_error": compile_err.get(name),
                    "mfu_paired": statistics.median(mfu(fps, t, p) for t, p in zip(times[name], round_peaks)),
                    "peak_flops_rounds": round_peaks,
                }
                if memory and dev.type == "cuda":
                    row["peak_mem_mb"] = cuda_mem.get(name)
                elif memory:
                    spec = {"model": name, "mode": mode, "precision": precision, "img_size": img_size, "batch": batch,
                            "num_classes": num_classes, "mem_steps": mem_steps, "threads": torch.get_num_threads(),
                            "model_kwargs": model_kwargs or {}, "reference": reference}
                    row.update(_cpu_peak_memory(spec))
                rows.append(row)
            base = next(r for r in rows if r["model"] == baseline) if baseline in models else rows[0]
            for row in rows:
                row["baseline"] = base["model"]
                row["step_time_ratio"] = row["step_ms"] / base["step_ms"]
                row["peak_mem_ratio"] = (row["peak_mem_mb"] / base["peak_mem_mb"]
                                         if row["peak_mem_mb"] and base["peak_mem_mb"] else None)
                report["results"].append(row)
                log(format_row(row))
            if on_group is not None:
                on_group(report)
    report["load_avg_end"] = _loadavg()
    report["complete"] = True
    return report


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


HEADER = (f"{'model':34s} {'mode':5s} {'prec':4s} {'img/s':>8s} {'step ms':>9s} {'GFLOP/img':>9s} {'GFLOP/s':>8s} "
          f"{'MFU':>6s} {'mem MB':>8s} {'x time':>6s} {'x mem':>6s}")


def format_row(r: dict) -> str:
    mem = f"{r['peak_mem_mb']:8.0f}" if r.get("peak_mem_mb") is not None else f"{'-':>8s}"
    ratio = f"{r['step_time_ratio']:6.2f}" if r.get("step_time_ratio") is not None else f"{'-':>6s}"
    mr = f"{r['peak_mem_ratio']:6.2f}" if r.get("peak_mem_ratio") is not None else f"{'-':>6s}"
    return (f"{r['model']:34s} {r['mode']:5s} {r['precision']:4s} {r['images_per_s']:8.1f} {r['step_ms']:9.1f} "
            f"{r['flops_per_image'] / 1e9:9.3f} {r['achieved_flops'] / 1e9:8.1f} {100 * r['mfu']:5.1f}% {mem} "
            f"{ratio} {mr}")


def format_table(report: dict) -> str:
    lines = [HEADER] + [format_row(r) for r in report["results"]]
    peaks = ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in report["peak_flops"].items())
    lines.append(f"peak matmul: {peaks}; load avg start {report.get('load_avg_start')} end {report.get('load_avg_end')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered model names (first = baseline)")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mode", nargs="+", default=["train"], choices=MODES, help="train and/or infer")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=tuple(PRECISIONS),
                   help="fp32, or bf16/fp16 autocast")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--tf32", choices=("on", "off"), default="on",
                   help="CUDA: float32 matmuls and convs on TF32 tensor cores (default on, as the recipes); off: IEEE")
    p.add_argument("--stem-stride", type=int, default=None, choices=(2, 4),
                   help="override the stem stride (4 = the public RMT code's layout at any size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra create_model keyword (JSON value), repeatable, e.g. --set window_size=8")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--reference-path", action="store_true",
                   help="run the mixers' plain reference path instead of the fast path (before/after comparisons)")
    p.add_argument("--baseline", default=None, help="model the ratios refer to (default: the first)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--mem-steps", type=int, default=2, help="steps run by the CPU memory child process")
    p.add_argument("--out", default=None, help="write the JSON report here (also after each finished group)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from .registry import get_entry, parse_model_options

    for name in args.models:
        get_entry(name)  # unknown names fail fast, with suggestions
    kw = parse_model_options(args.set)
    if args.stem_stride is not None:
        kw["stem_stride"] = args.stem_stride
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} already exists; pass --overwrite to replace it")
    print(HEADER)
    save = (lambda report: write_json(args.out, report)) if args.out else None
    report = run_bench(args.models, args.img_size, args.batch, args.mode, args.precision, args.steps, args.warmup,
                       args.device, args.compile, not args.no_memory, args.mem_steps, args.num_classes, kw,
                       args.baseline, args.threads, args.reference_path, on_group=save, tf32=args.tf32 == "on")
    print(format_table(report).splitlines()[-1])
    if save:
        save(report)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        print(json.dumps(memory_child(json.loads(sys.argv[2]))))
    else:
        from .cli import main

        sys.exit(main(["bench"] + sys.argv[1:]))

#!/usr/bin/env python3
"""One prepared GPU check (issue 36): everything a session lent a GPU should run first, in one call of at most
8 minutes. Start it through `smoke.sh`; `--test` runs the same script end to end on the CPU (tiny sizes, no compile).

Sections, each timed and recorded (ok / failed with the error / skipped with the reason), in this order:
  versions     torch, CUDA, cuDNN, GPU, kornia, git commit
  cuda_tests   pytest tests/test_cuda.py
  resume       `swinrmt train` on the device with cuda.deterministic=true, stopped after a checkpoint and resumed,
               against the same run uninterrupted: final weights compared bit for bit
  eval         `swinrmt eval` of that run on the device and on the CPU: top-1 and loss side by side
  syncs        host syncs per training step on the device (`swinrmt.train.syncs`), and the time of a step with
               cuda.deterministic on and off
  kernels      per family, the attention kernels a training step ran (profiler op names: flash / efficient / cudnn /
               math / flex / swinrmt's CPU kernel)
  ddp          a world-size-1 process group (NCCL on a GPU, gloo on the CPU), DDP and SyncBatchNorm, one step
  bf16_compile per family, a bf16 autocast training step, eager and (GPU only) torch.compile'd, loss finite
  flex         per family, FlexAttention (policy flex_attention) against SDPA: forward (+ backward on a GPU),
               max difference and time
  run_gpu      benchmarks/reproduction/run_gpu.sh on a small budget
Writes OUT/smoke.json and OUT/smoke.md. Exit code 0 when every section that ran is ok, 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAMILIES = ("rmt_nano", "gated_swinrmt_retention_nano", "gated_swinrmt_swat_nano", "swin_nano")
SECTIONS = ("versions", "cuda_tests", "resume", "eval", "syncs", "kernels", "ddp", "bf16_compile", "flex", "run_gpu")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="smoke.sh", description=__doc__.splitlines()[0])
    p.add_argument("--test", action="store_true", help="the same checks on the CPU, tiny sizes, no compile")
    p.add_argument("--out", default=None, help="output folder (default runs/gpu-smoke; test: runs/gpu-smoke-test)")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections to leave out")
    p.add_argument("--budget", type=float, default=450.0, help="seconds; a section that starts later is skipped")
    return p.parse_args(argv)


class Smoke:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.test = args.test
        self.device = "cpu" if args.test or not torch.cuda.is_available() else "cuda"
        self.out = Path(args.out or ("runs/gpu-smoke-test" if args.test else "runs/gpu-smoke")).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="smoke-", dir=self.out))
        self.skip, self.deadline = set(args.skip), time.time() + args.budget
        self.report: dict[str, Any] = {"mode": "test (CPU)" if self.test else self.device, "device": self.device,
                                       "sections": {}}

    # -- machinery ------------------------------------------------------------------------------------------------
    def section(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        rec: dict[str, Any]
        if name in self.skip:
            rec = {"status": "skipped", "reason": "--skip"}
        elif time.time() > self.deadline:
            rec = {"status": "skipped", "reason": "over the budget"}
        else:
            t0 = time.time()
            try:
                rec = {"status": "ok", **fn()}
            except Exception as exc:  # a failed section is recorded; the others still run
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500],
                       "traceback": traceback.format_exc()[-2000:]}
            rec["seconds"] = round(time.time() - t0, 1)
        self.report["sections"][name] = rec
        print(f"[smoke] {name}: {rec['status']} {rec.get('seconds', '')}s "
              f"{rec.get('error', rec.get('reason', ''))}", flush=True)
        self.write()

    def write(self) -> None:
        from swinrmt.atomic import write_json, write_text

        write_json(self.out / "smoke.json", self.report)
        write_text(self.out / "smoke.md", markdown(self.report))

    def recipe(self, *extra: str):
        from swinrmt.train.recipe import load_recipe

        size = ["img_size=16", "batch_size=8", "data.limit_train=48", "data.limit_test=32"] if self.test else \
            ["img_size=32", "batch_size=64", "data.limit_train=1024", "data.limit_test=512"]
        return load_recipe("quick", [*size, "model.name=rmt_nano", "epochs=2", "log_every_steps=2",
                                     "health_images=0", "data.eval_batch_size=64", *extra])

    # -- sections -------------------------------------------------------------------------------------------------
    def versions(self) -> dict[str, Any]:
        import kornia
        import torch

        info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                "kornia": kornia.__version__, "cudnn": torch.backends.cudnn.version() if self.device == "cuda" else None}
        if self.device == "cuda":
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        with contextlib.suppress(Exception):
            info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                                                text=True, timeout=10).stdout.strip()
        return info

    def cuda_tests(self) -> dict[str, Any]:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "tests/test_cuda.py", "-p", "no:cacheprovider"],
                           cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
        tail = r.stdout.strip().splitlines()[-1:] or [""]
        if r.returncode not in (0, 5):  # 5: nothing collected
            raise RuntimeError(f"pytest exit {r.returncode}: {tail[0]}")
        return {"summary": tail[0]}

    def resume(self) -> dict[str, Any]:
        import torch
        from safetensors.torch import load_file

        from swinrmt.train import train

        recipe = self.recipe("ckpt_every_steps=2", "cuda.deterministic=true")
        whole = train(recipe, self.work / "whole", device=self.device, progress=False)

        class Stop(Exception):
            pass

        def stop_after_first_checkpoint(trainer) -> None:
            if trainer.step == 2:
                raise Stop

        with contextlib.suppress(Stop):
            train(recipe, self.work / "stopped", device=self.device, progress=False,
                  step_callback=stop_after_first_checkpoint)
        resumed = train(None, self.work / "stopped", resume=True, device=self.device, progress=False)
        a = load_file(str(self.work / "whole" / "checkpoints" / "last.safetensors"))
        b = load_file(str(self.work / "stopped" / "checkpoints" / "last.safetensors"))
        diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
        same = all(torch.equal(a[k], b[k]) for k in a)
        if not same:
            raise AssertionError(f"resumed run differs from the uninterrupted one (max |diff| {diff:.3g})")
        return {"steps": whole["steps"], "bit_identical": same, "max_abs_diff": diff,
                "test_top1": [whole.get("test_top1"), resumed.get("test_top1")]}

    def eval(self) -> dict[str, Any]:
        from swinrmt.train.evaluation import evaluate

        run = self.work / "whole"
        if not (run / "checkpoints" / "last.safetensors").exists():
            raise RuntimeError("no run to evaluate (the resume section did not finish)")
        res = {}
        for dev in dict.fromkeys([self.device, "cpu"]):
            r = evaluate(str(run), which="last", device=dev, out_dir=str(self.work / f"eval-{dev}"), progress=False)
            res[dev] = {"top1": r["top1"], "loss": r["loss"]}
        if "cuda" in res and abs(res["cuda"]["top1"] - res["cpu"]["top1"]) > 5:
            raise AssertionError(f"top-1 on the GPU and the CPU differ by more than 5 points: {res}")
        return res

    def syncs(self) -> dict[str, Any]:
        import torch

        from swinrmt.train.loop import Trainer
        from swinrmt.train.syncs import HostSyncCounter

        out: dict[str, Any] = {}
        for det in (False, True):
            recipe = self.recipe("mixup.mixup_alpha=0.8", "mixup.cutmix_alpha=1.0", "ema.enabled=true",
                                 "optim.clip_grad_norm=5.0", f"cuda.deterministic={str(det).lower()}")
            t = Trainer(recipe, self.work / f"syncs-{det}", device=self.device, progress=False)
            t.train_module.train()
            batches, counts, times = iter(t.train_loader), [], []
            for i in range(4):
                x, y, _ = next(batches)
                plan = t._host_step(x, y)
                if i == 0:
                    t._device_step(x, y, plan)
                    continue
                if self.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with HostSyncCounter() as c:
                    t._device_step(x, y, plan)
                if self.device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                counts.append(dict(c.counts))
            from swinrmt.train import cuda_settings

            cuda_settings.restore(t.cuda_saved)
            out[f"deterministic={det}"] = {"syncs_per_step": counts, "step_ms_median": 1e3 * sorted(times)[1]}
        if any(c for v in out.values() for c in v["syncs_per_step"]):
            raise AssertionError(f"host syncs inside the device step: {out}")
        return out

    def kernels(self) -> dict[str, Any]:
        import torch
        from torch.profiler import ProfilerActivity, profile

        import swinrmt

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])
        keys = ("attention", "flash", "efficient", "cudnn", "fmha", "softmax", "short_attention", "flex")
        res = {}
        for name in FAMILIES:
            torch.manual_seed(0)
            m = swinrmt.create_model(name, num_classes=10, img_size=32).to(self.device)
            x = torch.randn(8 if self.test else 64, 3, 32, 32, device=self.device)
            m(x).sum().backward()
            with profile(activities=acts) as prof:
                m(x).sum().backward()
            if self.device == "cuda":
                torch.cuda.synchronize()
            names = sorted({e.key for e in prof.key_averages() if any(k in e.key.lower() for k in keys)})
            res[name] = names[:40]
        return res

    def ddp(self) -> dict[str, Any]:
        import torch
        import torch.distributed as dist
        import torch.nn as nn

        import swinrmt

        backend = "nccl" if self.device == "cuda" else "gloo"
        port = 29500 + os.getpid() % 1000
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        try:
            torch.manual_seed(0)
            m = swinrmt.create_model("rmt_nano", num_classes=10, img_size=32).to(self.device)
            sync_bn = self.device == "cuda"  # SyncBatchNorm runs on GPUs only
            if sync_bn:
                m = nn.SyncBatchNorm.convert_sync_batchnorm(m)
            ddp = nn.parallel.DistributedDataParallel(m, device_ids=[0] if self.device == "cuda" else None)
            opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
            x = torch.randn(8, 3, 32, 32, device=self.device)
            loss = ddp(x).logsumexp(-1).mean()
            loss.backward()
            opt.step()
            n_sync = sum(isinstance(mod, nn.SyncBatchNorm) for mod in m.modules())
            return {"backend": backend, "loss": float(loss), "sync_batchnorm_layers": n_sync,
                    "note": None if sync_bn else "SyncBatchNorm needs a GPU: DDP step only"}
        finally:
            dist.destroy_process_group()

    def bf16_compile(self) -> dict[str, Any]:
        import torch

        import swinrmt

        res = {}
        for name in FAMILIES:
            row = {}
            for compiled in ((False,) if self.test else (False, True)):
                torch.manual_seed(0)
                m = swinrmt.create_model(name, num_classes=10, img_size=32).to(self.device)
                fn = torch.compile(m) if compiled else m
                x = torch.randn(8 if self.test else 64, 3, 32, 32, device=self.device)
                t0 = time.perf_counter()
                with torch.autocast(self.device, dtype=torch.bfloat16):
                    loss = fn(x).float().logsumexp(-1).mean()
                loss.backward()
                if not math.isfinite(float(loss)):
                    raise AssertionError(f"{name}: loss {float(loss)} (compiled={compiled})")
                row["compiled" if compiled else "eager"] = {"loss": float(loss),
                                                            "first_step_s": round(time.perf_counter() - t0, 2)}
            res[name] = row
        if self.test:
            res["note"] = "--test: eager only (compiling takes minutes on a CPU)"
        return res

    def flex(self) -> dict[str, Any]:
        import warnings

        import torch

        import swinrmt
        from swinrmt import kernels
        from swinrmt.kernels import flex

        if self.test:
            flex.COMPILE = False  # the same math, uncompiled (compiling takes a minute a shape on a CPU)
        flex._flex.cache_clear()
        res = {}
        train = self.device == "cuda"  # no FlexAttention backward on the CPU (torch 2.13)
        for name in FAMILIES:
            torch.manual_seed(0)
            m = swinrmt.create_model(name, num_classes=10, img_size=32).to(self.device)
            x = torch.randn(8 if self.test else 64, 3, 32, 32, device=self.device)
            outs, grads, times = {}, {}, {}
            for route, fields in (("sdpa", {}), ("flex", {"flex_attention": True})):
                with kernels.use(**fields), warnings.catch_warnings(), torch.set_grad_enabled(train):
                    warnings.simplefilter("ignore", UserWarning)
                    for rep in range(2):  # the first call compiles
                        m.zero_grad(set_to_none=True)
                        torch.manual_seed(1)  # the same drop-path draws on both routes
                        t0 = time.perf_counter()
                        y = m(x)
                        if train:
                            y.square().sum().backward()
                        if self.device == "cuda":
                            torch.cuda.synchronize()
                        times[route] = time.perf_counter() - t0
                outs[route] = y.detach().float()
                grads[route] = [p.grad.float() for p in m.parameters() if p.grad is not None] if train else []
            row = {"max_abs_diff_out": float((outs["flex"] - outs["sdpa"]).abs().max()),
                   "ms": {k: round(1e3 * v, 2) for k, v in times.items()}}
            if train:
                row["max_abs_diff_grad"] = max((float((a - b).abs().max()) for a, b in
                                                zip(grads["flex"], grads["sdpa"])), default=0.0)
            res[name] = row
        flex.COMPILE = True
        flex._flex.cache_clear()
        return {"compiled": not self.test, "backward": train, "families": res}

    def run_gpu(self) -> dict[str, Any]:
        out = self.work / "run_gpu"
        args = ["--test", "--models", "rmt_nano", "--max-epochs", "1"] if self.test else \
            ["--budget", "150", "--models", "rmt_tiny", "--max-epochs", "2", "--compile", "off"]
        r = subprocess.run(["bash", str(REPO / "benchmarks/reproduction/run_gpu.sh"), *args, "--out", str(out)],
                           capture_output=True, text=True, timeout=400,
                           env={**os.environ, "PYTHON": sys.executable})
        if r.returncode != 0:
            raise RuntimeError(f"run_gpu.sh exit {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1]}")
        summary = out / "summary.json"
        return {"args": args, "summary": json.loads(summary.read_text()) if summary.exists() else None}

    def run(self) -> int:
        for name in SECTIONS:
            self.section(name, getattr(self, name))
        bad = [k for k, v in self.report["sections"].items() if v["status"] == "failed"]
        self.report["failed"] = bad
        self.write()
        print(f"[smoke] wrote {self.out / 'smoke.json'} and smoke.md; failed: {bad or 'none'}")
        return 1 if bad else 0


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU smoke check ({report['mode']})", "", "| section | status | seconds | result |", "|---|---|---|---|"]
    for name, rec in report["sections"].items():
        detail = {k: v for k, v in rec.items() if k not in ("status", "seconds", "traceback")}
        text = json.dumps(detail, default=str)
        lines.append(f"| {name} | {rec['status']} | {rec.get('seconds', '')} | {text[:600].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.test:
        import torch

        if not torch.cuda.is_available():
            from swinrmt.train.distributed import cuda_absence

            print(f"smoke: error: no CUDA device: {cuda_absence()} ({sys.executable}); --test runs the CPU check",
                  file=sys.stderr)
            return 2
    return Smoke(args).run()


if __name__ == "__main__":
    sys.exit(main())

"""The training loop: `train(recipe, out_dir)` and the `Trainer` behind it.

Resuming is exact because nothing random depends on history: augmentation is keyed on (seed, epoch, sample index)
(`SeededSamples`), the sample order on (seed, epoch) (`ResumableSampler`), mixup on (seed, epoch, step, rank), and
dropout / drop-path on (seed, rank, step) by re-seeding the global generator before every step. A checkpoint then
only needs weights, optimizer moments, the schedule step, the loader position and the epoch's running sums.

Under faults: one trainer per run directory (an flock held for the whole run, resumes included); a non-finite loss
stops the run with one line naming the step and no checkpoint is written after it (the flag lives on the device and is
read where the loop syncs anyway: at log records and before a checkpoint); a resume verifies the checkpoint's checksum
and refuses a recipe change that would alter what is trained; temp files of a killed write are removed at the start.
"""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..data.sampling import mix_seed
from ..atomic import exclusive, remove_stale_temps, write_json, write_text
from ..models.health import attention_health
from ..runtime import keep_freed_memory
from . import cuda_settings, distributed
from .builders import (DROPOUT_STREAM, MIXUP_STREAM, autocast, build_model, check_labels, load_split, make_loader,
                       model_norm_stats, model_spec, warn)
from .checkpoint import CKPT_DIR, check_same_model, load_checkpoint, load_weights, save_checkpoint
from .ema import ModelEma
from .evaluation import run_evaluation
from .metrics import JsonlLogger, plot_confusion, plot_curves, read_jsonl, truncate_jsonl
from .optim import Scheduler, build_optimizer
from .recipe import Recipe

CONFIG, METRICS, CURVES = "config.yaml", "metrics.jsonl", "curves.png"
EVAL_JSON, CONFUSION_PNG = "eval.json", "confusion.png"
LOCK = ".swinrmt-train.lock"
# Recipe keys a resume may change: how the run is executed and logged, not what it trains.
RESUMABLE_KEYS = ("data.root", "data.num_workers", "data.verify", "data.decode_cache", "data.eval_batch_size",
                  "cpu_threads", "log_every_steps", "ckpt_every_steps", "model.compile")
TRAINER_FILES = (CONFIG, METRICS, CURVES, EVAL_JSON, CONFUSION_PNG, f"{CKPT_DIR}/last.safetensors",
                 f"{CKPT_DIR}/best.safetensors")


class DivergedError(ValueError):
    """The loss (or the weights) became inf / NaN: the run stops, and no checkpoint is written after it."""


# -- run directory -----------------------------------------------------------------------------------------------

def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber: a non-empty directory needs --resume (continue) or --overwrite (start over)."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if resume:
        if not (run_dir / CKPT_DIR / "last.safetensors").is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint {run_dir / CKPT_DIR / 'last.safetensors'}")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()) and not overwrite:
        raise ValueError(f"run directory {run_dir} already exists and is not empty; pass --resume to continue "
                         "it or --overwrite to start over (or choose another --out)")


def init_run_dir(run_dir: Path, *, fresh: bool, is_main: bool) -> None:
    """Create the directory; for a fresh run remove the trainer's own files only (anything else stays)."""
    distributed.barrier()  # every rank has checked the directory before rank 0 changes it
    if is_main:
        if fresh:
            for name in TRAINER_FILES:
                (run_dir / name).unlink(missing_ok=True)
        (run_dir / CKPT_DIR).mkdir(parents=True, exist_ok=True)
    distributed.barrier()


# -- training ----------------------------------------------------------------------------------------------------

class Trainer:
    """One training run; `fit()` returns the final metrics. Rank 0 alone writes files and draws progress bars."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
                 device: str = "auto", progress: bool = True,
                 loader_factory: Callable[..., tuple[Any, Any, Any]] | None = None,
                 step_callback: Callable[["Trainer"], None] | None = None) -> None:
        """Opt-in hooks for drivers (both default to None, the trainer as it always was): `loader_factory` replaces
        `builders.make_loader` (same signature and results), e.g. `swinrmt.data.device.DeviceData()` for batches made
        on the device; `step_callback(trainer)` runs after every training step (a wall-clock deadline, a probe)."""
        self._make_loader = loader_factory or make_loader
        self.step_callback = step_callback
        self.dist = distributed.setup(device)
        self.run_dir, self.main, self.device = Path(run_dir), self.dist.is_main, self.dist.device
        self.progress = progress and self.main
        self._held = contextlib.ExitStack()  # the run directory's lock, released when fit() ends
        try:
            self._init(recipe, resume, overwrite)
        except BaseException:
            self._release()
            raise

    def _lock(self, resume: bool, overwrite: bool) -> None:
        """Hold the run directory's lock (rank 0), then check the directory: a second trainer is refused."""
        if resume or not self.main:
            check_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        if not self.main:
            return
        created = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if created:  # a run that fails before writing anything leaves no directory behind
            self._held.callback(self._remove_if_empty)
        self._held.enter_context(exclusive(self.run_dir, LOCK, "training"))
        check_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        for folder in (self.run_dir, self.run_dir / CKPT_DIR):
            remove_stale_temps(folder)  # a killed process's half-written files; no live writer: we hold the lock

    def _remove_if_empty(self) -> None:
        if self.run_dir.is_dir() and all(p.name == LOCK for p in self.run_dir.iterdir()):
            (self.run_dir / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()

    def _release(self) -> None:
        self._held.close()

    def _init(self, recipe: Recipe, resume: bool, overwrite: bool) -> None:
        self._lock(resume, overwrite)  # before any work; files come last
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults on every step's activations (swinrmt.runtime)
        if recipe.cpu_threads and self.device.type == "cpu":
            torch.set_num_threads(recipe.cpu_threads)  # train() restores the caller's setting
        self.cuda_saved = cuda_settings.apply(recipe.cuda, self.device)  # TF32, determinism; train() restores
        self.recipe = self._setup_data(recipe)
        self._setup_model()
        # Position and running sums; a resume overwrites them.
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, correct, seen (this rank)
        # Pre-clip gradient norms since the last step record: sum, max, clipped steps, steps (kept on the device,
        # read only when a record is written, so no step waits on a host sync).
        self.grad_stats = torch.zeros(4, dtype=torch.float64, device=self.device)
        # First step whose loss was not finite (-1: none yet), kept on the device: checking costs no host sync.
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self.best = {"top1": -1.0, "epoch": -1}
        self._probe: torch.Tensor | None = None  # the attention-health probe images (rank 0, built at first use)
        self.last_eval: dict[str, Any] = {}  # test_* metrics of the last evaluated epoch
        self._final_eval: dict[str, Any] | None = None  # its full report (per-class, confusion, ...) for eval.json
        self.epoch_time = 0.0
        if resume:
            self._resume()
        r = self.recipe
        self.train_module: nn.Module = self.model
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.model, device_ids=ids)
        if r.model.compile:
            self.train_module = torch.compile(self.train_module)
        init_run_dir(self.run_dir, fresh=not resume, is_main=self.main)
        if self.main:
            write_text(self.run_dir / CONFIG, r.to_yaml())
            self.logger = JsonlLogger(self.run_dir / METRICS)

    def _setup_data(self, r: Recipe) -> Recipe:
        """Datasets, loaders and mixup; returns the recipe resolved with the dataset's img_size and class count."""
        world, d = self.dist.world_size, r.data
        mean, std = model_norm_stats(r.model.name)  # also validates the model name before any data loading
        common = dict(root=d.root, on_corrupt=d.on_corrupt, seed=d.split_seed, img_size=r.img_size,
                      num_classes=r.model.num_classes, verify=d.verify, show_warnings=self.main,
                      decode_cache=d.decode_cache)
        train_ds = load_split(d.name, d.train_split, limit=d.limit_train, **common)
        self.num_classes = r.model.num_classes or train_ds.num_classes
        common["num_classes"] = self.num_classes
        test_ds = load_split(d.name, d.test_split, limit=d.limit_test, **common)
        self.class_names = [str(c) for c in test_ds.classes][: self.num_classes]
        img_size = r.img_size or getattr(train_ds, "default_img_size", None)
        if img_size is None:
            raise ValueError(f"dataset {d.name!r} has no native image size; set img_size in the recipe")
        r = r.with_overrides([f"img_size={img_size}", f"model.num_classes={self.num_classes}"])

        self.steps_per_epoch = len(train_ds) // (r.batch_size * world)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set ({len(train_ds)} images) is smaller than one global batch "
                             f"({r.batch_size} x {world} processes); lower batch_size")
        self.train_samples, self.train_sampler, self.train_loader = self._make_loader(
            train_ds, img_size=img_size, train=True, mean=mean, std=std, aug=d.aug, seed=r.seed,
            batch_size=r.batch_size, num_workers=d.num_workers, dist_info=self.dist)
        _, _, self.test_loader = self._make_loader(
            test_ds, img_size=img_size, train=False, mean=mean, std=std, aug=d.aug, seed=r.seed,
            batch_size=d.eval_batch_size or 2 * r.batch_size, num_workers=d.num_workers, dist_info=self.dist)
        self.mixup = None
        if r.mixup.enabled:
            from ..data import MixupCutmix

            m = r.mixup
            self.mixup = MixupCutmix(self.num_classes, mixup_alpha=m.mixup_alpha, cutmix_alpha=m.cutmix_alpha,
                                     prob=m.prob, switch_prob=m.switch_prob, label_smoothing=r.label_smoothing)
        return r

    def _setup_model(self) -> None:
        """Seeded model (+ grad checkpointing, SyncBN on GPU), EMA, optimizer and schedule."""
        r = self.recipe
        self.spec = model_spec(r)
        self.model = build_model(self.spec, r.model.drop_path_rate, r.seed)
        if r.model.grad_checkpointing:
            if not hasattr(self.model, "set_grad_checkpointing"):
                raise ValueError(f"model {r.model.name!r} does not support grad_checkpointing")
            self.model.set_grad_checkpointing(True)
        self.model.to(self.device)
        if self.dist.world_size > 1 and r.model.sync_bn:
            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            elif self.main and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()):
                warn("SyncBatchNorm needs a GPU; on CPU each process normalises with its own batch statistics")
        self.ema = ModelEma(self.model, r.ema.decay, r.ema.warmup) if r.ema.enabled else None
        self.optimizer = build_optimizer(self.model, r.optim)
        self.scheduler = Scheduler(self.optimizer, r.sched, r.optim.lr, r.epochs, self.steps_per_epoch)

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"model": self.spec, "recipe": self.recipe.to_dict(), "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "global_batch": self.recipe.batch_size * self.dist.world_size,
                "step": self.step, "scheduler": self.scheduler.state_dict(),
                "ema_updates": self.ema.num_updates if self.ema else None, "best": self.best,
                "last_eval": self.last_eval, "epoch_time": self.epoch_time,
                "sums": self._global_sums(), "metrics_bytes": self.logger.sync() if self.main else 0,
                "class_names": self.class_names, "time": time.time()}

    def _global_sums(self) -> list[float]:
        # Running sums of all ranks. A resumed run restores them on rank 0 only (others restart from zero), so every
        # later all_reduce still yields the uninterrupted totals whatever the world size.
        s = self.sums.clone()
        distributed.all_reduce_sum_(s)
        return s.tolist()

    def _save(self, names: Sequence[str]) -> None:
        self._check_finite(weights=True)  # never a checkpoint of a diverged run
        meta = self._meta()  # collectives inside: every rank calls _save, rank 0 writes
        if self.main:
            for name in names:
                save_checkpoint(self.run_dir / CKPT_DIR / f"{name}.safetensors", model=self.model.state_dict(),
                                ema=self.ema.module.state_dict() if self.ema else None,
                                optimizer=self.optimizer.state_dict(), meta=meta)
        distributed.barrier()

    def _resume(self) -> None:
        path = self.run_dir / CKPT_DIR / "last.safetensors"
        ckpt = load_checkpoint(path, verify=True)
        m = ckpt.meta
        check_same_model(m["model"], self.spec, path)
        self._check_same_protocol(m, path)
        load_weights(self.model, ckpt.tensors("model"), m["model"], self.spec, path)
        if self.ema is not None:
            if ckpt.has("ema"):
                load_weights(self.ema.module, ckpt.tensors("ema"), m["model"], self.spec, path)
                self.ema.num_updates = int(m["ema_updates"] or 0)
            else:
                self.ema.module.load_state_dict(self.model.state_dict())  # EMA switched on at resume: start here
        self.optimizer.load_state_dict(ckpt.optimizer_state())
        self.scheduler.load_state_dict(m["scheduler"])
        ckpt.restore_rng()
        samples_done = m["batch_in_epoch"] * m["global_batch"]
        global_batch = self.recipe.batch_size * self.dist.world_size
        if samples_done % global_batch:
            raise ValueError(f"cannot resume mid-epoch at sample {samples_done} with a global batch of "
                             f"{global_batch}; resume with the original batch_size x world size ({m['global_batch']})")
        self.epoch, self.batch_in_epoch, self.step = m["epoch"], samples_done // global_batch, m["step"]
        if self.main:
            self.sums = torch.tensor(m["sums"], dtype=torch.float64, device=self.device)
        self.best, self.last_eval, self.epoch_time = m["best"], m["last_eval"], m["epoch_time"]
        if self.main:
            dropped = truncate_jsonl(self.run_dir / METRICS, m["metrics_bytes"])
            print(f"resuming {self.run_dir} at epoch {self.epoch + 1}, batch {self.batch_in_epoch}/"
                  f"{self.steps_per_epoch} (step {self.step}); dropped {dropped} metric line(s) written after the "
                  "checkpoint", file=sys.stderr, flush=True)

    def _check_same_protocol(self, m: dict[str, Any], path: Path) -> None:
        """A resume continues the run it resumes: a recipe change beyond RESUMABLE_KEYS (batch size, learning rate,
        epochs, ...) would leave a record (config.yaml, the checkpoint) that no longer says how the run trained."""
        saved, now = _flat(m.get("recipe", {})), _flat(self.recipe.to_dict())
        changed = [k for k in now if k in saved and saved[k] != now[k] and k not in RESUMABLE_KEYS]
        if changed == ["batch_size"] and self.recipe.batch_size * self.dist.world_size == m.get("global_batch"):
            return  # another world size with the same global batch: the same protocol
        if changed:
            k = changed[0]
            raise ValueError(f"cannot resume {self.run_dir} with {k}={now[k]!r}: the run trained with {k}="
                             f"{saved[k]!r} ({len(changed)} key(s) changed), and a resume continues the same "
                             f"protocol; only {', '.join(RESUMABLE_KEYS)} may change. Start a new run (--out) instead")

    def _check_finite(self, weights: bool = False) -> None:
        """Raise DivergedError if a loss so far (or, with `weights`, a weight) is not finite; every rank agrees.
        One host sync: called at log records and before checkpoints only."""
        flags = [(self.first_bad_step >= 0).double(), self.first_bad_step.clamp(min=0).double()]
        if weights:
            params = list(self.model.parameters()) + (list(self.ema.module.parameters()) if self.ema else [])
            flags.append((~torch.stack([torch.isfinite(p).all() for p in params]).all()).double())
        vals = torch.stack(flags)
        distributed.all_reduce_sum_(vals)
        v = vals.tolist()
        if v[0] > 0:
            step = int(v[1] / v[0])
            epoch = (step - 1) // self.steps_per_epoch + 1
            raise DivergedError(f"training diverged: the loss is not finite at step {step} (epoch {epoch}); stopped "
                                "without writing a checkpoint (lower optim.lr or set optim.clip_grad_norm)")
        if weights and v[2] > 0:
            raise DivergedError(f"training diverged: the weights are not finite at step {self.step}; stopped without "
                                "writing a checkpoint (lower optim.lr or set optim.clip_grad_norm)")

    # -- steps ---------------------------------------------------------------------------------------------------
    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._device_step(x, y, self._host_step(x, y))

    def _host_step(self, x: torch.Tensor, y: torch.Tensor) -> Any:
        """The step's host-side part: the label check of a batch still on the host (a device-resident split was
        checked whole at load time) and this step's mixup draws (a CPU generator); returns the mixup plan or None."""
        r = self.recipe
        if y.device.type == "cpu":
            check_labels(y, self.num_classes)
        torch.manual_seed(mix_seed(r.seed, DROPOUT_STREAM, self.dist.rank, self.step))  # dropout / drop-path stream
        if self.mixup is None:
            return None
        g = torch.Generator().manual_seed(mix_seed(r.seed, MIXUP_STREAM, self.epoch, self.step, self.dist.rank))
        return self.mixup.plan(g, tuple(x.shape[-2:]))

    def _device_step(self, x: torch.Tensor, y: torch.Tensor, mix_plan: Any) -> torch.Tensor:
        """The rest of the step, free of host syncs (tests/train/test_host_syncs.py): the batch moves to the device
        (from pinned memory, asynchronously) and mixup / cutmix run there."""
        r = self.recipe
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        target: torch.Tensor = y
        if self.mixup is not None:
            x, target = self.mixup.apply(x, y, mix_plan)
        with autocast(self.device, r.precision):
            logits = self.train_module(x)
        logits = logits.float()
        if target.ndim == 2:
            loss = torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(logits, target, label_smoothing=r.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_and_track_grad_norm(r.optim.clip_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        loss = loss.detach()
        bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(bad, self.step, self.first_bad_step)  # on the device: no host sync
        n = y.shape[0]  # a host int: counting images on the host is no sync, copying the count to the device is
        self.sums += torch.stack([loss.double() * n, (logits.argmax(1) == y).sum().double(),
                                  torch.full((), float(n), dtype=torch.float64, device=self.device)])
        return loss

    def _clip_and_track_grad_norm(self, clip: float | None) -> None:
        """Clip (if the recipe asks) and keep the pre-clip total norm: a run that trains worse than its peers at the
        peak learning rate shows it here first (norms that grow, most steps clipped). DDP has already averaged the
        gradients, so every rank sees the same norm."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if clip is not None:
            norm = nn.utils.clip_grad_norm_(params, clip).double()
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params]).double()
        clipped = (norm > clip).double() if clip is not None else torch.zeros_like(norm)
        s = self.grad_stats
        s.copy_(torch.stack([s[0] + norm, torch.maximum(s[1], norm), s[2] + clipped, s[3] + 1]))

    def _log_step(self, loss: torch.Tensor, bar: tqdm, images: int, seconds: float) -> None:
        self._check_finite()
        vals = torch.cat([loss.double().view(1), self.sums])
        distributed.all_reduce_sum_(vals)
        step_loss, loss_sum, correct, seen = vals.tolist()
        rec = {"kind": "step", "epoch": self.epoch, "step": self.step, "batch": self.batch_in_epoch,
               "steps_per_epoch": self.steps_per_epoch,
               "loss": step_loss / self.dist.world_size, "loss_avg": loss_sum / seen, "top1_avg": 100 * correct / seen,
               "lr": self.scheduler.lr_at(self.step - 1), "img_per_s": images / max(seconds, 1e-9),
               "data_wait": self.data_wait / max(seconds, 1e-9)}  # share of the interval spent waiting on data
        gn_sum, gn_max, clipped, n = self.grad_stats.tolist()
        self.grad_stats.zero_()
        if n:  # mean and max pre-clip gradient norm over the interval, and the share of its steps clipped
            rec.update(grad_norm=gn_sum / n, grad_norm_max=gn_max)
            if self.recipe.optim.clip_grad_norm is not None:
                rec["clipped"] = clipped / n
        if self.main:
            rec.update(self._attention_health())
            self.logger.log(rec)
            bar.set_postfix(loss=f"{rec['loss_avg']:.4f}", acc=f"{rec['top1_avg']:.1f}%",
                            img_s=f"{rec['img_per_s']:.0f}", lr=f"{rec['lr']:.2e}", refresh=False)

    def _attention_health(self) -> dict[str, Any]:
        """Per-stage attention health (`models.health`) of the current weights on the first `health_images` test
        images: the same images at every record and across resumes, so a record differs only by what training did."""
        n = self.recipe.health_images
        if not n:
            return {}
        if self._probe is None:
            with torch.random.fork_rng(devices=[]):  # a loader with workers draws its base seed from the global RNG
                x, _, _ = next(iter(self.test_loader))
            self._probe = x[:n].to(self.device)
        return attention_health(self.model, self._probe)

    def _evaluate(self) -> dict[str, Any]:
        r, out = self.recipe, {}
        acc = run_evaluation(self.model, self.test_loader, self.num_classes, self.device, r.precision,
                             desc="test", progress=self.progress)
        s = acc.summary(self.class_names)
        out.update(test_top1=s["top1"], test_top5=s["top5"], test_loss=s["loss"], test_ece=s["ece"])
        final = s
        if self.ema is not None:
            ema_acc = run_evaluation(self.ema.module, self.test_loader, self.num_classes, self.device, r.precision,
                                     desc="test (EMA)", progress=self.progress)
            final = ema_acc.summary(self.class_names)
            out.update(test_ema_top1=final["top1"], test_ema_top5=final["top5"], test_ema_loss=final["loss"],
                       test_ema_ece=final["ece"])
        self._final_eval = {**final, "weights": "ema" if self.ema is not None else "model"}
        return out

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        try:
            return self._fit()
        finally:
            if self.main and hasattr(self, "logger"):
                self.logger.close()
            self._release()

    def _fit(self) -> dict[str, Any]:
        r, t_start = self.recipe, time.perf_counter()
        self.model.train()
        while self.epoch < r.epochs:
            self._train_epoch()
        if self._final_eval is not None and self.main:
            self._write_final_eval()
        result = {"run_dir": str(self.run_dir), "rank": self.dist.rank, "epochs": r.epochs, "steps": self.step,
                  "wall_s": time.perf_counter() - t_start, "best_top1": self.best["top1"],
                  "best_epoch": self.best["epoch"] + 1, "threads": torch.get_num_threads(),
                  "train_images": self.step * r.batch_size * self.dist.world_size, **self.last_eval}
        return result

    def _train_epoch(self) -> None:
        r, world = self.recipe, self.dist.world_size
        self.train_samples.set_epoch(self.epoch)
        self.train_sampler.set_epoch(self.epoch)
        self.train_sampler.set_start(self.batch_in_epoch * r.batch_size)
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}/{r.epochs}",
                   disable=not self.progress, dynamic_ncols=True, leave=False)
        t0 = t_log = time.perf_counter()
        images, self.data_wait = 0, 0.0
        batches = iter(self.train_loader)
        while self.batch_in_epoch < self.steps_per_epoch:
            t_data = time.perf_counter()
            x, y, _ = next(batches)
            self.data_wait += time.perf_counter() - t_data
            loss = self._train_step(x, y)
            self.batch_in_epoch += 1
            images += y.numel() * world
            bar.update(1)
            last_batch = self.batch_in_epoch == self.steps_per_epoch
            if self.step % r.log_every_steps == 0 or last_batch:
                now = time.perf_counter()
                self._log_step(loss, bar, images, now - t_log)
                t_log, images, self.data_wait = now, 0, 0.0
            if r.ckpt_every_steps and self.step % r.ckpt_every_steps == 0 and not last_batch:
                self.epoch_time += time.perf_counter() - t0
                t0 = time.perf_counter()
                self._save(["last"])
            if self.step_callback is not None:
                self.step_callback(self)
        bar.close()
        self.epoch_time += time.perf_counter() - t0
        self._end_epoch()

    def _end_epoch(self) -> None:
        r = self.recipe
        self._check_finite()
        loss_sum, correct, seen = self._global_sums()
        rec: dict[str, Any] = {"kind": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": loss_sum / seen,
                               "train_top1": 100 * correct / seen, "lr": self.scheduler.lr,
                               "epoch_time_s": self.epoch_time, "img_per_s": seen / max(self.epoch_time, 1e-9)}
        improved = False
        if (self.epoch + 1) % r.eval_every_epochs == 0 or self.epoch + 1 == r.epochs:
            rec.update(self._evaluate())
            self.last_eval = {k: v for k, v in rec.items() if k.startswith("test_")}
            score = rec.get("test_ema_top1", rec["test_top1"])
            improved = score > self.best["top1"]
            if improved:
                self.best = {"top1": score, "epoch": self.epoch}
        rec["best_top1"] = self.best["top1"]
        if self.main:
            self.logger.log(rec)
            msg = (f"epoch {self.epoch + 1}/{r.epochs}: train loss {rec['train_loss']:.4f}, "
                   f"top-1 {rec['train_top1']:.1f}%")
            if "test_top1" in rec:
                msg += f" | test top-1 {rec['test_top1']:.2f}%, top-5 {rec['test_top5']:.2f}%"
                if "test_ema_top1" in rec:
                    msg += f", EMA top-1 {rec['test_ema_top1']:.2f}%"
            tqdm.write(msg + f" | {rec['img_per_s']:.0f} img/s")
        self.epoch, self.batch_in_epoch, self.epoch_time = self.epoch + 1, 0, 0.0
        self.sums.zero_()
        self._save(["last", "best"] if improved else ["last"])
        if self.main:
            plot_curves(read_jsonl(self.run_dir / METRICS), self.run_dir / CURVES)

    def _write_final_eval(self) -> None:
        ev = {**self._final_eval, "checkpoint": str(self.run_dir / CKPT_DIR / "last.safetensors"),
              "data": self.recipe.data.name, "split": self.recipe.data.test_split}
        write_json(self.run_dir / EVAL_JSON, ev)
        plot_confusion(ev["confusion_matrix"], ev["class_names"], self.run_dir / CONFUSION_PNG)


def train(recipe: Recipe | None, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          device: str = "auto", progress: bool = True,
          loader_factory: Callable[..., tuple[Any, Any, Any]] | None = None,
          step_callback: Callable[[Trainer], None] | None = None) -> dict[str, Any]:
    """Train `recipe` into `out_dir` (or, with `resume=True`, continue the run there; `recipe=None` reuses its
    config.yaml). Returns the final metrics: test_top1/top5/loss/ece of the last epoch, best_top1, wall_s, ...
    `loader_factory` and `step_callback`: the opt-in hooks of `Trainer`."""
    out_dir = Path(out_dir)
    if recipe is None:
        if not resume:
            raise ValueError("train(recipe=None) is only meaningful with resume=True")
        recipe = load_run_recipe(out_dir)
    owns_group, threads, cuda_saved = not distributed.is_initialized(), torch.get_num_threads(), cuda_settings.state()
    try:
        return Trainer(recipe, out_dir, resume=resume, overwrite=overwrite, device=device, progress=progress,
                       loader_factory=loader_factory, step_callback=step_callback).fit()
    finally:
        torch.set_num_threads(threads)
        cuda_settings.restore(cuda_saved)
        if owns_group:
            distributed.cleanup()


def load_run_recipe(run_dir: str | Path) -> Recipe:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no {CONFIG})")
    return Recipe.from_dict(yaml.safe_load(path.read_text()) or {})


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "overrides" and k != "aug":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out

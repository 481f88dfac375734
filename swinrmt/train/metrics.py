"""Evaluation metrics, the metrics.jsonl log, and the PNG plots.

Everything `EvalAccumulator` holds is a sum (counts, a confusion matrix, per-bin sums), so a distributed evaluation is
one all_reduce away from the single-process answer, with no per-sample gathering.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..atomic import save_figure

ECE_BINS = 15


def ece_bin_index(confidence: torch.Tensor, n_bins: int = ECE_BINS) -> torch.Tensor:
    """Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 lands in bin 0."""
    inner = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=confidence.device)[1:-1]
    return torch.bucketize(confidence.double(), inner, right=False)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE = sum_b |acc_b - conf_b| * n_b / N over equal-width bins of the max probability (Guo et al., 2017)."""
    acc = EvalAccumulator(probs.shape[1], n_bins)
    acc.update_probs(probs, targets)
    return acc.ece()


class EvalAccumulator:
    """Accumulates confusion matrix, top-5 hits, summed loss and calibration bins over batches."""

    def __init__(self, num_classes: int, n_bins: int = ECE_BINS, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.n_bins = num_classes, n_bins
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # [true, pred]
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.bin_count = torch.zeros(n_bins, dtype=torch.int64, device=device)
        self.bin_conf = torch.zeros(n_bins, dtype=torch.float64, device=device)
        self.bin_correct = torch.zeros(n_bins, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
        self.update_probs(logits.softmax(dim=1), targets)

    @torch.no_grad()
    def update_probs(self, probs: torch.Tensor, targets: torch.Tensor) -> None:
        conf, pred = probs.max(dim=1)
        k = min(5, self.num_classes)
        self.top5 += (probs.topk(k, dim=1).indices == targets[:, None]).any(dim=1).sum()
        flat = targets * self.num_classes + pred
        self.confusion += torch.bincount(flat, minlength=self.num_classes ** 2).view(self.num_classes, -1)
        b = ece_bin_index(conf, self.n_bins)
        self.bin_count += torch.bincount(b, minlength=self.n_bins)
        self.bin_conf += torch.zeros_like(self.bin_conf).index_add_(0, b, conf.double())
        self.bin_correct += torch.bincount(b[pred == targets], minlength=self.n_bins)

    def tensors(self) -> list[torch.Tensor]:
        """The state, for an in-place all_reduce(SUM) across ranks."""
        return [self.confusion, self.top5, self.loss_sum, self.bin_count, self.bin_conf, self.bin_correct]

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def ece(self) -> float:
        n = max(1, self.count)
        return float((self.bin_correct.double() - self.bin_conf).abs().sum() / n)

    def summary(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """Top-1/top-5 (percent), loss, ECE, per-class accuracy, confusion matrix and the reliability table."""
        n = max(1, self.count)
        cm = self.confusion.cpu()
        support = cm.sum(dim=1)
        per_class = (cm.diag().double() / support.clamp(min=1).double() * 100).tolist()
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        counts = self.bin_count.cpu()
        return {
            "num_samples": self.count,
            "top1": float(cm.diag().sum()) / n * 100,
            "top5": float(self.top5) / n * 100,
            "loss": float(self.loss_sum) / n,
            "ece": self.ece(),
            "per_class_accuracy": {
                name: (acc if int(s) > 0 else None) for name, acc, s in zip(names, per_class, support)
            },
            "confusion_matrix": cm.tolist(),
            "class_names": names,
            "calibration_bins": {
                "count": counts.tolist(),
                "mean_confidence": (self.bin_conf.cpu() / counts.clamp(min=1)).tolist(),
                "accuracy": (self.bin_correct.cpu().double() / counts.clamp(min=1)).tolist(),
            },
        }


class JsonlLogger:
    """Appends one JSON object per line; `sync()` makes everything written so far durable and returns its size."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = open(self.path, "a", encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def sync(self) -> int:
        self._f.flush()
        os.fsync(self._f.fileno())
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_jsonl(path: str | Path, size: int) -> int:
    """Cut the log back to `size` bytes (the size recorded with a checkpoint); returns how many lines were dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        tail = f.read()[size:]
        f.truncate(size)
    return tail.count(b"\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


HEALTH_PANELS = (("attn_entropy", "normalised row entropy", "Attention entropy (1 = uniform)", "linear"),
                 ("attn_logit_max", "max |q.k| / sqrt(d)", "Largest content logit", "log"),
                 ("gate_mean", "mean G1 gate", "Output gate (dotted: share < 0.1)", "linear"))


def plot_curves(records: list[dict[str, Any]], path: str | Path) -> None:
    """Training loss per step, train/test accuracy per epoch and, where logged, the pre-clip gradient norm and the
    attention health per stage (a second row: entropy, largest content logit, G1 gate)."""
    plt = _pyplot()
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    grads = [r for r in steps if "grad_norm" in r]  # runs from before grad-norm logging have none
    health = [r for r in steps if "attn_entropy" in r]
    panels = [p for p in HEALTH_PANELS if any(v is not None for r in health for v in r.get(p[0], []))]
    cols = 3 if grads or panels else 2
    fig, axes = plt.subplots(2 if panels else 1, cols, figsize=(5 * cols, 7.6 if panels else 3.8), squeeze=False)
    ax1, ax2 = axes[0, :2]
    if steps:
        ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, label="step loss")
        ax1.plot([r["step"] for r in steps], [r["loss_avg"] for r in steps], lw=1.2, label="epoch running mean")
    ax1.set(xlabel="optimizer step", ylabel="training loss", title="Loss")
    ax1.legend(loc="upper right")
    if epochs:
        ep = [r["epoch"] + 1 for r in epochs]
        ax2.plot(ep, [r["train_top1"] for r in epochs], "o-", label="train top-1")
        evald = [r for r in epochs if "test_top1" in r]
        ax2.plot([r["epoch"] + 1 for r in evald], [r["test_top1"] for r in evald], "s-", label="test top-1")
        if any("test_ema_top1" in r for r in evald):
            ema = [r for r in evald if "test_ema_top1" in r]
            ax2.plot([r["epoch"] + 1 for r in ema], [r["test_ema_top1"] for r in ema], "^-", label="test top-1 (EMA)")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax2.legend(loc="lower right")
    if grads:
        ax3 = axes[0, 2]
        ax3.plot([r["step"] for r in grads], [r["grad_norm"] for r in grads], lw=1.0, label="mean")
        ax3.plot([r["step"] for r in grads], [r["grad_norm_max"] for r in grads], lw=0.8, label="max")
        ax3.set(xlabel="optimizer step", ylabel="pre-clip gradient norm", title="Gradient norm", yscale="log")
        ax3.legend(loc="upper right")
    elif cols == 3:
        axes[0, 2].axis("off")
    for j, (key, ylabel, title, scale) in enumerate(panels):
        ax = axes[1, j]
        for i in range(max(len(r[key]) for r in health)):
            pts = [(r["step"], r[key][i]) for r in health if i < len(r[key]) and r[key][i] is not None]
            if pts:
                ax.plot(*zip(*pts), lw=1.0, color=f"C{i}", label=f"stage {i + 1}")
            low = [(r["step"], r["gate_low"][i]) for r in health
                   if key == "gate_mean" and i < len(r.get("gate_low", [])) and r["gate_low"][i] is not None]
            if low:
                ax.plot(*zip(*low), lw=0.8, ls=":", color=f"C{i}")
        ax.set(xlabel="optimizer step", ylabel=ylabel, title=title, yscale=scale)
        ax.legend(loc="best", fontsize=7)
    for j in range(len(panels), cols if panels else 0):
        axes[1, j].axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path) -> None:
    """Row-normalised confusion matrix (rows: true class)."""
    plt = _pyplot()
    cm = torch.tensor(confusion, dtype=torch.float64)
    norm = cm / cm.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = min(16, 3 + 0.35 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)

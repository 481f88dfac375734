"""Batch-level mixup / cutmix with soft, label-smoothed targets (timm semantics, explicit randomness).

Each call draws from the passed ``torch.Generator`` only (the trainer seeds it from (seed, epoch, step)), so a resumed
run mixes exactly like an uninterrupted one. Sample ``b`` is mixed with sample ``B - 1 - b`` (the batch reversed), as
in timm's batch mode. Beta(alpha, alpha) has no generator-aware torch sampler, so one 63-bit integer drawn from the
generator seeds a local ``numpy.random.Generator`` for it; no global RNG is touched.

Targets: ``smooth(y) = (1 - eps) * onehot(y) + eps / K``; mixed targets are
``lam * smooth(y) + (1 - lam) * smooth(y[::-1])``. For cutmix, ``lam`` is corrected to the exact pasted-area fraction
after the box is clipped to the image.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["MixupCutmix", "smooth_one_hot"]


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot float targets with label smoothing: ``1 - eps + eps/K`` on the label, ``eps/K`` elsewhere."""
    off = smoothing / num_classes
    out = torch.full((y.shape[0], num_classes), off, dtype=torch.float32, device=y.device)
    return out.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)


class MixupCutmix:
    """Mixup (``mixup_alpha > 0``) and/or CutMix (``cutmix_alpha > 0``) applied to a whole batch with probability
    ``prob``; with both, CutMix is chosen with probability ``switch_prob``. With both alphas 0 the batch is returned
    unchanged with smoothed one-hot targets."""

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.0,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        for name, v in (("prob", prob), ("switch_prob", switch_prob)):
            if not 0 <= v <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = int(num_classes)
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def _params(self, g: torch.Generator) -> tuple[float, bool]:
        """Return (lam, use_cutmix); lam = 1 means no mixing. Always consumes the same number of draws."""
        apply, switch = torch.rand(2, generator=g).tolist()
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=g))
        if not self.active or apply >= self.prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            cutmix = switch < self.switch_prob
        else:
            cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if cutmix else self.mixup_alpha
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        return lam, cutmix

    @staticmethod
    def _box(h: int, w: int, lam: float, g: torch.Generator) -> tuple[int, int, int, int]:
        ratio = math.sqrt(1.0 - lam)
        ch, cw = int(h * ratio), int(w * ratio)
        cy, cx = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        return y0, y1, x0, x1

    def plan(self, generator: torch.Generator, size: tuple[int, int]) -> tuple[float, tuple[int, int, int, int] | None]:
        """This batch's draws, on the host: (lam, cutmix box (y0, y1, x0, x1) or None) for (H, W) images. Draws
        from `generator` (a CPU generator) only, the same draws in the same order as `__call__`; nothing here reads a
        tensor that lives on an accelerator, so `apply` can then mix a batch already on the device without a sync."""
        lam, cutmix = self._params(generator)
        if lam >= 1.0 or not cutmix:
            return lam, None
        h, w = size
        y0, y1, x0, x1 = self._box(h, w, lam, generator)
        return 1.0 - (y1 - y0) * (x1 - x0) / float(h * w), (y0, y1, x0, x1)

    def apply(self, x: torch.Tensor, y: torch.Tensor, plan: tuple[float, tuple[int, int, int, int] | None]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix `x` and make the soft targets of labels `y` as `plan` says, on x's device. Only tensor ops with host
        scalars: no host sync (labels are not range-checked here; `__call__` and the trainer check them on the host,
        and a split on the device was checked whole when it was loaded)."""
        target = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        lam, box = plan
        if lam >= 1.0:
            return x, target
        if box is not None:
            y0, y1, x0, x1 = box
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
        else:
            x = x * lam + x.flip(0) * (1.0 - lam)
        return x, target * lam + target.flip(0) * (1.0 - lam)

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, C, H, W) float, ``y``: (B,) int labels -> (mixed x (a new tensor), (B, K) float targets)."""
        self.check(x, y)
        return self.apply(x, y, self.plan(generator, tuple(x.shape[-2:])))

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Shapes, and labels in range (reads y: on the host, before a batch moves to the device)."""
        if x.ndim != 4 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"expected x (B, C, H, W) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            bad = int(y[(y < 0) | (y >= self.num_classes)][0])
            raise ValueError(f"label {bad} out of range [0, {self.num_classes})")

    def __repr__(self) -> str:
        return (
            f"MixupCutmix(num_classes={self.num_classes}, mixup_alpha={self.mixup_alpha}, "
            f"cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, switch_prob={self.switch_prob}, "
            f"label_smoothing={self.label_smoothing})"
        )

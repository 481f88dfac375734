"""Device-resident data: a split decoded once into one uint8 tensor on the training device, and batched, seeded
augmentation that runs there, so that no CPU decode or per-sample transform limits a GPU step.

Why: a GPU trains a tiny model at 64 px on thousands of images a second, while the CPU pipeline
(`swinrmt.data.transforms`: a PIL crop and RandAugment per sample) costs about a millisecond an image per core.
Tiny-ImageNet-100's training split is 50 000 x 64 x 64 x 3 bytes = 614 MB: it fits beside the model on any GPU.

    factory = DeviceData()                               # the Trainer's `loader_factory` (make_loader's signature)
    trainer = Trainer(recipe, run_dir, loader_factory=factory)

Per training batch, all on the device: gather the uint8 images -> random resized crop and horizontal flip (one
bilinear `grid_sample`; crop 'pad' and 'none' as in the CPU pipeline) -> RandAugment -> normalise -> random erasing.
Evaluation: resize the shorter side to floor(img_size / crop_pct) and center-crop (identity for Tiny-ImageNet at 64
px) -> normalise. Mixup / CutMix stay the trainer's (`MixupCutmix` is batch-level and runs on device tensors).

Randomness: every parameter is drawn for the whole batch at once from one generator on the device, seeded with
(seed, epoch, rank, batch position in the epoch). So the augmentation is seed-reproducible on a device and a resumed
run sees the very batches an uninterrupted one does (same position, same draws); the data order is the CPU path's
(`ResumableSampler`). It is not the CPU pipeline's stream: that one is keyed per sample, and CPU and CUDA generators
differ, so the CPU and CUDA device pipelines differ from each other too.

Where it departs from the CPU pipeline, on purpose or by necessity:
- resampling is `grid_sample` with PIL's pixel-centre convention and border clamping; PIL's antialiasing on
  downscaling is not reproduced (no crop is downscaled when the images are img_size square, as in Tiny-ImageNet);
  `bicubic` is grid_sample's (a = -0.75), PIL's is a = -0.5;
- the geometric RandAugment ops are this module's warp (the CPU path's kornia `warp_affine` semantics: align_corners,
  grey 0.5 fill), Equalize and Sharpness are kornia's batched ops, which the CPU pipeline also calls;
- RandAugment's magnitude noise (mstd) and every other draw are per sample, as in the CPU pipeline.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .sampling import EvalShardSampler, ResumableSampler, mix_seed
from .transforms import RANDAUGMENT_OPS, _resolve_aug, parse_randaugment

__all__ = ["AUG_STREAM", "DeviceAugment", "DeviceData", "DeviceDataset", "DeviceLoader", "host_arrays"]

#: `mix_seed(seed, AUG_STREAM, epoch, rank, batch)` keys a batch's augmentation (the trainer's streams are 1-3).
AUG_STREAM = 4

_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


# -- the dataset on the device -----------------------------------------------------------------------------------------
def host_arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W, 3), int64 labels (N,)) of `ds`, row i = `ds[i]` (the image before any transform).

    Fast path: a decoded array dataset (`ArrayDataset`, e.g. from the decode-once cache), optionally under a seeded
    subset (`Limited`), is sliced directly; anything else is read item by item (PIL RGB images of one size).
    """
    base, pos = ds, None
    if hasattr(ds, "indices") and hasattr(ds, "dataset"):  # train.builders.Limited: positions into the inner dataset
        base, pos = ds.dataset, np.asarray(ds.indices, dtype=np.int64)
    images = getattr(base, "images", None)
    if (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3
            and getattr(base, "resize_to", None) in (None, images.shape[1]) and images.shape[1] == images.shape[2]
            and hasattr(base, "_index") and hasattr(base, "_targets")):
        rows = base._index if pos is None else base._index[pos]
        return np.ascontiguousarray(images[rows]), np.asarray(base._targets[rows], dtype=np.int64)
    n = len(ds)
    if n == 0:
        raise ValueError("cannot put an empty dataset on the device")
    first = np.asarray(ds[0][0], dtype=np.uint8)
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3), got an image of shape {first.shape}")
    out = np.empty((n, *first.shape), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        img, label = ds[i]
        arr = np.asarray(img, dtype=np.uint8)
        if arr.shape != first.shape:
            raise ValueError(f"device-resident data needs images of one size: image {i} is {arr.shape[:2]}, "
                             f"image 0 is {first.shape[:2]} (resize the dataset, or use the CPU loaders)")
        out[i], labels[i] = arr, int(label)
    return out, labels


@dataclass
class DeviceDataset:
    """One split on the device: `images` uint8 (N, H, W, 3), `labels` int64 (N,), both resident for the whole run."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")

    @classmethod
    def from_dataset(cls, ds: Any, device: torch.device | str) -> "DeviceDataset":
        """Decode `ds` once (see `host_arrays`) and copy it to `device`."""
        images, labels = host_arrays(ds)
        return cls(torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device),
                   classes=[str(c) for c in getattr(ds, "classes", [])], name=str(getattr(ds, "name", "")),
                   split=str(getattr(ds, "split", "")))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def nbytes(self) -> int:
        return self.images.numel() + 8 * self.labels.numel()


# -- batched augmentation ----------------------------------------------------------------------------------------------
def _col(v: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast a per-sample value over an image batch."""
    return v.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: factor 0 -> degenerate, 1 -> x, > 1 extrapolates; clipped to [0, 1]."""
    return (degenerate + _col(factor) * (x - degenerate)).clamp_(0.0, 1.0)


def _rect_mask(h: int, w: int, top: torch.Tensor, left: torch.Tensor, eh: torch.Tensor, ew: torch.Tensor
               ) -> torch.Tensor:
    """(B, 1, h, w) bool: True inside each sample's rectangle [top, top + eh) x [left, left + ew)."""
    ys = torch.arange(h, device=top.device).view(1, h, 1)
    xs = torch.arange(w, device=top.device).view(1, 1, w)
    t, l_ = top.view(-1, 1, 1), left.view(-1, 1, 1)
    inside = (ys >= t) & (ys < t + eh.view(-1, 1, 1)) & (xs >= l_) & (xs < l_ + ew.view(-1, 1, 1))
    return inside.unsqueeze(1)


def _first_valid(valid: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per row, the values at the first True of `valid` (B, T), and whether there was one: the CPU's 10-try loop."""
    first = valid.to(torch.int8).argmax(dim=1, keepdim=True)  # argmax returns the first maximal index
    return (valid.any(dim=1), *(v.gather(1, first).squeeze(1) for v in values))


class DeviceAugment:
    """The train or eval pipeline on a uint8 batch (B, H, W, 3) -> float32 (B, 3, img_size, img_size), normalised.

    `aug` takes `swinrmt.data.transforms`' keys, validated by the same code; the module docstring lists where the
    result departs from the CPU pipeline.
    """

    def __init__(self, img_size: int, train: bool, *, mean: Sequence[float], std: Sequence[float],
                 aug: Mapping[str, Any] | None = None) -> None:
        if not isinstance(img_size, int) or img_size < 1:
            raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
        self.img_size, self.train = img_size, bool(train)
        self.cfg = _resolve_aug(aug)
        self.mode = _MODES[self.cfg["interpolation"]]
        self.mean = torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1)
        self.std = torch.tensor([float(v) for v in std]).view(1, 3, 1, 1)
        self.ra: dict[str, float] | None = None
        if self.train and self.cfg["randaugment"]:
            self.ra = parse_randaugment(self.cfg["randaugment"])
        self.op_names = list(RANDAUGMENT_OPS)
        self._signed = torch.tensor([RANDAUGMENT_OPS[k][1] for k in self.op_names])
        self._stats: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        if device not in self._stats:
            self._stats[device] = (self.mean.to(device), self.std.to(device), self._signed.to(device))
        return self._stats[device]

    # -- geometry --
    def _rrc_grid(self, b: int, h: int, w: int, flip: torch.Tensor, g: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
        """The sampling grid (B, S, S, 2) of a random resized crop (CPU semantics: area `scale`, log-uniform aspect
        `ratio`, 10 tries, then the largest centre crop in range), mirrored where `flip`."""
        s, area = self.img_size, float(h * w)
        (s0, s1), (r0, r1) = self.cfg["scale"], self.cfg["ratio"]
        u = torch.rand(b, 10, 2, generator=g, device=device, dtype=torch.float64)
        pos = torch.rand(b, 2, generator=g, device=device, dtype=torch.float64)
        target = area * (s0 + (s1 - s0) * u[..., 0])
        aspect = torch.exp(math.log(r0) + (math.log(r1) - math.log(r0)) * u[..., 1])
        cw, ch = torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()
        ok, cw, ch = _first_valid((cw > 0) & (cw <= w) & (ch > 0) & (ch <= h), cw, ch)
        in_ratio = w / h
        fw, fh = (w, round(w / r0)) if in_ratio < r0 else (round(h * r1), h) if in_ratio > r1 else (w, h)
        cw, ch = torch.where(ok, cw, float(fw)), torch.where(ok, ch, float(fh))
        top = torch.where(ok, torch.floor(pos[:, 0] * (h - ch + 1)), float((h - fh) // 2))
        left = torch.where(ok, torch.floor(pos[:, 1] * (w - cw + 1)), float((w - fw) // 2))
        j = torch.arange(s, device=device, dtype=torch.float64) + 0.5
        xs = (left[:, None] + j * cw[:, None] / s) * (2.0 / w) - 1.0  # align_corners=False normalisation
        ys = (top[:, None] + j * ch[:, None] / s) * (2.0 / h) - 1.0
        xs = torch.where(flip[:, None], xs.flip(1), xs)
        return torch.stack([xs[:, None, :].expand(b, s, s), ys[:, :, None].expand(b, s, s)], dim=-1).float()

    def _resize(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        kw: dict[str, Any] = {} if self.mode == "nearest" else {"align_corners": False, "antialias": True}
        return F.interpolate(x, size=size, mode=self.mode, **kw).clamp_(0.0, 1.0)

    def _eval_geometry(self, x: torch.Tensor) -> torch.Tensor:
        s = self.img_size
        scale = int(math.floor(s / self.cfg["crop_pct"]))
        h, w = x.shape[-2:]
        nw, nh = (scale, int(scale * h / w)) if w <= h else (int(scale * w / h), scale)
        x = self._resize(x, (nh, nw))
        left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
        return x[:, :, top: top + s, left: left + s]

    # -- RandAugment --
    def _warp(self, x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """Every sample's geometric op (identity for the others) as one affine warp about the centre, grey fill."""
        b, _, h, w = x.shape
        names, dev = self.op_names, x.device
        is_ = {k: (op == names.index(k)) for k in _GEOMETRIC}
        t = torch.deg2rad(30.0 * level * sign) * is_["Rotate"]
        sx, sy = 0.3 * level * sign * is_["ShearX"], 0.3 * level * sign * is_["ShearY"]
        cos, sin = torch.cos(t), torch.sin(t)
        # forward map input -> output, A = rotation @ shears (only one of them is not the identity per sample)
        a11, a12, a21, a22 = cos, -sin + sx, sin + sy, cos
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        tx = cx - (a11 * cx + a12 * cy) + 0.45 * level * sign * w * is_["TranslateX"]
        ty = cy - (a21 * cx + a22 * cy) + 0.45 * level * sign * h * is_["TranslateY"]
        det = a11 * a22 - a12 * a21
        i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
        u = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, w)
        v = torch.arange(h, device=dev, dtype=x.dtype).view(1, h, 1)
        du, dv = u - tx.view(-1, 1, 1), v - ty.view(-1, 1, 1)
        src_x = i11.view(-1, 1, 1) * du + i12.view(-1, 1, 1) * dv
        src_y = i21.view(-1, 1, 1) * du + i22.view(-1, 1, 1) * dv
        grid = torch.stack([src_x * (2.0 / max(w - 1, 1)) - 1.0, src_y * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
        return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=True) + 0.5

    def _randaugment_slot(self, x: torch.Tensor, op: torch.Tensor, apply: torch.Tensor, level: torch.Tensor,
                          sign: torch.Tensor) -> torch.Tensor:
        """One of RandAugment's N slots: each sample gets its own op (or none); all ops run on the whole batch and
        each sample keeps its own op's result, so there is no host sync."""
        from kornia.enhance import equalize, sharpness

        names = self.op_names
        sel = {k: _col(apply & (op == names.index(k))) for k in names}
        geo = _col(apply) & torch.stack([sel[k].view(-1) for k in _GEOMETRIC]).any(0).view(-1, 1, 1, 1)
        out = torch.where(geo, self._warp(x, op, level, sign), x)
        factor = 1.0 + 0.9 * level * sign
        gray = _gray(x)
        lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
        span = hi - lo
        bits = 8 - torch.floor(4 * level).to(torch.int32)
        mask = (256 - torch.pow(2, 8 - bits)).to(torch.int32)  # (0xFF << (8 - bits)) & 0xFF
        quant = ((x * 255.0).round().to(torch.int32) & _col(mask)).to(x.dtype) / 255.0
        pixel = {
            "AutoContrast": lambda: torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x),
            "Equalize": lambda: equalize(x),
            "Invert": lambda: 1.0 - x,
            "Posterize": lambda: torch.where(_col(bits >= 8), x, quant),
            "Solarize": lambda: torch.where(x >= _col(256.0 * (1.0 - level) / 255.0), 1.0 - x, x),
            "SolarizeAdd": lambda: torch.where(x < 128.0 / 255.0, (x + _col(110.0 * level / 255.0)).clamp(0, 1), x),
            "Color": lambda: _blend(gray.expand_as(x), x, factor),
            "Contrast": lambda: _blend(gray.mean(dim=(1, 2, 3), keepdim=True).expand_as(x), x, factor),
            "Brightness": lambda: _blend(torch.zeros_like(x), x, factor),
            "Sharpness": lambda: sharpness(x, factor).clamp(0.0, 1.0) if min(x.shape[-2:]) >= 3 else x,
        }
        for k, fn in pixel.items():
            out = torch.where(sel[k], fn(), out)
        return out

    def _randaugment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        ra, b, dev = self.ra, x.shape[0], x.device
        n = int(ra["n"])
        if n == 0:
            return x
        choice = torch.rand(b, n, generator=g, device=dev)
        draws = torch.rand(b, n, 2, generator=g, device=dev)
        noise = torch.randn(b, n, generator=g, device=dev)
        signed = self._on(dev)[2]
        for k in range(n):
            op = (choice[:, k] * len(self.op_names)).long().clamp_(max=len(self.op_names) - 1)
            m = torch.full((b,), ra["m"], device=dev)
            if ra["mstd"] > 0:
                m = (m + ra["mstd"] * noise[:, k]).clamp(0.0, 10.0)
            sign = torch.where(signed[op] & (draws[:, k, 1] < 0.5), -1.0, 1.0)
            x = self._randaugment_slot(x, op, draws[:, k, 0] < ra["p"], m / 10.0, sign)
        return x

    # -- erasing --
    def _erase(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """timm's 'pixel' random erasing after normalisation (CPU semantics: area 2-33 %, aspect 0.3-3.3, 10 tries)."""
        b, _, h, w = x.shape
        dev = x.device
        do = torch.rand(b, generator=g, device=dev) < self.cfg["random_erasing"]
        u = torch.rand(b, 10, 2, generator=g, device=dev, dtype=torch.float64)
        pos = torch.rand(b, 2, generator=g, device=dev, dtype=torch.float64)
        noise = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
        target = (h * w) * (0.02 + (1.0 / 3.0 - 0.02) * u[..., 0])
        aspect = torch.exp(math.log(0.3) + (math.log(1.0 / 0.3) - math.log(0.3)) * u[..., 1])
        eh, ew = torch.sqrt(target * aspect).round(), torch.sqrt(target / aspect).round()
        ok, eh, ew = _first_valid((eh > 0) & (eh < h) & (ew > 0) & (ew < w), eh, ew)
        top, left = torch.floor(pos[:, 0] * (h - eh + 1)), torch.floor(pos[:, 1] * (w - ew + 1))
        mask = _rect_mask(h, w, top.long(), left.long(), eh.long(), ew.long()) & _col(do & ok)
        return torch.where(mask, noise, x)

    # -- the pipeline --
    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, H, W, 3) on the device -> normalised float32 (B, 3, S, S); training needs `generator` (on the
        images' device), the only source of randomness."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (B, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        dev = images.device
        mean, std, _ = self._on(dev)
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if not self.train:
            return ((self._eval_geometry(x) - mean) / std).contiguous()
        if generator is None:
            raise ValueError("training augmentation needs a torch.Generator (all randomness comes from it)")
        g, (b, h, w, _) = generator, images.shape
        s, crop = self.img_size, self.cfg["crop"]
        flip = torch.rand(b, generator=g, device=dev) < self.cfg["hflip"]
        if crop == "rrc":
            grid = self._rrc_grid(b, h, w, flip, g, dev)
            x = F.grid_sample(x.contiguous(), grid, mode=self.mode, padding_mode="border", align_corners=False)
            x = x.clamp_(0.0, 1.0) if self.mode == "bicubic" else x
        else:
            x = self._resize(x, (s, s))
            p = self.cfg["padding"]
            offsets = torch.floor(torch.rand(b, 2, generator=g, device=dev) * (2 * p + 1)).long()
            if crop == "pad" and p > 0:
                padded = F.pad(x, (p, p, p, p))
                rows = offsets[:, 0:1] + torch.arange(s, device=dev)  # (B, S)
                cols = offsets[:, 1:2] + torch.arange(s, device=dev)
                x = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
                x = x.permute(0, 3, 1, 2)
            x = torch.where(_col(flip), x.flip(-1), x)
        if self.ra is not None:
            x = self._randaugment(x.contiguous(), g)
        x = (x - mean) / std
        if self.cfg["random_erasing"] > 0:
            x = self._erase(x, g)
        return x.contiguous()

    def __repr__(self) -> str:
        keys = ("crop", "scale", "ratio", "hflip", "randaugment", "random_erasing", "interpolation")
        kind = "train" if self.train else "eval"
        opts = ", ".join(f"{k}={self.cfg[k]!r}" for k in keys)
        return f"DeviceAugment({kind}, img_size={self.img_size}, {opts})"


# -- the loader --------------------------------------------------------------------------------------------------------
class DeviceLoader:
    """Batches `(x float (B, 3, S, S), y int64 (B,), index int64 (B,))`, all on the device.

    One object in the three roles the trainer gives `make_loader`'s results: samples and sampler (`set_epoch`,
    `set_start`) and loader (iteration). Training: the epoch's order is `ResumableSampler`'s (the CPU path's), the
    last partial batch is dropped, batch k of epoch e is augmented from `mix_seed(seed, AUG_STREAM, e, rank, k)`.
    Evaluation: every sample once, in order (this rank's shard).
    """

    def __init__(self, data: DeviceDataset, augment: DeviceAugment, *, batch_size: int, train: bool, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.augment, self.batch_size, self.train = data, augment, int(batch_size), bool(train)
        self.seed, self.rank, self.epoch = int(seed), int(rank), 0
        self.device = data.images.device
        if self.train:
            self.sampler: Any = ResumableSampler(len(data), shuffle=True, seed=seed, rank=rank, world_size=world_size,
                                                 drop_last=True, batch_size=batch_size)
            self._gen: torch.Generator | None = torch.Generator(device=self.device)
        else:
            self.sampler = EvalShardSampler(len(data), rank, world_size)
            self._gen = None

    # the trainer's samples / sampler interface
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.train:
            self.sampler.set_epoch(epoch)

    def set_start(self, index: int) -> None:
        if index % self.batch_size:
            raise ValueError(f"start {index} is not a whole number of batches of {self.batch_size}")
        self.sampler.set_start(index)

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def generator_for(self, batch: int) -> torch.Generator:
        """The generator of batch `batch` of the current epoch (seeded afresh, so any batch can be replayed)."""
        assert self._gen is not None
        return self._gen.manual_seed(mix_seed(self.seed, AUG_STREAM, self.epoch, self.rank, batch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(self.sampler), dtype=torch.int64).to(self.device)  # one copy per epoch
        first = self.sampler.start // self.batch_size if self.train else 0
        for k in range(len(self)):
            idx = order[k * self.batch_size: (k + 1) * self.batch_size]
            imgs, y = self.data.images[idx], self.data.labels[idx]
            x = self.augment(imgs, self.generator_for(first + k) if self.train else None)
            yield x, y, idx


class DeviceData:
    """A `Trainer(loader_factory=...)`: `make_loader`'s signature, device-resident splits and device augmentation.

    Each split is decoded and copied to the device once per process (cached on its content), so a second trainer in
    the same process (e.g. a driver's throughput probe, then the run itself) reuses the tensors.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], DeviceDataset] = {}
        self.upload_s = 0.0

    @staticmethod
    def _key(ds: Any, device: torch.device) -> tuple[Any, ...]:
        h = hashlib.sha1(np.asarray(list(ds.targets), dtype=np.int64).tobytes())
        if hasattr(ds, "indices"):
            h.update(np.asarray(ds.indices, dtype=np.int64).tobytes())
        base = getattr(ds, "dataset", ds)
        return (str(device), type(base).__name__, getattr(base, "name", None), getattr(base, "split", None),
                getattr(base, "root", None), getattr(base, "decode_cache", None), len(ds), h.hexdigest())

    def dataset(self, ds: Any, device: torch.device) -> DeviceDataset:
        key = self._key(ds, device)
        if key not in self._cache:
            import time

            t0 = time.perf_counter()
            self._cache[key] = DeviceDataset.from_dataset(ds, device)
            self.upload_s += time.perf_counter() - t0
        return self._cache[key]

    def __call__(self, ds: Any, *, img_size: int, train: bool, mean: Sequence[float], std: Sequence[float],
                 aug: Mapping[str, Any] | None, seed: int, batch_size: int, num_workers: int, dist_info: Any,
                 ) -> tuple[DeviceLoader, DeviceLoader, DeviceLoader]:
        data = self.dataset(ds, dist_info.device)
        loader = DeviceLoader(data, DeviceAugment(img_size, train, mean=mean, std=std, aug=aug),
                              batch_size=batch_size, train=train, seed=seed, rank=dist_info.rank,
                              world_size=dist_info.world_size)
        return loader, loader, loader

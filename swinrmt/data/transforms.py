"""Train / eval preprocessing without torchvision, with every random draw taken from a caller-supplied generator.

``build_transform(img_size, train, mean=..., std=..., aug=...)`` returns a :class:`Transform`;
``transform(pil_image, generator) -> float32 tensor (3, img_size, img_size)``, normalised.

Why this split of libraries:
- Crop + resize runs in Pillow (``Image.resize(size, box=...)``): one antialiased resample on uint8 data, the same
  arithmetic torchvision's PIL path uses, and the fastest option on CPU.
- Everything after that runs on a float tensor in [0, 1] with torch ops, plus two kornia kernels (``equalize``,
  ``sharpness``) and kornia's ``warp_affine`` for the geometric RandAugment ops. Kornia's *augmentation modules* are
  not used because they draw from torch's global RNG; here all parameters are sampled from the passed
  ``torch.Generator``, so the stream can be keyed on (seed, epoch, sample index) and does not depend on the worker
  count, the worker a sample lands on, or an interruption.

Train pipeline, in order: crop (``rrc`` | ``pad`` | ``none``) to ``img_size`` -> horizontal flip -> RandAugment ->
to float -> normalise -> random erasing. Eval pipeline: resize the shorter side to ``floor(img_size / crop_pct)`` ->
center crop ``img_size`` -> to float -> normalise.

``aug`` keys (:data:`AUG_DEFAULTS`; ``None`` for a key means its default):

=================  =====================  ==========================================================================
key                default                meaning
=================  =====================  ==========================================================================
``crop``           ``"rrc"``              ``"rrc"``: random resized crop (area ``scale``, aspect ``ratio``, 10 tries,
                                          then a center crop); ``"pad"``: resize to ``img_size`` if needed, zero-pad
                                          by ``padding``, random ``img_size`` crop (CIFAR style); ``"none"``: resize
``scale``          ``(0.08, 1.0)``        rrc area fraction range
``ratio``          ``(3/4, 4/3)``         rrc aspect-ratio range (sampled log-uniformly)
``padding``        ``4``                  pad-crop padding in pixels
``hflip``          ``0.5``                horizontal flip probability
``randaugment``    ``None``               ``"rand-m<M>-n<N>[-mstd<S>][-p<P>]"``: N ops (drawn with replacement) each
                                          applied with probability P (default 0.5, as timm), magnitude M in [0, 10]
                                          (+ Gaussian noise of std S, clipped to [0, 10])
``random_erasing`` ``0.0``                probability of erasing one rectangle (area 2-33 %, aspect 0.3-3.3) with
                                          per-pixel N(0, 1) noise, after normalisation (timm's "pixel" mode)
``crop_pct``       ``1.0``                eval: center-crop fraction. 1.0 (no crop) suits the small native-size
                                          images used here (CIFAR, Tiny-ImageNet, digits); use 0.875 for
                                          ImageNet-style 224 px evaluation
``interpolation``  ``"bilinear"``         ``"bilinear"`` | ``"bicubic"`` | ``"nearest"`` for every resize
=================  =====================  ==========================================================================

RandAugment ops (:data:`RANDAUGMENT_OPS`), level L = M / 10 in [0, 1], signed ops negated with probability 0.5;
geometric ops fill with grey 0.5 and act about the image center:
AutoContrast; Equalize; Invert; Rotate (30 L degrees); Posterize (8 - int(4 L) bits); Solarize (invert pixels
>= 256 (1 - L) / 255); SolarizeAdd (+110 L / 255 on pixels < 128 / 255); Color, Contrast, Brightness, Sharpness
(enhance factor 1 +- 0.9 L, PIL semantics: 1 is the identity); ShearX, ShearY (shear 0.3 L); TranslateX,
TranslateY (0.45 L of the image side).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

__all__ = ["AUG_DEFAULTS", "RANDAUGMENT_OPS", "RandAugment", "Transform", "build_transform", "parse_randaugment"]

AUG_DEFAULTS: dict[str, Any] = {
    "crop": "rrc",
    "scale": (0.08, 1.0),
    "ratio": (3.0 / 4.0, 4.0 / 3.0),
    "padding": 4,
    "hflip": 0.5,
    "randaugment": None,
    "random_erasing": 0.0,
    "crop_pct": 1.0,
    "interpolation": "bilinear",
}

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


# -- random draws, all from the passed generator ---------------------------------------------------------------------
def _rand(g: torch.Generator) -> float:
    return float(torch.rand((), generator=g))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * _rand(g)


def _randint(g: torch.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi)."""
    return int(torch.randint(lo, hi, (1,), generator=g))


# -- RandAugment -------------------------------------------------------------------------------------------------------
def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``ImageEnhance`` semantics: factor 0 -> degenerate, 1 -> x, > 1 extrapolates; clipped to [0, 1]."""
    return (degenerate + factor * (x - degenerate)).clamp_(0.0, 1.0)


def _affine(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Apply the forward 2x3 pixel-coordinate affine ``m`` (input -> output) to (3, H, W); fill grey 0.5."""
    from kornia.geometry.transform import warp_affine  # lazy: kornia costs ~0.5 s to import, needed only here

    h, w = x.shape[-2:]
    fill = torch.full((3,), 0.5, dtype=x.dtype)
    return warp_affine(x[None], m[None].to(x.dtype), (h, w), padding_mode="fill", fill_value=fill)[0]


def _about_center(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A 2x2 linear map ``a`` applied about the image center, as a 2x3 affine."""
    h, w = x.shape[-2:]
    c = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64)
    return torch.cat([a, (c - a @ c)[:, None]], dim=1)


def _rotate(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    t = math.radians(30.0 * level * sign)
    a = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    return _affine(x, _about_center(x, a))


def _shear(axis: int) -> Callable[[torch.Tensor, float, float], torch.Tensor]:
    def op(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
        s = 0.3 * level * sign
        a = torch.tensor([[1.0, s], [0.0, 1.0]] if axis == 0 else [[1.0, 0.0], [s, 1.0]], dtype=torch.float64)
        return _affine(x, _about_center(x, a))

    return op


def _translate(axis: int) -> Callable[[torch.Tensor, float, float], torch.Tensor]:
    def op(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
        h, w = x.shape[-2:]
        d = 0.45 * level * sign * (w if axis == 0 else h)
        m = torch.tensor([[1.0, 0.0, d if axis == 0 else 0.0], [0.0, 1.0, d if axis == 1 else 0.0]])
        return _affine(x, m)

    return op


def _autocontrast(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def _equalize(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    from kornia.enhance import equalize

    return equalize(x)


def _posterize(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    bits = 8 - int(4 * level)
    if bits >= 8:  # identity; do not quantise an already-float image
        return x
    q = (x * 255.0).round_().to(torch.uint8) & (0xFF << (8 - bits)) & 0xFF
    return q.to(x.dtype) / 255.0


def _solarize(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    thr = 256.0 * (1.0 - level) / 255.0
    return torch.where(x >= thr, 1.0 - x, x)


def _solarize_add(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
    add = 110.0 * level / 255.0
    return torch.where(x < 128.0 / 255.0, (x + add).clamp_(0.0, 1.0), x)


def _enhance(kind: str) -> Callable[[torch.Tensor, float, float], torch.Tensor]:
    def op(x: torch.Tensor, level: float, sign: float) -> torch.Tensor:
        f = 1.0 + 0.9 * level * sign
        if kind == "color":
            return _blend(_gray(x).expand_as(x), x, f)
        if kind == "contrast":
            return _blend(_gray(x).mean().expand_as(x), x, f)
        if kind == "brightness":
            return _blend(torch.zeros_like(x), x, f)
        if min(x.shape[-2:]) < 3:  # kornia's sharpness needs a 3x3 neighbourhood
            return x
        from kornia.enhance import sharpness

        return sharpness(x, f).clamp_(0.0, 1.0)

    return op


#: name -> (op(x, level, sign), signed). Order is part of the seeded stream: append, never reorder.
RANDAUGMENT_OPS: dict[str, tuple[Callable[[torch.Tensor, float, float], torch.Tensor], bool]] = {
    "AutoContrast": (_autocontrast, False),
    "Equalize": (_equalize, False),
    "Invert": (lambda x, level, sign: 1.0 - x, False),
    "Rotate": (_rotate, True),
    "Posterize": (_posterize, False),
    "Solarize": (_solarize, False),
    "SolarizeAdd": (_solarize_add, False),
    "Color": (_enhance("color"), True),
    "Contrast": (_enhance("contrast"), True),
    "Brightness": (_enhance("brightness"), True),
    "Sharpness": (_enhance("sharpness"), True),
    "ShearX": (_shear(0), True),
    "ShearY": (_shear(1), True),
    "TranslateX": (_translate(0), True),
    "TranslateY": (_translate(1), True),
}


def parse_randaugment(spec: str) -> dict[str, float]:
    """Parse ``"rand-m9-n2[-mstd0.5][-p0.5]"`` into ``{"m", "n", "mstd", "p"}``; ``ValueError`` on anything else."""
    parts = spec.strip().lower().split("-")
    if not parts or parts[0] != "rand":
        raise ValueError(f"randaugment spec must look like 'rand-m9-n2[-mstd0.5][-p0.5]', got {spec!r}")
    out: dict[str, float] = {"m": 9.0, "n": 2.0, "mstd": 0.0, "p": 0.5}
    for part in parts[1:]:
        m = re.fullmatch(r"(mstd|m|n|p)(\d+(?:\.\d+)?)", part)
        if m is None:
            raise ValueError(f"randaugment spec {spec!r}: unknown part {part!r} (expected m<M>, n<N>, mstd<S>, p<P>)")
        out[m.group(1)] = float(m.group(2))
    if not 0 <= out["m"] <= 10:
        raise ValueError(f"randaugment spec {spec!r}: magnitude m must be in [0, 10]")
    if out["n"] != int(out["n"]) or out["n"] < 0:
        raise ValueError(f"randaugment spec {spec!r}: n must be a non-negative integer")
    if not 0 <= out["p"] <= 1:
        raise ValueError(f"randaugment spec {spec!r}: p must be in [0, 1]")
    return out


class RandAugment:
    """N ops drawn with replacement from :data:`RANDAUGMENT_OPS`, each applied with probability p, magnitude M."""

    def __init__(self, m: float = 9.0, n: int = 2, mstd: float = 0.0, p: float = 0.5) -> None:
        self.m, self.n, self.mstd, self.p = float(m), int(n), float(mstd), float(p)
        self.ops = list(RANDAUGMENT_OPS.items())

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``x``: float (3, H, W) in [0, 1]."""
        choice = torch.randint(len(self.ops), (self.n,), generator=g).tolist()
        for k in choice:
            _, (op, signed) = self.ops[k]
            apply, sign_draw, noise = torch.rand(3, generator=g).tolist()
            if apply >= self.p:
                continue
            m = self.m
            if self.mstd > 0:
                m = min(10.0, max(0.0, m + self.mstd * float(torch.randn((), generator=g))))
            sign = -1.0 if (signed and sign_draw < 0.5) else 1.0
            x = op(x, m / 10.0, sign)
        return x

    def __repr__(self) -> str:
        return f"RandAugment(m={self.m}, n={self.n}, mstd={self.mstd}, p={self.p})"


# -- the transform -----------------------------------------------------------------------------------------------------
def _pair(value: Any, key: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"aug[{key!r}] must be a pair of numbers, got {value!r}") from None
    return lo, hi


def _resolve_aug(aug: Mapping[str, Any] | None) -> dict[str, Any]:
    aug = dict(aug or {})
    unknown = sorted(set(aug) - set(AUG_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown aug key(s) {unknown}; accepted keys: {sorted(AUG_DEFAULTS)}")
    cfg = {k: (AUG_DEFAULTS[k] if aug.get(k) is None else aug[k]) for k in AUG_DEFAULTS}
    if cfg["crop"] not in ("rrc", "pad", "none"):
        raise ValueError(f"aug['crop'] must be 'rrc', 'pad' or 'none', got {cfg['crop']!r}")
    cfg["scale"] = _pair(cfg["scale"], "scale")
    cfg["ratio"] = _pair(cfg["ratio"], "ratio")
    if not 0 < cfg["scale"][0] <= cfg["scale"][1] <= 1:
        raise ValueError(f"aug['scale'] must satisfy 0 < min <= max <= 1, got {cfg['scale']}")
    if not 0 < cfg["ratio"][0] <= cfg["ratio"][1]:
        raise ValueError(f"aug['ratio'] must satisfy 0 < min <= max, got {cfg['ratio']}")
    if int(cfg["padding"]) != cfg["padding"] or cfg["padding"] < 0:
        raise ValueError(f"aug['padding'] must be a non-negative integer, got {cfg['padding']!r}")
    cfg["padding"] = int(cfg["padding"])
    for key in ("hflip", "random_erasing"):
        if not 0 <= float(cfg[key]) <= 1:
            raise ValueError(f"aug[{key!r}] is a probability in [0, 1], got {cfg[key]!r}")
        cfg[key] = float(cfg[key])
    if not 0 < float(cfg["crop_pct"]) <= 1:
        raise ValueError(f"aug['crop_pct'] must be in (0, 1], got {cfg['crop_pct']!r}")
    cfg["crop_pct"] = float(cfg["crop_pct"])
    if cfg["interpolation"] not in _RESAMPLE:
        raise ValueError(f"aug['interpolation'] must be one of {sorted(_RESAMPLE)}, got {cfg['interpolation']!r}")
    if cfg["randaugment"] is not None:
        if not isinstance(cfg["randaugment"], str):
            raise ValueError(f"aug['randaugment'] must be a string like 'rand-m9-n2' or None, "
                             f"got {cfg['randaugment']!r}")
        parse_randaugment(cfg["randaugment"])
    return cfg


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.array(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


class Transform:
    """A train or eval preprocessing pipeline; see the module docstring. Call as ``t(pil_image, generator)``."""

    def __init__(
        self,
        img_size: int,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        aug: Mapping[str, Any] | None = None,
    ) -> None:
        if int(img_size) != img_size or img_size < 1:
            raise ValueError(f"img_size must be a positive integer, got {img_size!r}")
        if len(mean) != 3 or len(std) != 3 or min(float(s) for s in std) <= 0:
            raise ValueError(f"mean and std must hold 3 values each (std > 0), got {mean!r}, {std!r}")
        self.img_size = int(img_size)
        self.train = bool(train)
        self.cfg = _resolve_aug(aug)
        self.mean = torch.tensor([float(v) for v in mean]).view(3, 1, 1)
        self.std = torch.tensor([float(v) for v in std]).view(3, 1, 1)
        self.resample = _RESAMPLE[self.cfg["interpolation"]]
        ra = self.cfg["randaugment"]
        self.randaugment: RandAugment | None = None
        if ra and self.train:
            p = parse_randaugment(ra)
            self.randaugment = RandAugment(m=p["m"], n=int(p["n"]), mstd=p["mstd"], p=p["p"])

    # -- geometric stage (PIL) --
    def _rrc_box(self, w: int, h: int, g: torch.Generator) -> tuple[int, int, int, int]:
        area = w * h
        (s0, s1), (r0, r1) = self.cfg["scale"], self.cfg["ratio"]
        log_r = (math.log(r0), math.log(r1))
        for _ in range(10):
            target = area * _uniform(g, s0, s1)
            aspect = math.exp(_uniform(g, *log_r))
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = _randint(g, 0, h - ch + 1)
                left = _randint(g, 0, w - cw + 1)
                return left, top, left + cw, top + ch
        in_ratio = w / h  # fallback: the largest center crop whose aspect is within range
        if in_ratio < r0:
            cw, ch = w, int(round(w / r0))
        elif in_ratio > r1:
            cw, ch = int(round(h * r1)), h
        else:
            cw, ch = w, h
        left, top = (w - cw) // 2, (h - ch) // 2
        return left, top, left + cw, top + ch

    def _resize_square(self, img: Image.Image, box: tuple[int, int, int, int] | None = None) -> Image.Image:
        s = self.img_size
        if box is None and img.size == (s, s):
            return img
        return img.resize((s, s), self.resample, box=box)

    def _eval_geometry(self, img: Image.Image) -> Image.Image:
        s = self.img_size
        scale = int(math.floor(s / self.cfg["crop_pct"]))
        w, h = img.size
        if w <= h:
            nw, nh = scale, int(scale * h / w)
        else:
            nw, nh = int(scale * w / h), scale
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), self.resample)
        left = int(round((nw - s) / 2.0))
        top = int(round((nh - s) / 2.0))
        if (left, top, nw, nh) != (0, 0, s, s):
            img = img.crop((left, top, left + s, top + s))
        return img

    # -- the pipeline --
    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return a normalised float32 tensor (3, img_size, img_size). ``generator`` is required when training."""
        if not isinstance(img, Image.Image):
            raise TypeError(f"Transform expects a PIL.Image, got {type(img).__name__}")
        if not self.train:
            return (_to_tensor(self._eval_geometry(img)) - self.mean) / self.std
        if generator is None:
            raise ValueError("a training Transform needs a torch.Generator (all randomness comes from it)")
        g = generator
        s = self.img_size
        crop = self.cfg["crop"]
        if crop == "rrc":
            x = _to_tensor(self._resize_square(img, self._rrc_box(*img.size, g)))
        else:
            x = _to_tensor(self._resize_square(img))
            p = self.cfg["padding"]
            if crop == "pad" and p > 0:
                top, left = _randint(g, 0, 2 * p + 1), _randint(g, 0, 2 * p + 1)
                padded = torch.nn.functional.pad(x, (p, p, p, p))
                x = padded[:, top : top + s, left : left + s].contiguous()
        if self.cfg["hflip"] > 0 and _rand(g) < self.cfg["hflip"]:
            x = x.flip(-1)
        if self.randaugment is not None:
            x = self.randaugment(x, g)
        x = (x - self.mean) / self.std
        if self.cfg["random_erasing"] > 0 and _rand(g) < self.cfg["random_erasing"]:
            x = self._erase(x, g)
        return x

    @staticmethod
    def _erase(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        _, h, w = x.shape
        area = h * w
        log_r = (math.log(0.3), math.log(1.0 / 0.3))
        for _ in range(10):
            target = area * _uniform(g, 0.02, 1.0 / 3.0)
            aspect = math.exp(_uniform(g, *log_r))
            eh = int(round(math.sqrt(target * aspect)))
            ew = int(round(math.sqrt(target / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top, left = _randint(g, 0, h - eh + 1), _randint(g, 0, w - ew + 1)
                x = x.clone()
                x[:, top : top + eh, left : left + ew] = torch.randn((3, eh, ew), generator=g, dtype=x.dtype)
                return x
        return x

    def __repr__(self) -> str:
        if not self.train:
            return f"Transform(eval, img_size={self.img_size}, crop_pct={self.cfg['crop_pct']})"
        keys = ("crop", "scale", "ratio", "padding", "hflip", "randaugment", "random_erasing")
        return f"Transform(train, img_size={self.img_size}, " + ", ".join(f"{k}={self.cfg[k]!r}" for k in keys) + ")"


def build_transform(
    img_size: int,
    train: bool,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    aug: Mapping[str, Any] | None = None,
) -> Transform:
    """Build the train (``train=True``) or eval pipeline; ``aug`` keys and defaults are in the module docstring.

    The same ``aug`` dict can serve both: the eval pipeline reads only ``crop_pct`` and ``interpolation``.
    Unknown keys raise ``ValueError`` listing the accepted ones.
    """
    return Transform(img_size, train, mean, std, aug)

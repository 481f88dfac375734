"""Transforms: generator-only randomness, shapes, each crop mode, RandAugment ops, eval determinism, errors."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from swinrmt.data import SeededSamples, build_transform
from swinrmt.data.transforms import AUG_DEFAULTS, RANDAUGMENT_OPS, RandAugment, parse_randaugment

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
HEAVY = {"randaugment": "rand-m9-n3-mstd0.5-p1.0", "random_erasing": 0.5}


def _img(w: int = 40, h: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unnorm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)


class _ListDataset:
    def __init__(self, n: int = 6):
        self.items = [(_img(seed=i), i % 3) for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_same_seed_epoch_index_gives_identical_tensors_and_others_differ():
    t = build_transform(24, True, mean=MEAN, std=STD, aug=HEAVY)
    data = _ListDataset()
    a, b = SeededSamples(data, t, seed=7), SeededSamples(data, t, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    torch.manual_seed(123)  # the global RNG must not matter ...
    xa, ya, ia = a[4]
    torch.manual_seed(456)
    xb, yb, ib = b[4]
    assert torch.equal(xa, xb) and (ya, ia) == (yb, ib) == (data[4][1], 4)
    same_img = SeededSamples(_SameImage(), t, seed=7)
    same_img.set_epoch(3)
    x1, x2 = same_img[1][0], same_img[2][0]
    assert not torch.equal(x1, x2)  # same image, different index -> different augmentation
    other_epoch = SeededSamples(_SameImage(), t, seed=7)
    other_epoch.set_epoch(4)
    assert not torch.equal(other_epoch[1][0], x1)
    assert not torch.equal(SeededSamples(_SameImage(), t, seed=8)[1][0], SeededSamples(_SameImage(), t, seed=7)[1][0])


class _SameImage:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        return _img(seed=99), 0


def test_transform_touches_no_global_rng():
    t = build_transform(24, True, mean=MEAN, std=STD, aug=HEAVY)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    for s in range(20):
        t(_img(), _g(s))
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


@pytest.mark.parametrize("crop", ["rrc", "pad", "none"])
@pytest.mark.parametrize("size", [(40, 30), (16, 64), (24, 24)])
def test_output_shape_and_dtype(crop, size):
    t = build_transform(24, True, mean=MEAN, std=STD, aug={"crop": crop, **HEAVY})
    for s in range(4):
        x = t(_img(*size, seed=s), _g(s))
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and torch.isfinite(x).all()
    e = build_transform(24, False, mean=MEAN, std=STD)
    assert e(_img(*size)).shape == (3, 24, 24)


def test_pad_crop_is_a_shift_of_the_zero_padded_image():
    img = _img(32, 32)
    t = build_transform(32, True, mean=MEAN, std=STD, aug={"crop": "pad", "padding": 4, "hflip": 0.0})
    src = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    padded = torch.nn.functional.pad(src, (4, 4, 4, 4))
    shifts = set()
    for s in range(30):
        x = _unnorm(t(img, _g(s)))
        match = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.allclose(x, padded[:, dy:dy + 32, dx:dx + 32], atol=1e-5)]
        assert len(match) == 1
        shifts.add(match[0])
    assert len(shifts) > 10  # the offsets really vary


def test_hflip_probability_one_flips_exactly():
    img = _img(24, 24)
    keep = build_transform(24, True, mean=MEAN, std=STD, aug={"crop": "none", "hflip": 0.0})
    flip = build_transform(24, True, mean=MEAN, std=STD, aug={"crop": "none", "hflip": 1.0})
    assert torch.equal(flip(img, _g(0)), keep(img, _g(0)).flip(-1))


def test_rrc_full_scale_fixed_ratio_is_a_plain_resize():
    img = _img(24, 24)
    rrc = build_transform(16, True, mean=MEAN, std=STD, aug={"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip": 0})
    plain = build_transform(16, True, mean=MEAN, std=STD, aug={"crop": "none", "hflip": 0})
    assert torch.allclose(rrc(img, _g(0)), plain(img, _g(1)))
    small = build_transform(16, True, mean=MEAN, std=STD, aug={"scale": (0.1, 0.2), "hflip": 0})
    assert not torch.allclose(small(img, _g(0)), plain(img, _g(0)))


def test_eval_transform_is_deterministic_and_center_crops():
    img = _img(40, 32)
    e = build_transform(32, False, mean=MEAN, std=STD)  # crop_pct 1.0: shorter side already 32 -> center crop
    x = _unnorm(e(img))
    src = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, src[:, :, 4:36], atol=1e-6)
    assert torch.equal(e(img), e(img, _g(5)))
    e875 = build_transform(28, False, mean=MEAN, std=STD, aug={"crop_pct": 0.875})  # resize to 32, crop 28
    assert e875(img).shape == (3, 28, 28)


def test_random_erasing_probability_one_erases_a_region():
    img = _img(24, 24)
    base = build_transform(24, True, mean=MEAN, std=STD, aug={"crop": "none", "hflip": 0})
    erase = build_transform(24, True, mean=MEAN, std=STD, aug={"crop": "none", "hflip": 0, "random_erasing": 1.0})
    diff = (erase(img, _g(0)) != base(img, _g(0))).any(0)
    frac = diff.float().mean().item()
    assert 0.01 < frac <= 0.34
    rows, cols = diff.any(1).nonzero(), diff.any(0).nonzero()
    assert diff[rows.min():rows.max() + 1, cols.min():cols.max() + 1].float().mean() > 0.95  # one rectangle


@pytest.mark.parametrize("name", list(RANDAUGMENT_OPS))
def test_each_randaugment_op_keeps_shape_range_and_changes_the_image(name):
    op, signed = RANDAUGMENT_OPS[name]
    x = torch.from_numpy(np.array(_img(20, 20))).permute(2, 0, 1).float() / 255
    x = 0.2 + 0.6 * x  # leave head-room so AutoContrast has something to do
    for sign in (1.0, -1.0) if signed else (1.0,):
        y = op(x.clone(), 0.9, sign)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6
        assert (y - x).abs().max() > 1e-3, name
    if name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Color", "Contrast", "Brightness",
                "Sharpness", "SolarizeAdd", "Posterize"):
        assert torch.allclose(op(x.clone(), 0.0, 1.0), x, atol=1e-5), name  # magnitude 0 is the identity


def test_randaugment_spec_parsing_and_errors():
    assert parse_randaugment("rand-m9-n2") == {"m": 9.0, "n": 2.0, "mstd": 0.0, "p": 0.5}
    assert parse_randaugment("rand-m7-n3-mstd0.5-p1.0") == {"m": 7.0, "n": 3.0, "mstd": 0.5, "p": 1.0}
    for bad in ("augmix-m9", "rand-m11-n2", "rand-m9-x2", "rand-m9-n2.5"):
        with pytest.raises(ValueError, match="randaugment spec"):
            parse_randaugment(bad)
    ra = RandAugment(m=9, n=2, p=0.0)  # p = 0: never applies an op
    x = torch.rand(3, 8, 8)
    assert torch.equal(ra(x, _g(0)), x)


def test_unknown_and_invalid_aug_keys():
    with pytest.raises(ValueError, match=r"unknown aug key\(s\) \['colour_jitter'\]; accepted keys: .*'crop'"):
        build_transform(32, True, mean=MEAN, std=STD, aug={"colour_jitter": 0.4})
    for bad in ({"crop": "random"}, {"scale": (0.5, 0.1)}, {"hflip": 2}, {"crop_pct": 0}, {"padding": -1},
                {"randaugment": "rand-mX"}, {"interpolation": "lanczos9"}):
        with pytest.raises(ValueError):
            build_transform(32, True, mean=MEAN, std=STD, aug=bad)
    with pytest.raises(ValueError, match="torch.Generator"):
        build_transform(32, True, mean=MEAN, std=STD)(_img())
    assert set(AUG_DEFAULTS) == {"crop", "scale", "ratio", "padding", "hflip", "randaugment", "random_erasing",
                                 "crop_pct", "interpolation"}

"""The decode-once cache: same pixels as the files, reused when valid, rebuilt (never used) when stale or corrupt."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swinrmt.data import build_dataset
from swinrmt.data.datasets import ArrayDataset, FileListDataset
from swinrmt.data.decoded import IMAGES, MANIFEST, cache_dir, decoded
from swinrmt.data.images import CorruptImageError
from tests.data.data_helpers import write_not_an_image


def _folder(root: Path, n_per_class: int = 3, size=(8, 8)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            for k in range(n_per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                p = root / split / c / f"{k}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(p)
    return root


def _same_items(a, b) -> None:
    assert len(a) == len(b) and a.targets == b.targets and a.classes == b.classes
    for i in range(len(a)):
        (ia, la), (ib, lb) = a[i], b[i]
        assert la == lb and np.array_equal(np.asarray(ia), np.asarray(ib))


def test_decoded_dataset_gives_the_files_pixels_and_is_reused(tmp_path, isolated_cache):
    files = build_dataset(str(_folder(tmp_path / "d")), "train")
    assert isinstance(files, FileListDataset)
    dec = decoded(files)
    assert isinstance(dec, ArrayDataset) and isinstance(dec.images, np.memmap)
    _same_items(files, dec)
    npy = cache_dir(files) / IMAGES
    stamp = npy.stat().st_mtime_ns
    again = decoded(build_dataset(str(tmp_path / "d"), "train"))
    assert npy.stat().st_mtime_ns == stamp, "a valid cache must be reused, not rebuilt"
    _same_items(files, again)
    assert decoded(build_dataset(str(tmp_path / "d"), "test")).decode_cache != dec.decode_cache  # one per split


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "bad manifest", "no manifest"])
def test_a_corrupt_cache_is_detected_and_rebuilt_never_used(tmp_path, isolated_cache, damage):
    files = build_dataset(str(_folder(tmp_path / "d")), "train")
    decoded(files)
    d = cache_dir(files)
    npy = d / IMAGES
    if damage == "flip a byte":
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-10])
    elif damage == "bad manifest":
        (d / MANIFEST).write_text("{not json")
    else:
        (d / MANIFEST).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dec = decoded(build_dataset(str(tmp_path / "d"), "train"))
    assert any("rebuilding" in str(w.message) for w in caught), [str(w.message) for w in caught]
    _same_items(files, dec)


def test_a_changed_file_makes_a_new_cache(tmp_path, isolated_cache):
    root = _folder(tmp_path / "d")
    old = decoded(build_dataset(str(root), "train"))
    target = root / "train" / "cat" / "0.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(target)
    os.utime(target, ns=(1, 1))  # a different mtime even on a coarse clock
    new = decoded(build_dataset(str(root), "train"))
    assert new.decode_cache != old.decode_cache
    assert np.asarray(new[0][0])[0, 0].tolist() == [1, 2, 3]


def test_images_of_different_sizes_stay_files(tmp_path, isolated_cache):
    root = _folder(tmp_path / "d")
    Image.new("RGB", (9, 8)).save(root / "train" / "dog" / "9.png")
    files = build_dataset(str(root), "train")
    assert decoded(files) is files
    assert decoded(build_dataset(str(root), "train")).__class__ is FileListDataset  # remembered, still files
    assert not (cache_dir(files) / IMAGES).exists()
    assert json.loads((cache_dir(files) / MANIFEST).read_text())["uniform"] is False


def test_corrupt_image_files_are_dropped_under_skip_and_raise_under_error(tmp_path, isolated_cache):
    root = _folder(tmp_path / "d")
    write_not_an_image(root / "train" / "dog" / "bad.png")
    dec = decoded(build_dataset(str(root), "train", on_corrupt="skip"))
    assert len(dec) == 6 and dec.num_skipped == 1
    files = build_dataset(str(root), "train", on_corrupt="skip")
    files.verify()
    _same_items(files, dec)
    with pytest.raises(CorruptImageError, match="bad.png"):  # the cache built under skip still says so
        decoded(build_dataset(str(root), "train", on_corrupt="error"))


def test_training_on_the_cache_is_bit_identical_to_training_on_the_files(tmp_path, isolated_cache):
    from swinrmt.train.loop import train
    from swinrmt.train.recipe import load_recipe

    root = _folder(tmp_path / "d", n_per_class=16)
    losses = {}
    for cache in (False, True):
        r = load_recipe("quick", [f"data.name={root}", "epochs=1", "batch_size=8", "img_size=16", "log_every_steps=1",
                                  f"data.decode_cache={str(cache).lower()}", "model.name=rmt_nano"])
        train(r, tmp_path / f"run-{cache}", progress=False)
        recs = [json.loads(x) for x in (tmp_path / f"run-{cache}" / "metrics.jsonl").read_text().splitlines()]
        losses[cache] = [x["loss"] for x in recs if x["kind"] == "step"]
    assert len(losses[True]) == 4 and losses[True] == losses[False]

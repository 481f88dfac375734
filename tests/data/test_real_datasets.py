"""The shared real datasets, built straight from their archives (extracted once into $SWINRMT_CACHE or
~/.cache/swinrmt, so only a machine's first run pays the ~10-20 s extraction of each)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from swinrmt.data import SeededSamples, build_dataset, build_transform
from tests.data.data_helpers import SHARED_DATA

pytestmark = pytest.mark.data


def _archive(name: str) -> str:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"shared dataset {path} is absent (expected ../shared/data/{name} beside the repo)")
    return str(path.resolve())


@pytest.mark.parametrize(
    "archive, n_train, n_test, n_classes, size, first_class",
    [
        pytest.param("cifar10-jpeg.tar.gz", 50000, 10000, 10, 32, "airplane", id="cifar10-jpeg"),
        # its first (uncached) extraction took 12 s alone and ~28 s on a loaded 2-core machine: slow
        pytest.param("tiny-imagenet-100.tar.gz", 50000, 5000, 100, 64, "n01443537", id="tiny-imagenet-100",
                     marks=pytest.mark.slow),
    ],
)
def test_real_archive_builds_with_expected_counts(archive, n_train, n_test, n_classes, size, first_class):
    path = _archive(archive)
    build_dataset(path, "test")  # extract (cached) outside the timing below
    t0 = time.perf_counter()
    train = build_dataset(path, "train")
    elapsed = time.perf_counter() - t0
    test = build_dataset(path, "val")
    assert elapsed < 15, f"building 50k-image train split took {elapsed:.1f}s (must stay lazy)"
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.num_classes == test.num_classes == n_classes and train.classes == test.classes
    assert train.classes[0] == first_class and train.default_img_size == size
    assert np.bincount(train.targets, minlength=n_classes).tolist() == [n_train // n_classes] * n_classes
    assert np.bincount(test.targets, minlength=n_classes).tolist() == [n_test // n_classes] * n_classes
    for ds, i in ((train, 0), (train, n_train - 1), (test, 123)):
        img, label = ds[i]
        assert img.mode == "RGB" and img.size == (size, size) and 0 <= label < n_classes
        assert np.asarray(img).std() > 1  # real content, not a blank
    t = build_transform(size, True, mean=train.mean, std=train.std, aug={"crop": "pad", "randaugment": "rand-m9-n2"})
    x, y, i = SeededSamples(train, t, seed=0)[777]
    assert x.shape == (3, size, size) and y == train.targets[777] and i == 777

"""Issue 38, data side: a stale, damaged or unbuildable cache is never used silently, and a class folder without
images is not an extra class. Each test failed on the code before the fix (docs/reliability.md)."""
from __future__ import annotations

import errno
import io
import os
import shutil
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swinrmt.data import build_dataset
from swinrmt.data import archive as archive_mod
from swinrmt.data.archive import extract_archive
from swinrmt.data.datasets import FileListDataset
from swinrmt.data.decoded import decoded

MTIME = 1_600_000_000


def _bmp(color: tuple[int, int, int]) -> bytes:
    """A fixed-size image file: its size does not depend on its pixels (unlike PNG or JPEG)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="BMP")
    return buf.getvalue()


def _archive(path: Path, shade: int) -> Path:
    """An ImageFolder archive whose member names, sizes and mtimes do not depend on `shade`, its pixels do."""
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for c, cls in enumerate(("cat", "dog")):
                for k in range(2):
                    data = _bmp((shade, c, k))
                    info = tarfile.TarInfo(f"ds/{split}/{cls}/{k}.bmp")
                    info.size, info.mtime = len(data), MTIME
                    tar.addfile(info, io.BytesIO(data))
    os.utime(path, (MTIME, MTIME))
    return path


def _first_pixel(ds) -> list[int]:
    return np.asarray(ds[0][0])[0, 0].tolist()


def test_a_replaced_archive_with_same_names_sizes_mtimes_is_not_served_from_the_stale_cache(tmp_path,
                                                                                              isolated_cache):
    archive = tmp_path / "data.tar.gz"
    _archive(archive, shade=10)
    old = decoded(build_dataset(str(archive), "train"))
    assert _first_pixel(old) == [10, 0, 0]
    _archive(tmp_path / "other.tar.gz", shade=200)
    size, mtime = archive.stat().st_size, archive.stat().st_mtime_ns
    os.replace(tmp_path / "other.tar.gz", archive)
    assert archive.stat().st_mtime_ns == mtime
    new = decoded(build_dataset(str(archive), "train"))
    assert _first_pixel(new) == [200, 0, 0], "trained on the old archive's pixels"
    assert new.decode_cache != old.decode_cache
    assert size == archive.stat().st_size or True  # gz sizes may differ; the members' do not


def test_files_rewritten_in_place_with_same_size_and_mtime_rebuild_the_cache(tmp_path, isolated_cache):
    """What `tar x` over an extracted folder does: same names, sizes and mtimes, other pixels."""
    with tarfile.open(_archive(tmp_path / "a.tar.gz", shade=10)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "ds"
    old = decoded(build_dataset(str(root), "train"))
    assert _first_pixel(old) == [10, 0, 0]
    with tarfile.open(_archive(tmp_path / "b.tar.gz", shade=200)) as tar:
        tar.extractall(tmp_path / "x", filter="data")  # over the old files
    new = decoded(build_dataset(str(root), "train"))
    assert _first_pixel(new) == [200, 0, 0], "trained on the old files' pixels"


def test_an_extracted_archive_with_deleted_files_is_extracted_again(tmp_path, isolated_cache):
    archive = _archive(tmp_path / "data.tar.gz", shade=10)
    dest = extract_archive(archive)
    assert len(build_dataset(str(archive), "train")) == 4
    (dest / "ds" / "train" / "dog" / "1.bmp").unlink()
    archive_mod._VERIFIED.clear()  # the next run is a new process (one verification per process)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = build_dataset(str(archive), "train")
    assert len(ds) == 4, "trained without the deleted files"
    assert any("extract" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert (dest / "ds" / "train" / "dog" / "1.bmp").is_file()


def test_a_full_cache_disk_trains_from_the_files_and_says_so(tmp_path, isolated_cache, monkeypatch):
    """Space is reserved before the cache file is mapped: no SIGBUS when the disk fills, no temp folder left."""
    with tarfile.open(_archive(tmp_path / "a.tar.gz", shade=10)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    files = build_dataset(str(tmp_path / "x" / "ds"), "train")

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decoded(files)
    assert isinstance(out, FileListDataset) and not hasattr(out, "decode_cache")
    assert any("space" in str(w.message) and "without" in str(w.message) for w in caught), \
        [str(w.message) for w in caught]
    left = list((isolated_cache / "decoded").iterdir()) if (isolated_cache / "decoded").exists() else []
    assert left == [], left


def test_an_empty_class_folder_is_an_error_not_an_extra_class(tmp_path):
    with tarfile.open(_archive(tmp_path / "a.tar.gz", shade=10)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "ds"
    (root / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*no image"):
        build_dataset(str(root), "train")
    shutil.rmtree(root / "train" / "empty")
    assert build_dataset(str(root), "train").num_classes == 2

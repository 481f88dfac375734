"""Decode-once cache: a file-list dataset decoded into one memory-mapped uint8 array, reused by every later run.

Why: a 32 px CIFAR JPEG costs about 85 us to open and decode, a third of the light training pipeline's per-sample
cost, paid again every epoch by every run of a comparison. Decoded once, the images are a (N, H, W, 3) uint8 file of
150 MB (CIFAR-10 train) that the page cache shares between concurrent runs, and ``ds[i]`` is a slice. The pixels
are the ones the file decoder gives (same ``load_rgb``), so training on the cache is bit-identical to training on the
files.

Layout: ``$SWINRMT_CACHE/decoded/<name>-<split>-<key>/`` holding ``images.npy`` and ``manifest.json``. The key
hashes what the pixels depend on: every file's path relative to the dataset root, its size, mtime, inode and ctime,
the labels, the class names and :data:`VERSION`. Size and mtime alone are not enough: ``tar x`` over a folder, or an
archive replaced by one with the same member names, sizes and mtimes, keeps both while the pixels change. Writing a
file's content changes its ctime (which no user call can set back) and a fresh extraction gives new inodes, so the key
follows the content without hashing every image at every start.

Trust: the manifest records the array's shape and the sha256 of ``images.npy``. Opening checks both; a missing,
truncated, stale or corrupt cache is reported in one warning and rebuilt, never used. A build writes into a
temporary folder renamed into place when complete, so a killed build leaves nothing that a later run would trust,
and two concurrent builds of the same cache are harmless (the loser discards its copy). The disk space of
``images.npy`` is reserved before the file is mapped: on a full disk the run goes on from the files and says so in one
warning (writing into a sparse mapped file would kill the process with SIGBUS instead). A build killed mid-way leaves
its temporary folder; the next build of that cache removes it.

Only datasets whose images all share one size are cached (CIFAR-as-JPEG, Tiny-ImageNet); for others the manifest
records that, and the dataset is used from its files as before.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .archive import cache_root
from .datasets import ArrayDataset, ClassificationDataset, FileListDataset
from .images import CorruptImageError, load_rgb

__all__ = ["VERSION", "cache_dir", "decoded"]

VERSION = 1
IMAGES, MANIFEST, LOCK = "images.npy", "manifest.json", ".building"


def _key(ds: FileListDataset) -> str:
    h = hashlib.sha256(f"v{VERSION}\n{ds.name}\n{ds.split}\n".encode())
    root = Path(ds.root) if ds.root else None
    for f in ds.files:
        st = os.stat(f)
        rel = os.path.relpath(f, root) if root else f
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\t{st.st_ino}\t{st.st_ctime_ns}\n".encode())
    h.update(np.asarray(ds._targets, dtype=np.int64).tobytes())
    h.update("\n".join(ds.classes).encode())
    return h.hexdigest()[:20]


def cache_dir(ds: FileListDataset) -> Path:
    """Where ``ds``'s decoded copy lives (whether or not it exists yet)."""
    return cache_root() / "decoded" / f"{ds.name}-{ds.split}-{_key(ds)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _problem(d: Path) -> tuple[str | None, dict[str, Any] | None]:
    """(why the cache at `d` cannot be used, its manifest); (None, manifest) when it can."""
    try:
        man = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest", None
    except (OSError, ValueError) as exc:
        return f"unreadable manifest ({exc})", None
    if man.get("version") != VERSION:
        return f"format version {man.get('version')!r}, expected {VERSION}", None
    if not man.get("uniform", False):
        return None, man
    path = d / IMAGES
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        return f"unreadable {IMAGES} ({exc})", None
    if list(arr.shape) != man["shape"] or arr.dtype != np.uint8:
        return f"{IMAGES} holds {arr.dtype} {tuple(arr.shape)}, the manifest says uint8 {tuple(man['shape'])}", None
    del arr
    if _sha256(path) != man["sha256"]:
        return f"{IMAGES} does not match its checksum (corrupt or modified)", None
    return None, man


class NoSpaceError(OSError):
    """The cache's disk cannot hold the decoded copy."""


def _reserve(path: Path) -> None:
    """Allocate every block of the (sparse) file now: a mapped write into a hole on a full disk is a SIGBUS."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise NoSpaceError(exc.errno, f"no space for {os.fstat(fd).st_size / 1e6:.0f} MB in {path.parent.parent}")
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def _remove_stale_builds(dest: Path) -> None:
    """Temporary folders of builds of `dest` that died (their lock is free): a killed build is cleaned up here."""
    import fcntl

    for tmp in dest.parent.glob(f".{dest.name}.*"):
        try:
            if not (tmp / LOCK).exists() and time.time() - tmp.stat().st_mtime < 60:
                continue  # just made by a build that has not taken its lock yet
            with open(tmp / LOCK, "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:  # a live build holds it, or it is already gone
            continue


def _build(ds: FileListDataset, dest: Path) -> None:
    """Decode every file into `dest` (via a temporary folder beside it, renamed into place when complete)."""
    import fcntl

    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is as readable as the data it came from
    lock = open(tmp / LOCK, "a")  # held while building: tells a later build that this folder is not stale
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        n, bad, shape, uniform, arr = len(ds.files), [], None, True, None
        for k, f in enumerate(ds.files):
            try:
                img = np.asarray(load_rgb(f), dtype=np.uint8)
            except CorruptImageError:
                if ds.on_corrupt == "error":
                    raise
                bad.append(k)
                continue
            if arr is None:
                shape = img.shape
                arr = np.lib.format.open_memmap(tmp / IMAGES, mode="w+", dtype=np.uint8, shape=(n, *shape))
                _reserve(tmp / IMAGES)
            elif img.shape != shape:
                uniform = False
                break
            arr[k] = img
        man: dict[str, Any] = {"version": VERSION, "name": ds.name, "split": ds.split, "root": ds.root,
                               "uniform": uniform and arr is not None}
        if man["uniform"]:
            arr.flush()
            del arr
            man.update(shape=[n, *shape], bad=bad, sha256=_sha256(tmp / IMAGES))
        else:
            arr = None
            (tmp / IMAGES).unlink(missing_ok=True)
        (tmp / MANIFEST).write_text(json.dumps(man, indent=1))
        (tmp / LOCK).unlink()
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.replace(tmp, dest)
        except OSError:  # a concurrent build won the rename (dest exists and is not empty): keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.close()


def decoded(ds: ClassificationDataset) -> ClassificationDataset:
    """``ds`` served from its decode-once cache (built now if missing or untrustworthy); other datasets unchanged.

    Corrupt files found while decoding are dropped as :meth:`ClassificationDataset.verify` drops them (and counted in
    ``num_skipped``); under ``on_corrupt="error"`` the first one raises, now or, from a cache built under "skip",
    on opening.
    """
    if not isinstance(ds, FileListDataset) or len(ds.files) == 0:
        return ds
    d = cache_dir(ds)
    why, man = _problem(d)
    if why is not None:
        if d.exists():
            warnings.warn(f"decode cache {d}: {why}; rebuilding it", RuntimeWarning, stacklevel=2)
            shutil.rmtree(d, ignore_errors=True)
        try:
            _build(ds, d)
        except OSError as exc:
            if not (isinstance(exc, NoSpaceError) or exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)):
                raise
            warnings.warn(f"decode cache {d}: {exc.strerror or exc}; training from the image files without the "
                          "cache (free space or point $SWINRMT_CACHE elsewhere)", RuntimeWarning, stacklevel=2)
            return ds
        why, man = _problem(d)
        if why is not None:
            raise RuntimeError(f"decode cache {d} unusable right after building it: {why}")
    if not man["uniform"]:
        return ds
    bad = man["bad"]
    if bad and ds.on_corrupt == "error":
        raise CorruptImageError(ds.files[bad[0]], "failed to decode when the decode cache was built")
    images = np.load(d / IMAGES, mmap_mode="r")
    out = ArrayDataset(images, ds._targets, name=ds.name, split=ds.split, classes=ds.classes, root=ds.root,
                       on_corrupt=ds.on_corrupt)
    out._bad = set(bad)
    if bad:
        out._index = np.array([k for k in range(len(ds.files)) if k not in out._bad], dtype=np.int64)
        out._warned = True
    out.default_img_size = getattr(ds, "default_img_size", out.default_img_size)
    out.mean, out.std = ds.mean, ds.std
    out.files = ds.files  # names for error messages and tools that list the source files
    out.decode_cache = str(d)
    return out

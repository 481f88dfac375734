"""Decode-once cache: a file-list dataset decoded into one memory-mapped uint8 array, reused by every later run.

Why: a 32 px CIFAR JPEG costs about 85 us to open and decode, a third of the light training pipeline's per-sample
cost, paid again every epoch by every run of a comparison. Decoded once, the images are a (N, H, W, 3) uint8 file of
150 MB (CIFAR-10 train) that the page cache shares between concurrent runs, and ``ds[i]`` is a slice. The pixels
are the ones the file decoder gives (same ``load_rgb``), so training on the cache is bit-identical to training on the
files.

Layout: ``$SWINRMT_CACHE/decoded/<name>-<split>-<key>/`` holding ``images.npy`` and ``manifest.json``. The key
hashes what the pixels depend on: every file's path relative to the dataset root, its size and its mtime, the
labels, the class names and :data:`VERSION`. An extracted archive lives in a folder named after the archive's
sha256 (``archive.extract_archive``), so the key follows the archive's content; a directory dataset's key follows
its files' sizes and mtimes.

Trust: the manifest records the array's shape and the sha256 of ``images.npy``. Opening checks both; a missing,
truncated, stale or corrupt cache is reported in one warning and rebuilt, never used. A build writes into a
temporary folder renamed into place when complete, so a killed build leaves nothing that a later run would trust,
and two concurrent builds of the same cache are harmless (the loser discards its copy).

Only datasets whose images all share one size are cached (CIFAR-as-JPEG, Tiny-ImageNet); for others the manifest
records that, and the dataset is used from its files as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .archive import cache_root
from .datasets import ArrayDataset, ClassificationDataset, FileListDataset
from .images import CorruptImageError, load_rgb

__all__ = ["VERSION", "cache_dir", "decoded"]

VERSION = 1
IMAGES, MANIFEST = "images.npy", "manifest.json"


def _key(ds: FileListDataset) -> str:
    h = hashlib.sha256(f"v{VERSION}\n{ds.name}\n{ds.split}\n".encode())
    root = Path(ds.root) if ds.root else None
    for f in ds.files:
        st = os.stat(f)
        rel = os.path.relpath(f, root) if root else f
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
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


def _build(ds: FileListDataset, dest: Path) -> None:
    """Decode every file into `dest` (via a temporary folder beside it, renamed into place when complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is as readable as the data it came from
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
        _build(ds, d)
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

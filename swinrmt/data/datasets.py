"""Image-classification datasets behind one interface, chosen by name or detected from a path.

Every dataset is a :class:`ClassificationDataset`: ``ds[i] -> (PIL RGB image, int label)``, ``len(ds)``,
``ds.classes``, ``ds.num_classes``, ``ds.targets`` (labels without decoding an image), ``ds.num_skipped``,
``ds.default_img_size``, ``ds.mean``, ``ds.std``.

Formats (:data:`FORMATS`):

- ``cifar10`` / ``cifar100``: the python pickle release (``cifar-10-batches-py`` / ``cifar-100-python``), held in
  memory as uint8 (150 MB for CIFAR-10 train). The pickles are read with a restricted unpickler that only builds numpy
  arrays, so a hostile "dataset" cannot run code.
- ``imagefolder``: ``<root>/train/<class>/*`` and ``<root>/test/<class>/*`` (or ``val/``); class index = position in
  the sorted train class folders; a test class missing from train is an error (disjoint classes mean a few-shot split).
- ``tiny-imagenet``: ``train/<wnid>/images/*.JPEG`` and ``val/images`` + ``val/val_annotations.txt`` (its ``val`` is
  the test split; Tiny-ImageNet's own ``test`` has no labels). Classes are the sorted wnids.
- ``mini-imagenet`` (for classification, not few-shot): all images of all classes are merged, whatever the layout
  (``<root>/<wnid>/*.jpg``; ``<root>/{train,val,test}/<wnid>/*.jpg``; or ``<root>/images/*.jpg`` with the few-shot
  ``train.csv``/``val.csv``/``test.csv``, whose class sets are disjoint and therefore unusable as train/test), and
  re-split per class with a seeded shuffle: ``round(n / 6)`` test images per class, i.e. 500/100 for 600 images.
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images, no download), a seeded stratified 80/20 split, returned
  as RGB images upscaled (bilinear) to ``img_size`` (default 32): the zero-setup default.

Corrupt images (``on_corrupt``): detection is lazy, because decoding 50 000 JPEGs up front would take minutes. Under
``"error"`` the first access of a corrupt file raises :class:`~swinrmt.data.images.CorruptImageError` (a
``ValueError`` naming the file). Under ``"skip"`` ``ds[i]`` returns the first decodable sample among ``i, i+1, ...``
(wrapping), which depends only on the files, not on access order, so it is deterministic in every worker; the file is
remembered and counted in ``num_skipped`` (per process: DataLoader workers count in their own copy), and the first one
found emits one warning. Call :meth:`ClassificationDataset.verify` to decode everything now instead: corrupt files are
then dropped from the index (``len`` and ``targets`` become exact) and a single warning reports their count.
"""
from __future__ import annotations

import csv
import functools
import os
import pickle
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .archive import extract_archive, is_archive
from .images import CorruptImageError, is_image_file, load_rgb

__all__ = [
    "DATASETS",
    "FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClassificationDataset",
    "build_dataset",
    "detect_format",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Names accepted by :func:`build_dataset` (besides a filesystem path).
DATASETS: list[str] = ["digits", "cifar10", "cifar100", "imagefolder", "tiny-imagenet", "mini-imagenet"]

#: Human-readable description of each on-disk format, used in "unknown layout" errors.
FORMATS: dict[str, str] = {
    "cifar10": "CIFAR-10 python dir (data_batch_1..5, test_batch, batches.meta) or a dir holding cifar-10-batches-py",
    "cifar100": "CIFAR-100 python dir (train, test, meta) or a dir holding cifar-100-python",
    "tiny-imagenet": "Tiny-ImageNet (train/<wnid>/images/*, val/val_annotations.txt + val/images/*)",
    "imagefolder": "ImageFolder (train/<class>/* and test/<class>/* or val/<class>/*)",
    "mini-imagenet": "Mini-ImageNet (<root>/<wnid>/*.jpg, {train,val,test}/<wnid>/*.jpg with disjoint classes, "
    "or images/*.jpg + train.csv/val.csv/test.csv)",
    "archive": "a .tar/.tar.gz/.tgz archive of one of the above",
}

_SPLITS = {"train": "train", "test": "test", "val": "test"}
_CORRUPT_POLICIES = ("skip", "error")
MINI_IMAGENET_TEST_FRACTION = 1.0 / 6.0


class ClassificationDataset(Dataset):
    """A labelled image dataset; subclasses provide ``_load(k)`` for raw index ``k`` (see module docstring)."""

    default_img_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(
        self,
        *,
        name: str,
        split: str,
        classes: Sequence[str],
        targets: Sequence[int],
        root: str | None,
        on_corrupt: str = "skip",
    ) -> None:
        if on_corrupt not in _CORRUPT_POLICIES:
            raise ValueError(f"on_corrupt must be one of {_CORRUPT_POLICIES}, got {on_corrupt!r}")
        self.name = name
        self.split = split
        self.root = root
        self.on_corrupt = on_corrupt
        self.classes: list[str] = list(classes)
        self._targets = np.asarray(targets, dtype=np.int64)
        self._index = np.arange(len(self._targets), dtype=np.int64)  # positions -> raw sample ids
        self._bad: set[int] = set()  # raw ids known to be corrupt
        self._warned = False
        n = len(self.classes)
        if self._targets.size and (self._targets.min() < 0 or self._targets.max() >= n):
            bad = int(self._targets[(self._targets < 0) | (self._targets >= n)][0])
            raise ValueError(f"{name} {split} ({root}): label {bad} out of range [0, {n})")

    # -- interface -------------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def targets(self) -> list[int]:
        return self._targets[self._index].tolist()

    @property
    def num_skipped(self) -> int:
        """Corrupt files found so far in this process (all of them after :meth:`verify`)."""
        return len(self._bad)

    def __len__(self) -> int:
        return int(self._index.size)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {self.name} {self.split} of size {n}")
        i %= n
        for step in range(n):
            k = int(self._index[(i + step) % n])
            if k in self._bad:
                continue
            try:
                return self._load(k), int(self._targets[k])
            except CorruptImageError as exc:
                if self.on_corrupt == "error":
                    raise
                self._bad.add(k)
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"{self.name} {self.split}: skipping {exc} (on_corrupt='skip'); later corrupt files are "
                        f"counted in num_skipped without further warnings",
                        RuntimeWarning,
                        stacklevel=2,
                    )
        raise ValueError(f"{self.name} {self.split} ({self.root}): every image is corrupt")

    def verify(self) -> int:
        """Decode every image now; under ``"skip"`` drop corrupt ones from the index and warn once with the count.

        Returns the number of corrupt files. Under ``"error"`` the first corrupt file raises.
        """
        for k in self._index.tolist():
            if k in self._bad:
                continue
            try:
                self._load(k)
            except CorruptImageError:
                if self.on_corrupt == "error":
                    raise
                self._bad.add(k)
        if self._bad:
            self._index = np.array([k for k in self._index.tolist() if k not in self._bad], dtype=np.int64)
            self._warned = True
            warnings.warn(
                f"{self.name} {self.split} ({self.root}): skipped {len(self._bad)} corrupt image file(s) "
                f"(on_corrupt='skip'); {len(self)} remain",
                RuntimeWarning,
                stacklevel=2,
            )
        return len(self._bad)

    def _load(self, k: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"classes={self.num_classes}, root={self.root!r})"
        )


class FileListDataset(ClassificationDataset):
    """Images read lazily from a list of files (ImageFolder, Tiny-ImageNet, Mini-ImageNet)."""

    def __init__(self, files: Sequence[str], targets: Sequence[int], **kw: Any) -> None:
        super().__init__(targets=targets, **kw)
        if len(files) != len(targets):
            raise ValueError(f"{len(files)} files but {len(targets)} labels")
        self.files: list[str] = list(files)

    def _load(self, k: int) -> Image.Image:
        return load_rgb(self.files[k])


class ArrayDataset(ClassificationDataset):
    """Images held in memory as a uint8 array (N, H, W, 3) or (N, H, W) (CIFAR, digits)."""

    def __init__(self, images: np.ndarray, targets: Sequence[int], *, resize_to: int | None = None, **kw: Any) -> None:
        super().__init__(targets=targets, **kw)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(targets):
            raise ValueError(f"expected uint8 images (N,H,W[,3]) matching {len(targets)} labels, got "
                             f"{images.dtype} {images.shape}")
        self.images = images
        self.resize_to = resize_to

    def _load(self, k: int) -> Image.Image:
        img = Image.fromarray(self.images[k]).convert("RGB")
        if self.resize_to is not None and img.size != (self.resize_to, self.resize_to):
            img = img.resize((self.resize_to, self.resize_to), Image.Resampling.BILINEAR)
        return img


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR python format
# ---------------------------------------------------------------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays and plain containers: CIFAR pickles need nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy >= 2 moved numpy.core to numpy._core
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a readable CIFAR python pickle ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(meta: dict[str, Any], key: str, path: Path) -> list[str]:
    if key not in meta:
        raise ValueError(f"{path}: missing key {key!r} (has {sorted(meta)})")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


def _cifar_dir(root: Path, variant: str) -> Path:
    sub = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[variant]
    if (root / sub).is_dir():
        return root / sub
    return root


def _load_cifar(root: Path, variant: str, split: str, on_corrupt: str) -> ArrayDataset:
    d = _cifar_dir(root, variant)
    if variant == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, names_key, label_key = "batches.meta", "label_names", "labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        meta_file, names_key, label_key = "meta", "fine_label_names", "fine_labels"
    meta_path = d / meta_file
    classes = _names(_read_pickle(meta_path), names_key, meta_path)
    images, labels = [], []
    for fname in files:
        path = d / fname
        batch = _read_pickle(path)
        for key in ("data", label_key):
            if key not in batch:
                raise ValueError(f"{path}: missing key {key!r} (has {sorted(batch)})")
        data = np.asarray(batch["data"])
        lab = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
        if len(lab) != len(data):
            raise ValueError(f"{path}: {len(data)} images but {len(lab)} labels")
        bad = (lab < 0) | (lab >= len(classes))
        if bad.any():
            raise ValueError(f"{path}: label {int(lab[bad][0])} out of range [0, {len(classes)})")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(lab)
    ds = ArrayDataset(
        np.ascontiguousarray(np.concatenate(images)),
        np.concatenate(labels),
        name=variant,
        split=split,
        classes=classes,
        root=str(d),
        on_corrupt=on_corrupt,
    )
    ds.default_img_size = 32
    return ds


# ---------------------------------------------------------------------------------------------------------------------
# Folder formats
# ---------------------------------------------------------------------------------------------------------------------
def _subdirs(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _image_files(path: Path) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.path for e in it if is_image_file(e.name) and e.is_file())


def _class_tree(root: Path) -> dict[str, list[str]]:
    """``{class: sorted image paths}`` for a folder of class folders (images directly inside each class folder)."""
    return {c: _image_files(root / c) for c in _subdirs(root)}


def _no_empty_classes(split_dir: Path, tree: dict[str, list[str]]) -> None:
    """A class folder without images would silently become an extra class that no image has: refuse it."""
    empty = [c for c, files in tree.items() if not files]
    if empty:
        raise ValueError(f"{split_dir / empty[0]}: class folder has no image files ({len(empty)} such folder(s)); "
                         "remove it or add its images")


def _test_dir(root: Path) -> Path | None:
    for name in ("test", "val"):
        if (root / name).is_dir():
            return root / name
    return None


def _load_imagefolder(root: Path, split: str, on_corrupt: str) -> FileListDataset:
    if not (root / "train").is_dir():
        raise FileNotFoundError(f"ImageFolder root {root} has no train/ directory (expected train/<class>/*)")
    classes = _subdirs(root / "train")
    if not classes:
        raise ValueError(f"ImageFolder {root / 'train'}: no class folders found")
    _no_empty_classes(root / "train", _class_tree(root / "train"))
    split_dir = root / "train" if split == "train" else _test_dir(root)
    if split_dir is None:
        raise FileNotFoundError(f"ImageFolder root {root} has no test/ or val/ directory")
    tree = _class_tree(split_dir)
    unknown = sorted(set(tree) - set(classes))
    if unknown:
        raise ValueError(
            f"ImageFolder {split_dir}: classes {unknown[:5]} are not in train/ (disjoint train/test classes are a "
            f"few-shot split; use 'mini-imagenet' to merge and re-split them)"
        )
    index = {c: i for i, c in enumerate(classes)}
    files = [f for c in sorted(tree) for f in tree[c]]
    targets = [index[c] for c in sorted(tree) for _ in tree[c]]
    if not files:
        raise ValueError(f"ImageFolder {split_dir}: no image files found (extensions: .jpg .png ...)")
    ds = FileListDataset(files, targets, name="imagefolder", split=split, classes=classes, root=str(root),
                         on_corrupt=on_corrupt)
    ds.default_img_size = _native_size(files[0])
    return ds


def _native_size(path: str, cap: int = 224) -> int:
    """Shorter side of one image (header read only), capped at ``cap``: 32 for CIFAR-as-JPEG, 224 for photos."""
    try:
        with Image.open(path) as im:
            return max(1, min(cap, *im.size))
    except Exception:  # a corrupt first file is handled (or raised) when it is accessed, not here
        return cap


def _load_tiny_imagenet(root: Path, split: str, on_corrupt: str) -> FileListDataset:
    train = root / "train"
    if not train.is_dir():
        raise FileNotFoundError(f"Tiny-ImageNet root {root} has no train/ directory")
    classes = _subdirs(train)
    wnids_file = root / "wnids.txt"
    if wnids_file.is_file():
        wnids = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
        if wnids != classes:
            raise ValueError(f"{wnids_file} lists {len(wnids)} wnids that differ from the {len(classes)} folders "
                             f"in {train}")
    index = {c: i for i, c in enumerate(classes)}
    files: list[str] = []
    targets: list[int] = []
    if split == "train":
        for c in classes:
            d = train / c / "images"
            imgs = _image_files(d if d.is_dir() else train / c)
            if not imgs:
                _no_empty_classes(train, {c: imgs})
            files += imgs
            targets += [index[c]] * len(imgs)
    else:
        val = root / "val"
        ann = val / "val_annotations.txt"
        if ann.is_file():
            with open(ann, newline="") as f:
                for lineno, row in enumerate(csv.reader(f, delimiter="\t"), 1):
                    if not row or not row[0].strip():
                        continue
                    if len(row) < 2:
                        raise ValueError(f"{ann}:{lineno}: expected '<file>\\t<wnid>...', got {row!r}")
                    if row[1] not in index:
                        raise ValueError(f"{ann}:{lineno}: wnid {row[1]!r} is not one of the {len(classes)} "
                                         f"train classes")
                    path = val / "images" / row[0]
                    if not path.is_file():
                        raise FileNotFoundError(f"{ann}:{lineno}: image {path} not found")
                    files.append(str(path))
                    targets.append(index[row[1]])
        elif val.is_dir() and set(_subdirs(val)) <= set(classes) and _subdirs(val):  # val/<wnid>/[images/]*
            for c in _subdirs(val):
                d = val / c / "images"
                imgs = _image_files(d if d.is_dir() else val / c)
                files += imgs
                targets += [index[c]] * len(imgs)
        else:
            raise FileNotFoundError(f"Tiny-ImageNet: {ann} not found (needed for the val/test split)")
    if not files:
        raise ValueError(f"Tiny-ImageNet {root}: no {split} images found")
    ds = FileListDataset(files, targets, name="tiny-imagenet", split=split, classes=classes, root=str(root),
                         on_corrupt=on_corrupt)
    ds.default_img_size = 64
    return ds


def _mini_imagenet_images(root: Path) -> dict[str, list[str]]:
    """Merge every labelled Mini-ImageNet image into ``{wnid: sorted paths}`` (see module docstring for layouts)."""
    csvs = [root / f"{s}.csv" for s in ("train", "val", "test")]
    if (root / "images").is_dir() and any(p.is_file() for p in csvs):
        merged: dict[str, set[str]] = {}
        for path in csvs:
            if not path.is_file():
                continue
            with open(path, newline="") as f:
                for lineno, row in enumerate(csv.reader(f), 1):
                    if not row or (lineno == 1 and row[0].strip().lower() == "filename"):
                        continue
                    if len(row) < 2:
                        raise ValueError(f"{path}:{lineno}: expected 'filename,label', got {row!r}")
                    image = root / "images" / row[0].strip()
                    if not image.is_file():
                        raise FileNotFoundError(f"{path}:{lineno}: image {image} not found")
                    merged.setdefault(row[1].strip(), set()).add(str(image))
        return {c: sorted(v) for c, v in sorted(merged.items())}
    split_dirs = [root / s for s in ("train", "val", "test") if (root / s).is_dir()]
    tree: dict[str, list[str]] = {}
    for d in split_dirs or [root]:
        for c, files in _class_tree(d).items():
            tree.setdefault(c, []).extend(files)
    return {c: sorted(v) for c, v in sorted(tree.items()) if v}


def _stable_hash(s: str) -> int:
    return zlib.crc32(s.encode("utf-8"))


def per_class_split(
    files_by_class: dict[str, list[str]], seed: int, test_fraction: float = MINI_IMAGENET_TEST_FRACTION
) -> dict[str, tuple[list[str], list[str]]]:
    """Seeded per-class split ``{class: (train_files, test_files)}``; ``round(n * test_fraction)`` test files.

    Each class is shuffled by its own generator keyed on (seed, crc32(class name)), so a class's split does not
    change when other classes are added or removed.
    """
    out = {}
    for c, files in files_by_class.items():
        rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, _stable_hash(c)]))
        perm = rng.permutation(len(files))
        n_test = int(round(len(files) * test_fraction))
        test = sorted(files[j] for j in perm[:n_test])
        train = sorted(files[j] for j in perm[n_test:])
        out[c] = (train, test)
    return out


def _load_mini_imagenet(root: Path, split: str, on_corrupt: str, seed: int) -> FileListDataset:
    tree = _mini_imagenet_images(root)
    if not tree:
        raise ValueError(f"Mini-ImageNet {root}: no images found; expected {FORMATS['mini-imagenet']}")
    classes = sorted(tree)
    parts = per_class_split(tree, seed)
    files: list[str] = []
    targets: list[int] = []
    for i, c in enumerate(classes):
        chosen = parts[c][0 if split == "train" else 1]
        files += chosen
        targets += [i] * len(chosen)
    ds = FileListDataset(files, targets, name="mini-imagenet", split=split, classes=classes, root=str(root),
                         on_corrupt=on_corrupt)
    ds.default_img_size = 224
    return ds


# ---------------------------------------------------------------------------------------------------------------------
# digits (built in)
# ---------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images 0..255, labels, train ids, test ids); cached: sklearn's loader parses a CSV each call."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # values 0..16 -> 0..255
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
    for a in (images, y):
        a.flags.writeable = False
    return images, y, np.sort(idx_train), np.sort(idx_test)


def _load_digits(split: str, seed: int, img_size: int | None) -> ArrayDataset:
    images, y, idx_train, idx_test = _digits_split(int(seed) % 2**32)
    idx = idx_train if split == "train" else idx_test
    size = 32 if img_size is None else int(img_size)
    if size < 1:
        raise ValueError(f"img_size must be positive, got {img_size}")
    ds = ArrayDataset(images[idx], y[idx], resize_to=size, name="digits", split=split,
                      classes=[str(d) for d in range(10)], root=None, on_corrupt="skip")
    ds.default_img_size = size
    return ds


# ---------------------------------------------------------------------------------------------------------------------
# detection and the factory
# ---------------------------------------------------------------------------------------------------------------------
def _looks_like_cifar(d: Path) -> str | None:
    if (d / "data_batch_1").is_file() and (d / "test_batch").is_file():
        return "cifar10"
    if (d / "train").is_file() and (d / "test").is_file() and (d / "meta").is_file():
        return "cifar100"
    if (d / "cifar-10-batches-py").is_dir():
        return "cifar10"
    if (d / "cifar-100-python").is_dir():
        return "cifar100"
    return None


def _has_class_folders_with_images(d: Path) -> bool:
    for c in _subdirs(d)[:8]:
        with os.scandir(d / c) as it:
            if any(is_image_file(e.name) for e in it):
                return True
    return False


def detect_format(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """Return ``(format, dataset_root)`` for a directory, descending into a single wrapper directory.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` listing :data:`FORMATS` if no known
    layout matches.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"dataset path not found: {root}")
    if not root.is_dir():
        raise ValueError(f"dataset path {root} is a file but not a tar archive; expected a directory or an archive")
    d = root
    for _ in range(3):
        cifar = _looks_like_cifar(d)
        if cifar:
            return cifar, d
        train, test = d / "train", _test_dir(d)
        if train.is_dir() and (d / "val" / "val_annotations.txt").is_file():
            return "tiny-imagenet", d
        if train.is_dir() and any((train / c / "images").is_dir() for c in _subdirs(train)[:8]):
            return "tiny-imagenet", d
        if (d / "images").is_dir() and any((d / f"{s}.csv").is_file() for s in ("train", "val", "test")):
            return "mini-imagenet", d
        if train.is_dir() and test is not None and _has_class_folders_with_images(train):
            if not set(_subdirs(train)) & set(_subdirs(test)):  # disjoint classes: few-shot split, merge them
                return "mini-imagenet", d
            return "imagefolder", d
        if not train.is_dir() and _has_class_folders_with_images(d):
            return "mini-imagenet", d
        subs = _subdirs(d)
        with os.scandir(d) as it:
            n_files = sum(1 for e in it if e.is_file() and not e.name.startswith("."))
        if len(subs) == 1 and n_files == 0:
            d = d / subs[0]
            continue
        break
    formats = "; ".join(f"{k}: {v}" for k, v in FORMATS.items())
    raise ValueError(f"dataset path {root}: layout matches no known format (known formats: {formats})")


def _resolve(path: str) -> Path:
    if is_archive(path):
        return extract_archive(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"dataset path not found: {p}")
    return p


def build_dataset(
    name_or_path: str = "digits",
    split: str = "train",
    *,
    root: str | None = None,
    on_corrupt: str = "skip",
    seed: int = 0,
    img_size: int | None = None,
) -> ClassificationDataset:
    """Build a dataset split by name (:data:`DATASETS`) or from a path (directory or tar archive, auto-detected).

    ``split`` is ``"train"`` or ``"test"`` (``"val"`` = ``"test"``). ``root`` is the dataset directory or archive for
    every name but ``digits``. ``seed`` drives the splits this package makes itself (digits, mini-imagenet): it is a
    *data* seed, to be kept fixed across the runs being compared, not the training seed. ``img_size`` only affects
    ``digits`` (the size its 8x8 images are upscaled to; default 32).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    split = _SPLITS[split]
    if on_corrupt not in _CORRUPT_POLICIES:
        raise ValueError(f"on_corrupt must be one of {_CORRUPT_POLICIES}, got {on_corrupt!r}")
    key = name_or_path.lower()
    if key == "digits":
        return _load_digits(split, seed, img_size)
    loaders: dict[str, Callable[[Path], ClassificationDataset]] = {
        "cifar10": lambda r: _load_cifar(r, "cifar10", split, on_corrupt),
        "cifar100": lambda r: _load_cifar(r, "cifar100", split, on_corrupt),
        "imagefolder": lambda r: _load_imagefolder(r, split, on_corrupt),
        "tiny-imagenet": lambda r: _load_tiny_imagenet(r, split, on_corrupt),
        "mini-imagenet": lambda r: _load_mini_imagenet(r, split, on_corrupt, seed),
    }
    aliases = {"cifar-10": "cifar10", "cifar-100": "cifar100", "tiny_imagenet": "tiny-imagenet",
               "mini_imagenet": "mini-imagenet", "miniimagenet": "mini-imagenet", "tinyimagenet": "tiny-imagenet"}
    key = aliases.get(key, key)
    if key in loaders:
        if root is None:
            raise ValueError(f"dataset {name_or_path!r} needs root= (its directory or archive)")
        r = _resolve(root)
        if key not in ("cifar10", "cifar100"):  # cifar loaders find their own sub-directory
            try:
                fmt, found = detect_format(r)
            except ValueError:
                fmt, found = key, r  # let the named loader say precisely what is missing
            if fmt == key:
                r = found  # e.g. the wrapper directory of an extracted archive
        return loaders[key](r)
    if root is not None:
        raise ValueError(f"unknown dataset name {name_or_path!r}; known names: {DATASETS} (or pass a path)")
    looks_like_path = os.sep in name_or_path or is_archive(name_or_path) or os.path.exists(name_or_path)
    if not looks_like_path:
        raise ValueError(f"unknown dataset {name_or_path!r}: not one of {DATASETS} and not an existing path")
    fmt, r = detect_format(_resolve(name_or_path))
    return loaders[fmt](r)

"""Helpers for the data tests: tiny on-disk datasets written in the real formats (imported by the tests)."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_image(path: Path, color=(200, 30, 60), size=(8, 8), mode: str = "RGB", fmt: str | None = None) -> Path:
    """Write a solid image (JPEG/PNG by suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in the middle of its entropy-coded data (header intact, so only a full decode notices)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all" * 10)
    return path


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) uint8 -> the CIFAR row layout (N, 3072): R plane, G plane, B plane, each row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)

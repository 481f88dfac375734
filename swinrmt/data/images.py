"""Robust image decoding: every image becomes an 8-bit RGB ``PIL.Image`` or a one-line error.

Why this exists: real image folders hold grayscale, palette, CMYK, 16-bit and alpha images next to the RGB ones, and
now and then a truncated or non-image file. A model wants 3 channels of 8-bit RGB, and a corrupt file must either be
skipped or named in the error, never crash a worker with a stack trace deep inside Pillow.

Conversion rules (one place, tested):
- ``RGB``: unchanged.  ``L``/``1``/``P``/``CMYK``/``YCbCr``/``LAB``/``HSV``: Pillow's ``convert("RGB")``.
- 16/32-bit grayscale (``I;16*``, ``I``) is scaled to 8 bits (``>> 8`` when values exceed 255) instead of clipped.
- float grayscale (``F``) is clipped to [0, 255].
- Anything with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparency key, ``RGBa``) is alpha-composited
  over white, which is what image viewers show; ``convert("RGB")`` would instead expose whatever colour happens to be
  stored under fully transparent pixels (often black).

Truncated files are detected because ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is False by default; code that sets it
True globally makes Pillow pad truncated images with grey instead of failing, and then they cannot be detected.
"""
from __future__ import annotations

import os
import struct
import warnings
from typing import Union

import numpy as np
from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "CorruptImageError", "is_image_file", "load_rgb", "to_rgb"]

#: File extensions (lower case) that the folder formats treat as images; other files are ignored.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

PathLike = Union[str, "os.PathLike[str]"]


class CorruptImageError(ValueError):
    """An image file that cannot be decoded (not an image, truncated, or damaged). The message names the file."""

    def __init__(self, path: PathLike, reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"corrupt or unreadable image file {self.path}: {reason}")


def is_image_file(name: str) -> bool:
    """True for a non-hidden file name with one of :data:`IMAGE_EXTENSIONS`."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB following the module's documented rules."""
    mode = img.mode
    if mode == "RGB":
        return img
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I"):  # I, I;16, I;16B, I;16L, I;16N: integer grayscale wider than 8 bits
        arr = np.asarray(img).astype(np.int64)
        if arr.size and arr.max() > 255:
            arr = arr >> 8
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    return img.convert("RGB")


def load_rgb(path: PathLike) -> Image.Image:
    """Decode ``path`` fully into an RGB image; raise :class:`CorruptImageError` (one line, names the file) if it
    cannot be decoded. ``FileNotFoundError`` passes through: a missing file is not a corrupt one."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) on some damaged-but-decodable files, e.g. bad EXIF; keep worker logs clean.
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as exc:
        raise CorruptImageError(path, f"decompression bomb check failed ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptImageError(path, reason) from None


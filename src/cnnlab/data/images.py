"""Image decoding with Pillow: any mode (grayscale, CMYK, palette, RGBA, 16-bit, float) becomes uint8
with the channel count the model wants; unreadable files are reported, never fatal."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..runtime import cpu_count

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".gif", ".tif", ".tiff", ".webp"}
)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, UnidentifiedImageError,
                 Image.DecompressionBombError)
"""What Pillow raises for a file it cannot or will not decode (DecompressionBombError is none
of the others)."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


EXIF_ORIENTATION = 0x0112
EXIF_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
"""How each EXIF orientation is turned upright (as Pillow's ImageOps.exif_transpose does),
applied after the draft decode, which exif_transpose would forbid by loading the pixels first."""
SIDEWAYS_TURNS = {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE,
                  Image.Transpose.ROTATE_90}


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    target = "L" if channels == 1 else "RGB"
    if image.mode == target:
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels become white, as an image viewer shows them
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit, 32-bit and float pixels: Pillow's own conversion truncates them to 8 bits
        array = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64), posinf=0.0), 0.0, None)
        peak = array.max() or 1.0
        image = Image.fromarray(np.round(array * 255.0 / peak).astype(np.uint8))
    return image.convert(target)


def box_in_image(box: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """Pillow's (left, top, right, bottom) for ``box`` = x1, y1, x2, y2 (inclusive) drawn on an
    image of ``box[4]`` x ``box[5]`` pixels, scaled to an image of ``width`` x ``height`` (test
    sets are often resized while their annotations keep the original sizes) and kept inside it."""
    x1, y1, x2, y2, drawn_width, drawn_height = box
    sx, sy = width / max(drawn_width, 1), height / max(drawn_height, 1)
    left, top = min(max(round(x1 * sx), 0), width - 1), min(max(round(y1 * sy), 0), height - 1)
    right = min(max(round((x2 + 1) * sx), left + 1), width)
    bottom = min(max(round((y2 + 1) * sy), top + 1), height)
    return left, top, right, bottom


def decode_image(path: str | os.PathLike, size: tuple[int, int] | None, channels: int,
                 box: Sequence[int] | None = None) -> np.ndarray:
    """Read one file as a (height, width, channels) uint8 array: cropped to ``box`` (see
    ``box_in_image``) if given, resized to ``size``."""
    with Image.open(path) as image:
        # read from the header, before any pixel: a phone's portrait photo is stored sideways
        turn = EXIF_TURNS.get(image.getexif().get(EXIF_ORIENTATION, 1))
        if box is not None:
            image = image.crop(box_in_image(box, image.width, image.height))
        elif size is not None:
            # lets the JPEG decoder skip straight to a nearby smaller scale (of the stored image)
            sideways = turn in SIDEWAYS_TURNS
            image.draft("RGB" if channels == 3 else "L", (size[0], size[1]) if sideways else (size[1], size[0]))
        image = to_mode(image, channels)
        if turn is not None:
            image = image.transpose(turn)
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def try_decode(path: Path, size: tuple[int, int] | None, channels: int,
               box: Sequence[int] | None = None) -> np.ndarray | str:
    """The pixels, or the reason the file cannot be read."""
    try:
        return decode_image(path, size, channels, box)
    except DECODE_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def exif_warnings_silenced() -> Iterator[None]:
    """The EXIF block is read for the orientation only, and Pillow warns of every damaged one:
    a line per photo. Enter it around the whole life of the decoding threads (warning filters
    are process-wide, so they cannot be set inside them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        yield


def decode_many(
    paths: Sequence[Path], size: tuple[int, int], channels: int, progress=None,
    boxes: np.ndarray | None = None, out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Decode files on all cores (Pillow releases the GIL while decoding and resizing) into
    ``out`` (allocated if not given), one row per path.

    Returns the rows, the positions of the readable files, and the unreadable files with the
    reason for each (their rows stay zero).
    """
    if out is None:
        out = np.zeros((len(paths), size[0], size[1], channels), dtype=np.uint8)
    kept: list[int] = []
    failed: dict[str, str] = {}
    workers = min(cpu_count(), 8)
    boxes_or_none = boxes if boxes is not None else [None] * len(paths)
    with exif_warnings_silenced(), ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p, b: try_decode(p, size, channels, b), paths, boxes_or_none)
        for index, result in enumerate(results):
            if isinstance(result, str):
                failed[str(paths[index])] = result
            else:
                out[index] = result
                kept.append(index)
            if progress is not None:
                progress(1)
    return out, kept, failed


def resize_images(images: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """Resize and convert an (N, H, W, C) uint8 array with the same Pillow path as files."""
    n, height, width, have = images.shape
    if (height, width) == tuple(size) and have == channels:
        return images
    out = np.empty((n, size[0], size[1], channels), dtype=np.uint8)
    mode = "L" if have == 1 else "RGB"
    for i in range(n):
        image = Image.fromarray(images[i, :, :, 0] if have == 1 else images[i], mode)
        image = to_mode(image, channels)
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        out[i] = np.asarray(image, dtype=np.uint8).reshape(size[0], size[1], channels)
    return out

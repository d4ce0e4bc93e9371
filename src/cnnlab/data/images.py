"""Image decoding with Pillow: any mode (grayscale, CMYK, palette, RGBA, 16-bit, float) becomes uint8
with the channel count the model wants; unreadable files are reported, never fatal. An image is
a file, or a file's bytes kept in a row of a table (``StoredImage``: a Hugging Face dataset's
parquet or Arrow file), read in bulk and decoded from memory, nothing written out."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

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


class ImageStore(Protocol):
    """A file holding many image files' bytes, one a row, read in bulk (a table's column)."""

    path: Path
    identity: bytes
    """What the decode cache's key holds for the file: its place, size, modification time and
    the column read, as they were when it was opened."""

    def images(self, rows: list[int]) -> Iterator[bytes | str]:
        """Each of ``rows`` (ascending) in turn: its image file's bytes, or why it has none."""


@dataclass(frozen=True)
class StoredImage:
    """The image file kept in row ``row`` (from 0) of ``store``, decoded as the file would be."""

    store: ImageStore
    row: int

    def __str__(self) -> str:
        return f"{self.store.path}:{self.row}"


ImageItem = Path | StoredImage
"""An image to decode: a file, or one kept in a table."""
Readable = str | os.PathLike | BinaryIO
"""What Pillow opens: a file's path, or its bytes."""
T = TypeVar("T")
CHUNK = 256
"""Images read ahead of decoding: only so many stored images' bytes are held at once."""


class StoredBytes(io.BytesIO):
    """A stored image's bytes, which Pillow's messages name as they name a file (by its repr):
    ``'FILE:ROW'``, not ``<_io.BytesIO object at 0x7f...>``."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __repr__(self) -> str:
        return repr(self.name)


def file_of(item: ImageItem) -> Path:
    """The file an image is, or is kept in."""
    return item.store.path if isinstance(item, StoredImage) else item


def map_images(items: Sequence[ImageItem], work: Callable[[Readable, int], T]) -> Iterator[tuple[int, T | str]]:
    """``work(image, index)`` for each of ``items`` on all cores (Pillow releases the GIL while
    decoding), as (index, result); (index, reason) for a stored image that has no bytes. Files
    come in order, then each table's rows in its order, a chunk at a time."""
    stores: dict[int, tuple[ImageStore, list[tuple[int, int]]]] = {}
    for index, item in enumerate(items):
        if isinstance(item, StoredImage):
            stores.setdefault(id(item.store), (item.store, []))[1].append((item.row, index))

    def readables() -> Iterator[tuple[int, Readable | str]]:
        yield from ((index, item) for index, item in enumerate(items) if not isinstance(item, StoredImage))
        for store, rows in stores.values():
            rows.sort()
            for (_, index), data in zip(rows, store.images([row for row, _ in rows]), strict=True):
                yield index, StoredBytes(data, str(items[index])) if isinstance(data, bytes) else data

    def run(index: int, image: Readable | str) -> T | str:
        return image if isinstance(image, str) else work(image, index)

    with ThreadPoolExecutor(max_workers=min(cpu_count(), 8)) as pool:
        pending = readables()
        while chunk := list(itertools.islice(pending, CHUNK)):
            indices = [index for index, _ in chunk]
            yield from zip(indices, pool.map(run, indices, [image for _, image in chunk]), strict=True)


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


def decode_image(path: Readable, size: tuple[int, int] | None, channels: int,
                 box: Sequence[int] | None = None) -> np.ndarray:
    """Read one file (or its bytes) as a (height, width, channels) uint8 array: cropped to ``box`` (see
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


def try_decode(path: Readable, size: tuple[int, int] | None, channels: int,
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
    items: Sequence[ImageItem], size: tuple[int, int], channels: int, progress=None,
    boxes: np.ndarray | None = None, out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Decode images on all cores into ``out`` (allocated if not given), one row per item.

    Returns the rows, the positions of the readable images (ascending), and the unreadable
    ones (by ``str(item)``) with the reason for each (their rows stay zero).
    """
    if out is None:
        out = np.zeros((len(items), size[0], size[1], channels), dtype=np.uint8)
    kept: list[int] = []
    failed: dict[str, str] = {}
    with exif_warnings_silenced():
        for index, result in map_images(items, lambda image, i: try_decode(
                image, size, channels, None if boxes is None else boxes[i])):
            if isinstance(result, str):
                failed[str(items[index])] = result
            else:
                out[index] = result
                kept.append(index)
            if progress is not None:
                progress(1)
    return out, sorted(kept), failed


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

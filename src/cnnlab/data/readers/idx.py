"""The IDX files of MNIST and Fashion-MNIST (gzip or raw)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..download import fetch
from ..sources import LAYOUTS, SOURCES, Layout, RawSplit, SourceData
from .folder import class_folders_hint

IDX_IMAGES, IDX_LABELS = 2051, 2049


MAX_IDX_BYTES = 2**31
"""Larger than any IDX data set (MNIST's training images are 47 MB): a cap on decompression."""


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip, refusing more than MAX_IDX_BYTES."""
    try:
        with path.open("rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as handle:
            data = handle.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataError(f"{path}: larger than {MAX_IDX_BYTES:,} bytes once unpacked; not an IDX data set")
    return data


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzip or raw): big-endian magic (its last byte is the number of dimensions),
    the dimension sizes, then unsigned bytes; every size is checked against the file's length
    before anything is shaped."""
    data = _read_bytes(path)
    kind = "images" if magic == IDX_IMAGES else "labels"
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataError(f"{path}: not an IDX file of {kind} (magic {found}, expected {magic})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = math.prod(dims)
    if len(data) - offset != count:
        state = "truncated IDX file" if len(data) - offset < count else "IDX file longer than its header says"
        raise DataError(f"{path}: {state}: {' x '.join(map(str, dims))} {kind} need {count:,} bytes; "
                        f"it holds {len(data) - offset:,}")
    if kind == "images" and min(dims[1:]) < 2:
        raise DataError(f"{path}: images of {' x '.join(map(str, dims[1:]))} pixels; an image needs "
                        "at least 2 rows and 2 columns")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (f"{stem}.gz", stem, stem.replace("-idx", ".idx") + ".gz",
                      stem.replace("-idx", ".idx")):
        if (folder / candidate).is_file():
            return folder / candidate
    raise DataError(f"{folder}: missing {stem}.gz (or {stem}){class_folders_hint(folder)}")


def read_idx_folder(path: Path | None, name: str, classes: list[str]) -> SourceData:
    folder = fetch(name, path)
    if not folder.is_dir():
        raise DataError.about("data", f" {name}:{folder}: expected the folder holding the four IDX files")
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"), IDX_IMAGES)
        labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"), IDX_LABELS)
        if len(images) != len(labels):
            raise DataError(f"{folder}: {split} has {len(images)} images but {len(labels)} labels")
        if labels.max(initial=0) >= len(classes):
            raise DataError(f"{folder}: {split} labels go up to {labels.max()}, expected < {len(classes)}")
        splits[split] = RawSplit(labels, [f"{split}/{i}" for i in range(len(labels))], images[..., None])
    return SourceData(classes, splits, 1)


def in_idx_layout(folder: Path) -> bool:
    return any((folder / f"train-images-idx3-ubyte{ext}").is_file() for ext in (".gz", ""))


LAYOUTS["mnist"] = Layout("MNIST", in_idx_layout)
LAYOUTS["fashion-mnist"] = Layout("Fashion-MNIST", in_idx_layout)


@SOURCES.register("mnist")
def read_mnist(path: Path | None) -> SourceData:
    """MNIST: the four IDX files (gzip or raw), 60,000 train and 10,000 test digits."""
    return read_idx_folder(path, "mnist", [str(c) for c in range(10)])


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@SOURCES.register("fashion-mnist")
def read_fashion_mnist(path: Path | None) -> SourceData:
    """Fashion-MNIST: MNIST's IDX layout, 10 clothing classes."""
    return read_idx_folder(path, "fashion-mnist", FASHION_CLASSES)

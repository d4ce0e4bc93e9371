"""CIFAR-10 and CIFAR-100: the official python tarballs (read in place) or their folders; the
pickles are read with the restricted unpickler (safe.py)."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..download import fetch
from ..safe import load_plain_pickle
from ..sources import LAYOUTS, SOURCES, Layout, RawSplit, SourceData, named_twice, with_nested
from .folder import class_folders_hint

MAX_MEMBER_BYTES = 2**29
"""CIFAR's largest file (CIFAR-100's train) is 155 MB: a cap on what one member may unpack to."""


def _cifar_files(path: Path, names: list[str], name: str) -> dict[str, bytes]:
    """The named pickles from the official tarball (read in place) or its extracted folder."""
    found: dict[str, bytes] = {}
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in names:
                        if member.size > MAX_MEMBER_BYTES:
                            raise DataError.about("data", f" {name}:{path}: {member.name} is {member.size:,} "
                                                  f"bytes, far more than a CIFAR file")
                        found[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError.about("data", f" {name}:{path}: not a readable tar archive ({exc})") from None
    else:
        for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
            for base in names:
                if base not in found and (folder / base).is_file():
                    found[base] = (folder / base).read_bytes()
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError.about("data", f" {name}:{path}: missing {', '.join(missing)} (expected the official "
                              f"python version of {name.upper()}){class_folders_hint(path)}")
    return found


def _batch(data: bytes, source: str) -> dict:
    batch = load_plain_pickle(data, source)
    if not isinstance(batch, dict):
        raise DataError(f"{source}: expected a pickled dict, found {type(batch).__name__}")
    return batch


def _integers(values, source: str, what: str, low: int, high: int) -> np.ndarray:
    """``values`` as an int64 array, refusing anything that is not whole numbers in [low, high]."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: {what} is not an array ({exc})") from None
    if array.dtype.kind not in "iu" or array.size and (array.min() < low or array.max() > high):
        shown = f"{array.dtype}" if array.dtype.kind not in "iu" else f"{array.min()}..{array.max()}"
        raise DataError(f"{source}: {what} must be whole numbers in {low}..{high}; found {shown}")
    return array.astype(np.int64)


def _class_names(meta: dict, key: bytes, source: str) -> list[str]:
    names = meta.get(key)
    if not isinstance(names, list | tuple) or not names:
        raise DataError(f"{source}: no list of class names under {key.decode()}")
    try:
        decoded = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError:
        raise DataError(f"{source}: {key.decode()} holds names that are not UTF-8 text") from None
    duplicates = named_twice(decoded)
    if duplicates:
        raise DataError(f"{source}: {key.decode()} names a class twice: {', '.join(duplicates)}")
    return decoded


def _cifar_images(batch: dict, source: str) -> np.ndarray:
    data = _integers(batch.get(b"data"), source, "data", 0, 255)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: expected rows of 3072 bytes, got shape {data.shape}")
    # rows are channel-major: 1024 red, 1024 green, 1024 blue
    return data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _labels(batch: dict, key: bytes, count: int, classes: int, source: str) -> np.ndarray:
    labels = _integers(batch.get(key, []), source, key.decode(), 0, classes - 1)
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{source}: {key.decode()} do not match the {count} images and {classes} classes")
    return labels


def holding_files(*names: str) -> Callable[[Path], bool]:
    """Whether a folder (or the one it nests) holds the files ``names``, as CIFAR's python
    version does: files, where a folder of class folders has folders."""
    return lambda folder: any(all((top / name).is_file() for name in names) for top in with_nested(folder))


LAYOUTS["cifar10"] = Layout("CIFAR-10", holding_files("batches.meta", "data_batch_1"))
LAYOUTS["cifar100"] = Layout("CIFAR-100", holding_files("meta", "train", "test"))


@SOURCES.register("cifar10")
def read_cifar10(path: Path | None) -> SourceData:
    """CIFAR-10: cifar-10-python.tar.gz or its folder (data_batch_1..5, test_batch, batches.meta)."""
    path = fetch("cifar10", path)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    files = _cifar_files(path, names, "cifar10")
    meta = _batch(files["batches.meta"], f"{path}:batches.meta")
    classes = _class_names(meta, b"label_names", f"{path}:batches.meta")
    splits = {}
    for split, members in (("train", names[:5]), ("test", ["test_batch"])):
        images, labels = [], []
        for member in members:
            batch = _batch(files[member], f"{path}:{member}")
            images.append(_cifar_images(batch, f"{path}:{member}"))
            labels.append(_labels(batch, b"labels", len(images[-1]), len(classes), f"{path}:{member}"))
        images, labels = np.concatenate(images), np.concatenate(labels)
        splits[split] = RawSplit(labels, [f"{split}/{i}" for i in range(len(labels))], images)
    return SourceData(classes, splits, 3)


@SOURCES.register("cifar100")
def read_cifar100(path: Path | None, label_mode: str = "fine") -> SourceData:
    """CIFAR-100: cifar-100-python.tar.gz or its folder (train, test, meta); 100 fine labels or
    20 coarse superclasses."""
    if label_mode not in ("fine", "coarse"):
        raise DataError.about("label_mode", f": must be fine or coarse; got '{label_mode}'")
    path = fetch("cifar100", path)
    files = _cifar_files(path, ["train", "test", "meta"], "cifar100")
    meta = _batch(files["meta"], f"{path}:meta")
    classes = _class_names(meta, f"{label_mode}_label_names".encode(), f"{path}:meta")
    splits = {}
    for split in ("train", "test"):
        batch = _batch(files[split], f"{path}:{split}")
        images = _cifar_images(batch, f"{path}:{split}")
        labels = _labels(batch, f"{label_mode}_labels".encode(), len(images), len(classes), f"{path}:{split}")
        splits[split] = RawSplit(labels, [f"{split}/{i}" for i in range(len(labels))], images)
    return SourceData(classes, splits, 3)

"""Data a user already has in hand: NumPy arrays in an .npz (the shapes of Keras'
``load_data()``), and a CSV listing image files and their labels."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import DataError
from ...io import write_atomic
from ...runtime import machine_memory
from ..cache import readable_size
from ..download import data_home, fetch
from ..images import is_image_file
from ..sources import SOURCES, RawSplit, SourceData, named_twice

SPLITS = ("train", "val", "test")
MAX_CLASSES = 100_000


def images_array(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) pixels as uint8: whole numbers 0..255, or floats in [0, 1]
    (scaled by 255); anything else is an error, never a silent cast."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[3] not in (1, 3) or min(array.shape[1:3]) < 2:
        raise DataError(f"{where}: expected images shaped (N, H, W) or (N, H, W, 1 or 3); got {array.shape}")
    if not len(array):
        raise DataError(f"{where}: holds no images")
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(f"{where}: pixel values must be 0..255; found {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or (array.size and (array.min() < 0 or array.max() > 1)):
            raise DataError(f"{where}: float pixels must be finite and in [0, 1] (or give uint8 0..255)")
        return np.round(array * 255).astype(np.uint8)
    raise DataError(f"{where}: pixels of type {array.dtype} (expected uint8, or floats in [0, 1])")


def labels_array(array: np.ndarray, count: int, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:  # Keras' CIFAR labels are (N, 1)
        array = array[:, 0]
    elif array.ndim == 2 and len(array) == count:
        if not (np.isin(array, (0, 1)).all() and (array.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: 2-D labels must be one-hot rows (a single 1 in each, as Keras' to_categorical "
                            f"writes), or give class indices; got shape {array.shape}")
        array = array.argmax(axis=1)
    if array.ndim != 1 or len(array) != count:
        raise DataError(f"{where}: expected {count} labels, one per image; got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: labels of type {array.dtype}; give class indices, whole numbers from 0")
    if array.dtype.kind == "f":  # as pandas and Keras' fit keep them: exact where whole
        if (fractional := array[~(np.isfinite(array) & (array == np.round(array)))]).size:
            raise DataError(f"{where}: labels must be whole numbers (class indices); found {fractional[0]:g}")
        array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise DataError(f"{where}: labels must be 0 or more (class indices); found {array.min()}")
    if array.size and array.max() >= MAX_CLASSES:
        raise DataError(f"{where}: a label of {array.max():,} would make {array.max() + 1:,} classes; at most "
                        f"{MAX_CLASSES:,}")
    return array.astype(np.int64)


@SOURCES.register("npz")
def read_npz(path: Path | None) -> SourceData:
    """NumPy arrays in an .npz: ``x_train``, ``y_train`` and optionally ``x_val``/``y_val`` and
    ``x_test``/``y_test`` (Keras' ``load_data()`` shapes: images (N, H, W[, C]) uint8, labels
    (N,) or (N, 1) class indices, or one-hot rows (N, classes)); a test set alone is evaluated
    on, not trained on. ``classes``, a name per index, is optional. Read without pickles."""
    path = fetch("npz", path)
    try:
        # zeros compress about 1000:1: the members' unpacked sizes, not the file's, must fit
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
        if unpacked > (memory := machine_memory()):
            raise DataError.about("data", f" npz:{path}: its arrays take {readable_size(unpacked)} unpacked; this machine "
                                  f"has {readable_size(memory)} of memory")
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    # MemoryError: a member's header may claim any shape, terabytes included
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, MemoryError) as exc:
        raise DataError.about("data", f" npz:{path}: not a readable .npz of arrays ({exc})") from None
    present = [split for split in SPLITS if f"x_{split}" in contents or f"y_{split}" in contents]
    if not present:
        raise DataError.about("data", f" npz:{path}: needs x_train and y_train (or x_test and y_test, to evaluate a run "
                              f"on); found {', '.join(contents) or 'nothing'}")
    splits, channels = {}, None
    for split in present:
        for have, lack in ((f"x_{split}", f"y_{split}"), (f"y_{split}", f"x_{split}")):
            if lack not in contents:
                raise DataError.about("data", f" npz:{path}: {have} without {lack}")
        images = images_array(contents[f"x_{split}"], f"{path}: x_{split}")
        labels = labels_array(contents[f"y_{split}"], len(images), f"{path}: y_{split}")
        if channels is not None and images.shape[3] != channels:
            raise DataError(f"{path}: x_{split} has {images.shape[3]} channels, x_train {channels}")
        channels = images.shape[3]
        splits[split] = RawSplit(labels, [f"{split}/{i}" for i in range(len(labels))], images)
    count = int(max(part.labels.max(initial=-1) for part in splits.values())) + 1
    if "classes" not in contents:
        return SourceData([str(c) for c in range(count)], splits, channels)
    return SourceData(class_names(contents["classes"], count, f"{path}: classes"), splits, channels)


def class_names(array: np.ndarray, count: int, where: str) -> list[str]:
    """The optional ``classes`` member: a name per class index, at least one per label used."""
    if array.ndim != 1 or array.dtype.kind != "U":
        raise DataError(f"{where}: class names must be text, one per class; got {array.dtype} shaped {array.shape}")
    names = [str(name) for name in array]
    if len(names) < count:
        raise DataError(f"{where}: names {len(names)} classes; the labels go up to {count - 1}")
    twice = named_twice(names)
    if twice or "" in names:
        raise DataError(f"{where}: names a class twice: {', '.join(twice)}" if twice else f"{where}: an empty class name")
    return names


@SOURCES.register("csv")
def read_csv_listing(path: Path | None) -> SourceData:
    """A CSV with a header naming ``path`` and ``label`` columns, and optionally ``split``
    (train, val or test; test rows alone are a test set to evaluate on): image files (relative
    to the CSV's folder) and their class names. Or a table of pixels (``pixel_table``), its
    labels the class names."""
    path = fetch("csv", path)
    if (table := pixel_table(path)) is not None:
        images, labels = table
        if labels is None:
            raise DataError.about("data", f" csv:{path}: a table of pixels with no label column (a competition's "
                                  "test.csv): nothing to train or evaluate on (cnnlab predict classifies it)")
        names = [str(value) for value in sorted(set(labels.tolist()))]
        index = {name: i for i, name in enumerate(names)}
        return SourceData(names, {"train": RawSplit(np.asarray([index[str(v)] for v in labels.tolist()]),
                                                    [f"train/{i}" for i in range(len(labels))], images)}, 1)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError.about("data", f" csv:{path}: unreadable CSV ({exc})") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DataError.about("data", f" csv:{path}: expected a header with path and label columns (and split), "
                              "then one line per image")
    entries = {split: [] for split in SPLITS}
    for line, row in enumerate(rows, start=2):
        file, label, split = row.get("path"), row.get("label"), (row.get("split") or "train").strip()
        if not file or label is None or not label.strip():
            raise DataError(f"{path}, line {line}: a row needs a path and a label")
        if split not in SPLITS:
            raise DataError(f"{path}, line {line}: split must be train, val or test; got {split!r}")
        relative = PurePosixPath(file.strip().replace("\\", "/"))  # a listing written on Windows
        if relative.is_absolute() or ".." in relative.parts:
            raise DataError(f"{path}, line {line}: {file!r} would be outside {path.parent}")
        if not is_image_file(Path(relative.name)):
            raise DataError(f"{path}, line {line}: {file!r} is not an image file name")
        entries[split].append((path.parent / relative, label.strip()))
    classes = sorted({label for items in entries.values() for _, label in items})
    index = {name: i for i, name in enumerate(classes)}
    splits = {}
    for split, items in entries.items():
        if items:
            paths = [p for p, _ in items]
            ids = [p.relative_to(path.parent).as_posix() for p in paths]
            splits[split] = RawSplit(np.asarray([index[label] for _, label in items]), ids, paths=paths)
    return SourceData(classes, splits, 3)


PIXEL_COLUMN = re.compile(r"pixel(\d+)")


def pixel_table(path: Path) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Kaggle's MNIST-style CSV (its Digit Recognizer's train.csv: label, pixel0..pixel783;
    Fashion-MNIST's: label, pixel1..pixel784; a competition's test.csv: the pixels alone): a
    row per square greyscale image, pixels 0..255 (or floats in [0, 1]) in the order of the
    columns' numbers. Its images (N, side, side, 1) uint8 and labels (None without a label
    column); None for a CSV whose columns are not a label and pixels."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = [name.strip().lower() for name in next(csv.reader(handle), [])]
            pixels = sorted((int(match[1]), column) for column, name in enumerate(header)
                            if (match := PIXEL_COLUMN.fullmatch(name)))
            if not pixels or len(pixels) + ("label" in header) != len(header):
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # of a table without rows, said below
                # float32 holds 0..255 and labels exactly, in half float64's memory (42,000 MNIST rows: 132 MB)
                table = np.loadtxt(handle, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None
    except ValueError:
        table = None
    if table is None or (len(table) and table.shape[1] != len(header)):
        raise DataError(f"{path}: {_first_bad_row(path, len(header))}")
    side = math.isqrt(len(pixels))
    if side * side != len(pixels):
        raise DataError(f"{path}: {len(pixels)} pixel columns, not a square image's (28x28 is 784)")
    if not len(table):
        raise DataError(f"{path}: holds no images, only its header")
    values = table[:, [column for _, column in pixels]].reshape(-1, side, side, 1)
    whole = np.isfinite(values).all() and (values == np.round(values)).all()
    images = images_array(values.astype(np.int64) if whole else values, str(path))
    if "label" not in header:
        return images, None
    labels = table[:, header.index("label")]
    if (fractional := labels[labels != np.round(labels)]).size:
        raise DataError(f"{path}: labels must be whole numbers; found {fractional[0]:g}")
    return images, labels.astype(np.int64)


def _first_bad_row(path: Path, columns: int) -> str:
    """Where a table of pixels is not numbers: its first such line, and why."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if line == 1:
                continue
            if len(row) != columns:
                return f"line {line}: {len(row)} values, the header names {columns} columns"
            for value in row:
                try:
                    float(value)
                except ValueError:
                    return f"line {line}: {value[:20]!r} is not a number"
    return "not a table of numbers"


def arrays_spec(data, classes: list[str] | None = None, splits: tuple[str, ...] = ("train", "val")) -> str:
    """The ``npz:`` spec of arrays given in Python: ``(x, y)``, or ``((x, y), (x_val, y_val))``
    where ``splits`` has two names (Keras' ``load_data()`` shapes); the pairs become those
    splits. With ``classes``, the labels are indices of those classes, saved with them. The
    arrays are checked, then saved once under the data home, named by their content, so the
    run's config names a file that ``evaluate`` can read later."""
    shapes = "(x, y)" + (" or ((x, y), (x_val, y_val))" if len(splits) > 1 else "")
    try:
        if not isinstance(data, tuple | list):  # a dict of two arrays has a len of 2 too
            raise TypeError
        pairs = [data] if len(data) == 2 and not isinstance(data[0], tuple | list) else list(data)
        if not 1 <= len(pairs) <= len(splits) or any(len(pair) != 2 for pair in pairs):
            raise TypeError
    except TypeError:
        raise DataError(f"data=: give {shapes} as arrays") from None
    arrays = {}
    for split, (images, labels) in zip(splits, pairs, strict=False):
        images = images_array(np.asarray(images), f"data= x_{split}")
        arrays[f"x_{split}"] = images
        arrays[f"y_{split}"] = labels_array(labels, len(images), f"data= y_{split}")
        if classes is not None and arrays[f"y_{split}"].max(initial=0) >= len(classes):
            raise DataError(f"data= y_{split}: labels must be indices of the {len(classes)} classes "
                            f"(0-{len(classes) - 1}); found {arrays[f'y_{split}'].max()}")
        if split == "train" and arrays["y_train"].max(initial=0) == 0:
            raise DataError("data= y_train: every label is 0: one class; a classifier needs two or more")
    if classes is not None:
        arrays["classes"] = np.asarray(classes, dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    content = buffer.getvalue()
    path = data_home() / "arrays" / f"{hashlib.sha256(content).hexdigest()[:16]}.npz"
    if not path.is_file():
        write_atomic(path, lambda handle: handle.write(content))
    return f"npz:{path}"

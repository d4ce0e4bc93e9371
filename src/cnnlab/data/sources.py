"""Data sources: ``NAME`` or ``NAME:PATH`` strings resolved through a registry. A source reads
its files as they are published and returns the raw splits; decoding at the training size,
splitting and batching happen in one place for all of them (dataset.py)."""

from __future__ import annotations

import gzip
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import Registry
from .images import is_image_file


@dataclass
class RawSplit:
    """One split as the source has it: pixels in memory, or files still to decode."""

    labels: np.ndarray
    ids: list[str]
    images: np.ndarray | None = None
    """(N, H, W, C) uint8, for sources that ship pixels."""
    paths: list[Path] | None = None
    """Image files, for sources that ship files."""
    boxes: np.ndarray | None = None
    """(N, 6) regions to crop before resizing (GTSRB's sign boxes): x1, y1, x2, y2 (inclusive)
    on an image of the given width and height, scaled to each file's actual size."""
    groups: np.ndarray | None = None
    """Samples of one group (GTSRB's track of 30 shots of one sign) stay on one side of a split."""
    rows: np.ndarray | None = None
    """Which rows of ``images`` are this split's samples (None: all of them, in order), so that
    splitting never copies the pixels."""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a split holds either images or paths")
        if self.images is not None and self.rows is None:
            self.rows = np.arange(len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> RawSplit:
        indices = np.asarray(indices, dtype=np.int64)
        return RawSplit(
            self.labels[indices],
            [self.ids[i] for i in indices],
            self.images,
            None if self.paths is None else [self.paths[i] for i in indices],
            None if self.boxes is None else self.boxes[indices],
            None if self.groups is None else self.groups[indices],
            None if self.rows is None else self.rows[indices],
        )


@dataclass
class SourceData:
    classes: list[str]
    splits: dict[str, RawSplit]
    """Always "train"; "val" and "test" where the source defines them."""
    channels: int
    """The channel count the source's images naturally have."""
    notes: list[str] = field(default_factory=list)


SourceReader = Callable[..., SourceData]
"""reader(path, **options) -> SourceData"""
SOURCES: Registry[SourceReader] = Registry("data source")


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``mnist:/data/mnist`` -> ("mnist", Path("/data/mnist")); ``digits`` -> ("digits", None)."""
    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    SOURCES.get(name)
    if sep and not path:
        raise DataError(f"--data {spec}: empty path after '{name}:'")
    return name, Path(path).expanduser() if path else None


def source_options(name: str) -> list[str]:
    return [p for p in inspect.signature(SOURCES.get(name)).parameters if p != "path"]


def read_source(spec: str, options: dict | None = None) -> SourceData:
    name, path = parse_spec(spec)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    valid = source_options(name)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise DataError(f"--data {spec}: the {name} source has no option '{unknown[0]}'; "
                        f"its options: {', '.join(valid) or 'none'}")
    return SOURCES.get(name)(path, **options)


@SOURCES.register("digits")
def read_digits(path: Path | None) -> SourceData:
    """scikit-learn's bundled 8x8 digits: no download at all."""
    if path is not None:
        raise DataError("--data digits: takes no path (it ships with scikit-learn)")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    ids = [f"digits/{i}" for i in range(len(images))]
    return SourceData([str(c) for c in range(10)], {"train": RawSplit(bunch.target, ids, images)}, 1)


IDX_IMAGES, IDX_LABELS = 2051, 2049


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzip or raw): big-endian magic, dimension sizes, then unsigned bytes."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataError(f"{path}: not an IDX file of {'images' if magic == IDX_IMAGES else 'labels'} "
                        f"(magic {found}, expected {magic})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - offset != count:
        raise DataError(f"{path}: truncated IDX file ({len(data) - offset} of {count} bytes)")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (f"{stem}.gz", stem, stem.replace("-idx", ".idx") + ".gz",
                      stem.replace("-idx", ".idx")):
        if (folder / candidate).is_file():
            return folder / candidate
    raise DataError(f"{folder}: missing {stem}.gz (or {stem})")


def read_idx_folder(path: Path | None, name: str, classes: list[str]) -> SourceData:
    from .download import fetch

    folder = fetch(name, path)
    if not folder.is_dir():
        raise DataError(f"--data {name}:{folder}: expected the folder holding the four IDX files")
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


@SOURCES.register("mnist")
def read_mnist(path: Path | None) -> SourceData:
    """MNIST: the four IDX files (gzip or raw), 60,000 train and 10,000 test digits."""
    return read_idx_folder(path, "mnist", [str(c) for c in range(10)])


def list_class_folders(root: Path) -> tuple[list[str], list[Path], np.ndarray, list[str]]:
    """Class folders sorted by name and their image files; notes on empty class folders."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels, notes = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            notes.append(f"{root / name}: empty class folder (no image files)")
        paths += files
        labels += [label] * len(files)
    return classes, paths, np.asarray(labels, dtype=np.int64), notes


@SOURCES.register("folder")
def read_folder(path: Path | None) -> SourceData:
    """One sub-folder per class (names sorted), or train/ val/ test/ each holding class folders."""
    from .download import fetch

    root = fetch("folder", path)
    if not root.is_dir():
        raise DataError(f"--data folder:{root}: not a folder")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": root}
    classes: list[str] | None = None
    splits, notes = {}, []
    for split, folder in split_dirs.items():
        names, paths, labels, empty = list_class_folders(folder)
        notes += empty
        if classes is None:
            classes = names
        elif names != classes:
            raise DataError(f"{folder}: class folders {names} differ from train's {classes}")
        ids = [p.relative_to(root).as_posix() for p in paths]
        splits[split] = RawSplit(labels, ids, paths=paths)
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected one folder of images per class)")
    if not len(splits["train"]):
        raise DataError(f"{root}: no image files in the class folders")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return SourceData(classes, splits, 3, notes)

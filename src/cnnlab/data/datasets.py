"""Readers for the published data sets of SPEC.md section 2, each in its official layout
(and GTSRB's common Kaggle re-packaging). Archives are read in place (CIFAR) or extracted
safely beside themselves once (GTSRB, Caltech-256)."""

from __future__ import annotations

import csv
import re
import tarfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from .download import fetch
from .images import is_image_file
from .safe import extract_archive, load_plain_pickle
from .sources import SOURCES, RawSplit, SourceData, read_idx_folder

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


@SOURCES.register("fashion-mnist")
def read_fashion_mnist(path: Path | None) -> SourceData:
    """Fashion-MNIST: MNIST's IDX layout, 10 clothing classes."""
    return read_idx_folder(path, "fashion-mnist", FASHION_CLASSES)


def _cifar_files(path: Path, names: list[str], name: str) -> dict[str, bytes]:
    """The named pickles from the official tarball (read in place) or its extracted folder."""
    found: dict[str, bytes] = {}
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in names:
                        found[base] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"--data {name}:{path}: not a readable tar archive ({exc})") from None
    else:
        for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
            for base in names:
                if base not in found and (folder / base).is_file():
                    found[base] = (folder / base).read_bytes()
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(f"--data {name}:{path}: missing {', '.join(missing)} (expected the official "
                        f"python version of {name.upper()})")
    return found


def _cifar_images(batch: dict, source: str) -> np.ndarray:
    data = np.asarray(batch.get(b"data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{source}: expected rows of 3072 bytes, got shape {data.shape}")
    # rows are channel-major: 1024 red, 1024 green, 1024 blue
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _labels(batch: dict, key: bytes, count: int, classes: int, source: str) -> np.ndarray:
    labels = np.asarray(batch.get(key, []), dtype=np.int64)
    if len(labels) != count or (count and (labels.min() < 0 or labels.max() >= classes)):
        raise DataError(f"{source}: {key.decode()} do not match the {count} images and {classes} classes")
    return labels


@SOURCES.register("cifar10")
def read_cifar10(path: Path | None) -> SourceData:
    """CIFAR-10: cifar-10-python.tar.gz or its folder (data_batch_1..5, test_batch, batches.meta)."""
    path = fetch("cifar10", path)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    files = _cifar_files(path, names, "cifar10")
    meta = load_plain_pickle(files["batches.meta"], f"{path}:batches.meta")
    classes = [c.decode() for c in meta[b"label_names"]]
    splits = {}
    for split, members in (("train", names[:5]), ("test", ["test_batch"])):
        images, labels = [], []
        for member in members:
            batch = load_plain_pickle(files[member], f"{path}:{member}")
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
        raise DataError(f"--label-mode: must be fine or coarse; got '{label_mode}'")
    path = fetch("cifar100", path)
    files = _cifar_files(path, ["train", "test", "meta"], "cifar100")
    meta = load_plain_pickle(files["meta"], f"{path}:meta")
    classes = [c.decode() for c in meta[f"{label_mode}_label_names".encode()]]
    splits = {}
    for split in ("train", "test"):
        batch = load_plain_pickle(files[split], f"{path}:{split}")
        images = _cifar_images(batch, f"{path}:{split}")
        labels = _labels(batch, f"{label_mode}_labels".encode(), len(images), len(classes), f"{path}:{split}")
        splits[split] = RawSplit(labels, [f"{split}/{i}" for i in range(len(labels))], images)
    return SourceData(classes, splits, 3)


def _unpack(path: Path) -> Path:
    """A folder as given, or an archive extracted once beside itself."""
    if path.is_file():
        return extract_archive(path, path.with_name(path.name.split(".")[0] + "-extracted"))
    return path


def _read_csv(path: Path, delimiter: str) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None


def _gtsrb_rows(rows: list[dict], folder: Path, source: Path, track_of) -> RawSplit:
    paths, labels, boxes, groups = [], [], [], []
    try:
        for row in rows:
            name = row.get("Filename") or row["Path"]
            paths.append(folder / name)
            labels.append(int(row["ClassId"]))
            boxes.append([int(row[key]) for key in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "Width", "Height")])
            groups.append(track_of(labels[-1], name))
    except (KeyError, ValueError) as exc:
        raise DataError(f"{source}: a row lacks a valid {exc} column") from None
    ids = [p.relative_to(source).as_posix() for p in paths]
    return RawSplit(np.asarray(labels), ids, paths=paths, boxes=np.asarray(boxes).reshape(-1, 6),
                    groups=np.asarray(groups))


def _find(root: Path, relative: str, depth: int = 3) -> Path | None:
    """``root/relative``, or the first match up to ``depth`` folders down (archives nest)."""
    for level in range(depth + 1):
        for match in sorted(root.glob("/".join(["*"] * level + [relative]))):
            return match
    return None


def _official_training(training: Path, root: Path) -> RawSplit:
    rows_by_class = []
    for folder in sorted(p for p in training.iterdir() if p.is_dir()):
        annotation = folder / f"GT-{folder.name}.csv"
        if not annotation.is_file():
            raise DataError(f"{folder}: missing {annotation.name}")
        rows_by_class.append(_gtsrb_rows(_read_csv(annotation, ";"), folder, root,
                                         lambda c, name: c * 100_000 + int(name.split("_")[0])))
    return _concat(rows_by_class)


@SOURCES.register("gtsrb")
def read_gtsrb(path: Path | None, roi_crop: bool = False) -> SourceData:
    """GTSRB: the official layout (Final_Training/Images/000NN or the fixed zip's Training/000NN,
    each with GT-000NN.csv; Final_Test/Images with GT-final_test.csv), or the Kaggle Train/<id>/
    + Train.csv, Test/ + Test.csv layout; a test set alone (Final_Test/ or Test.csv) is read as
    a test split. Training images come in tracks of 30 shots of one sign, so the validation
    split is made by track. ``roi_crop`` crops each image to its sign box, scaled to the file's
    actual size (re-distributed test sets are often resized)."""
    root = fetch("gtsrb", path)
    root = _unpack(root) if root.is_file() else root
    splits = {}
    training = _find(root, "Final_Training/Images") or _find(root, "Training")
    kaggle_train, kaggle_test = _find(root, "Train.csv"), _find(root, "Test.csv")
    if training is not None:
        splits["train"] = _official_training(training, root)
    elif kaggle_train is not None:
        track = lambda c, name: c * 100_000 + int(Path(name).stem.split("_")[1])  # noqa: E731
        splits["train"] = _gtsrb_rows(_read_csv(kaggle_train, ","), kaggle_train.parent, root, track)
    truth = _find(root, "GT-final_test.csv", depth=4)
    test_images = (_find(root, "Final_Test/Images") or _find(root, "Images", depth=0)
                   or (truth.parent if truth is not None else None))
    if truth is not None and test_images is not None:
        splits["test"] = _gtsrb_rows(_read_csv(truth, ";"), test_images, root, lambda c, n: 0)
    elif kaggle_test is not None:
        splits["test"] = _gtsrb_rows(_read_csv(kaggle_test, ","), kaggle_test.parent, root, lambda c, n: 0)
    if not splits:
        raise DataError(f"--data gtsrb:{path}: expected Final_Training/Images/ or Training/ "
                        "(official layout), Train.csv with Train/ (Kaggle layout), or a test set "
                        "alone: Final_Test/Images/ with GT-final_test.csv, or Test.csv with Test/")
    count = int(max(split.labels.max(initial=-1) for split in splits.values())) + 1
    if not roi_crop:
        for split in splits.values():
            split.boxes = None
    return SourceData([f"{c:02d}" for c in range(count)], splits, 3)


def _concat(parts: list[RawSplit]) -> RawSplit:
    return RawSplit(np.concatenate([p.labels for p in parts]), [i for p in parts for i in p.ids],
                    paths=[x for p in parts for x in p.paths],
                    boxes=np.concatenate([p.boxes for p in parts]),
                    groups=np.concatenate([p.groups for p in parts]))


CALTECH_FOLDER = re.compile(r"^\d{3}\.")


@SOURCES.register("caltech256")
def read_caltech256(path: Path | None, categories: int | list | None = None,
                    include_clutter: bool = False) -> SourceData:
    """Caltech-256: 256_ObjectCategories/001.ak47/... (folder or its tar). ``categories``: the
    first N categories, or a list of names (``ak47`` or ``001.ak47``); the 257.clutter class is
    left out unless ``include_clutter``."""
    root = fetch("caltech256", path)
    root = _unpack(root) if root.is_file() else root
    if not any(CALTECH_FOLDER.match(p.name) for p in root.iterdir()):
        nested = _find(root, "256_ObjectCategories")
        if nested is None:
            raise DataError(f"--data caltech256:{path}: expected 256_ObjectCategories/ with folders like 001.ak47")
        root = nested
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and CALTECH_FOLDER.match(p.name))
    if not include_clutter:
        folders = [f for f in folders if not f.endswith(".clutter")]
    if isinstance(categories, int):
        folders = folders[:categories]
    elif categories:
        wanted = {str(c) for c in categories}
        chosen = [f for f in folders if f in wanted or f.split(".", 1)[1] in wanted]
        missing = wanted - {f for f in chosen} - {f.split(".", 1)[1] for f in chosen}
        if missing:
            raise DataError(f"--categories: not in {root}: {', '.join(sorted(missing))}")
        folders = chosen
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in (root / folder).iterdir() if p.is_file() and is_image_file(p))
        paths += files
        labels += [label] * len(files)
    ids = [p.relative_to(root).as_posix() for p in paths]
    return SourceData(folders, {"train": RawSplit(np.asarray(labels), ids, paths=paths)}, 3)


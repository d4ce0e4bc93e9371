"""GTSRB in its official layout and the Kaggle re-packaging (Stallkamp et al., IJCNN 2011)."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ...errors import DataError, listed
from ..download import fetch
from ..images import ImageItem, is_image_file
from ..sources import LAYOUTS, SOURCES, Layout, RawSplit, SourceData, with_nested
from .layout import find_below, read_csv, unpacked

GTSRB_SIGNS = (
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "end of speed limit 80", "speed limit 100", "speed limit 120", "no passing",
    "no passing for vehicles over 3.5 t", "right of way at the next junction", "priority road",
    "yield", "stop", "no vehicles", "vehicles over 3.5 t prohibited", "no entry", "general caution",
    "dangerous curve to the left", "dangerous curve to the right", "double curve", "bumpy road",
    "slippery road", "road narrows on the right", "road works", "traffic signals", "pedestrians",
    "children crossing", "bicycles crossing", "ice or snow", "wild animals crossing",
    "end of all speed and passing limits", "turn right ahead", "turn left ahead", "ahead only",
    "go straight or right", "go straight or left", "keep right", "keep left", "roundabout",
    "end of no passing", "end of no passing for vehicles over 3.5 t",
)
"""What each of GTSRB's ClassIds 0..42 is (the German road signs of Stallkamp et al., 2011)."""
GTSRB_CLASSES = len(GTSRB_SIGNS)
BOX_COLUMNS = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "Width", "Height")


def _annotated_rows(annotation: Path, delimiter: str | None, folder: Path,
                    read=lambda row, name: None) -> Iterator[tuple[str, PurePosixPath, list[int], Any]]:
    """Each row of a GTSRB annotation CSV, checked (a bad one is named by its line): where it
    is, the file it names (inside ``folder``), its sign box (x1, y1, x2, y2, width, height)
    and what ``read`` takes from the row and the file's name."""
    rows = read_csv(annotation, delimiter)
    if not rows:
        raise DataError(f"{annotation}: no rows (expected a header line and one line per image)")
    for line, row in enumerate(rows, start=2):
        where = f"{annotation}, line {line}"
        try:
            name = row.get("Filename") or row.get("Path")
            if not isinstance(name, str) or not name:
                raise KeyError("Filename" if delimiter == ";" else "Path")
            box = [int(row[key]) for key in BOX_COLUMNS]
            taken = read(row, name)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise DataError(f"{where}: not a valid row ({type(exc).__name__}: {exc})") from None
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise DataError(f"{where}: the file {name!r} would be outside {folder}")
        x1, y1, x2, y2, width, height = box
        if width < 1 or height < 1 or not (0 <= x1 <= x2 and 0 <= y1 <= y2):
            raise DataError(f"{where}: the box {x1},{y1} to {x2},{y2} on {width}x{height} is not a box")
        yield where, relative, box, taken


def present(path: Path, listings: dict[Path, dict[str, Path]]) -> Path:
    """``path``, or where it is not there, the image of its name in another format beside it
    (GTSRB shared as PNGs converted from its .ppm files, its CSVs unchanged). ``listings``:
    each folder's images by stem, listed once. A name the system refuses (over 255 bytes) is
    kept, for the decoder to list as unreadable."""
    try:
        if path.exists():
            return path
        if path.parent not in listings:
            images = sorted(p for p in path.parent.iterdir() if is_image_file(p)) if path.parent.is_dir() else []
            listings[path.parent] = {p.stem: p for p in reversed(images)}
    except OSError:
        return path
    return listings[path.parent].get(path.stem, path)


def _gtsrb_rows(annotation: Path, delimiter: str, folder: Path, root: Path, track_of) -> RawSplit:
    """One RawSplit from a GTSRB annotation CSV."""
    paths, labels, boxes, groups = [], [], [], []
    listings: dict[Path, dict[str, Path]] = {}
    read = lambda row, name: (int(row["ClassId"]), track_of(int(row["ClassId"]), name))  # noqa: E731
    for where, relative, box, (label, track) in _annotated_rows(annotation, delimiter, folder, read):
        if not 0 <= label < GTSRB_CLASSES:
            raise DataError(f"{where}: ClassId {label} is not one of GTSRB's {GTSRB_CLASSES} classes (0..42)")
        paths.append(present(folder / relative, listings))
        labels.append(label)
        boxes.append(box)
        groups.append(track)
    ids = [p.relative_to(root).as_posix() for p in paths]
    return RawSplit(np.asarray(labels), ids, paths=paths, boxes=np.asarray(boxes).reshape(-1, 6),
                    groups=np.asarray(groups))


def sign_boxes(annotation: Path, paths: Sequence[ImageItem]) -> np.ndarray:
    """The sign box of each of ``paths``, (N, 6) as ``box_in_image`` takes them, from a GTSRB
    annotation CSV (GT-000NN.csv or GT-final_test.csv with ';', Kaggle's Test.csv or Train.csv
    with ','; a ClassId is not needed). A row names its file relative to the CSV's folder, or
    by a file name no other row has; an image no row names is refused, by name."""
    by_path, by_name = {}, collections.defaultdict(list)
    by_stem_path, by_stem = collections.defaultdict(list), collections.defaultdict(list)
    for _, relative, box, _ in _annotated_rows(annotation, None, annotation.parent):
        where = (annotation.parent / relative).resolve()
        by_path[where] = box
        by_name[relative.name].append(box)
        # GTSRB is often shared as PNGs converted from its .ppm files, its CSVs unchanged
        by_stem_path[where.with_suffix("")].append(box)
        by_stem[relative.stem].append(box)
    boxes, missing = [], []
    for path in paths:
        where = Path(str(path)).resolve()  # a stored image's FILE:ROW is no row's
        box = by_path.get(where)
        if box is None:  # by a name, a path without its suffix, a name without it: where one row has it
            box = next((found[0] for found in (by_name.get(where.name), by_stem_path.get(where.with_suffix("")),
                                               by_stem.get(where.stem)) if found and len(found) == 1), None)
        if box is None:
            missing.append(str(path))
        boxes.append(box)
    if missing:
        raise DataError.about("boxes", f" {annotation}: no row for {len(missing)} of the images "
                              f"({listed(missing, 3)}); each needs its Filename or Path and its box")
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 6)


def _official_training(training: Path, root: Path) -> RawSplit:
    rows_by_class = []
    for folder in sorted(p for p in training.iterdir() if p.is_dir()):
        annotation = folder / f"GT-{folder.name}.csv"
        if not annotation.is_file():
            raise DataError(f"{folder}: missing {annotation.name}")
        rows_by_class.append(_gtsrb_rows(annotation, ";", folder, root,
                                         lambda c, name: c * 100_000 + int(name.split("_")[0])))
    return _concat(rows_by_class)


GTSRB_FOLDERS = ("Final_Training", "Final_Test")
GTSRB_CSVS = ("Train.csv", "Test.csv", "GT-final_test.csv")


def in_gtsrb_layout(folder: Path) -> bool:
    """GTSRB's folders or annotation CSVs (their header names ClassId) at the top of
    ``folder``, or of the one folder it holds (the official zips unpack to GTSRB/)."""
    tops = with_nested(folder)
    return any((top / name).is_dir() for top in tops for name in GTSRB_FOLDERS) or any(
        (top / name).is_file() and b"ClassId" in _first_line(top / name) for top in tops for name in GTSRB_CSVS)


def _first_line(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.readline(4096)


LAYOUTS["gtsrb"] = Layout("GTSRB", in_gtsrb_layout)


@SOURCES.register("gtsrb")
def read_gtsrb(path: Path | None, roi_crop: bool = False) -> SourceData:
    """GTSRB: the official layout (Final_Training/Images/000NN or the fixed zip's Training/000NN,
    each with GT-000NN.csv; Final_Test/Images with GT-final_test.csv), or the Kaggle Train/<id>/
    + Train.csv, Test/ + Test.csv layout; a test set alone (Final_Test/ or Test.csv) is read as
    a test split. Training images come in tracks of 30 shots of one sign, so the validation
    split is made by track. ``roi_crop`` crops each image to its sign box, scaled to the file's
    actual size (re-distributed test sets are often resized)."""
    root = fetch("gtsrb", path)
    root = unpacked(root) if root.is_file() else root
    splits = {}
    training = find_below(root, "Final_Training/Images") or find_below(root, "Training")
    kaggle_train, kaggle_test = find_below(root, "Train.csv"), find_below(root, "Test.csv")
    if training is not None:
        splits["train"] = _official_training(training, root)
    elif kaggle_train is not None:
        track = lambda c, name: c * 100_000 + int(Path(name).stem.split("_")[1])  # noqa: E731
        splits["train"] = _gtsrb_rows(kaggle_train, ",", kaggle_train.parent, root, track)
    truth = find_below(root, "GT-final_test.csv", depth=4)
    test_images = (find_below(root, "Final_Test/Images") or find_below(root, "Images", depth=0)
                   or (truth.parent if truth is not None else None))
    if truth is not None and test_images is not None:
        splits["test"] = _gtsrb_rows(truth, ";", test_images, root, lambda c, n: 0)
    elif kaggle_test is not None:
        splits["test"] = _gtsrb_rows(kaggle_test, ",", kaggle_test.parent, root, lambda c, n: 0)
    if not splits:
        raise DataError.about("data", f" gtsrb:{path}: expected Final_Training/Images/ or Training/ "
                              "(official layout), Train.csv with Train/ (Kaggle layout), or a test set "
                              "alone: Final_Test/Images/ with GT-final_test.csv, or Test.csv with Test/")
    count = int(max(split.labels.max(initial=-1) for split in splits.values())) + 1
    if not roi_crop:
        for split in splits.values():
            split.boxes = None
    classes = [f"{c:02d}" for c in range(count)]
    return SourceData(classes, splits, 3, descriptions={name: GTSRB_SIGNS[c] for c, name in enumerate(classes)})


def _concat(parts: list[RawSplit]) -> RawSplit:
    return RawSplit(np.concatenate([p.labels for p in parts]), [i for p in parts for i in p.ids],
                    paths=[x for p in parts for x in p.paths],
                    boxes=np.concatenate([p.boxes for p in parts]),
                    groups=np.concatenate([p.groups for p in parts]))

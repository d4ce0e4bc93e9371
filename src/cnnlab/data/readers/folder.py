"""A folder of class folders, as Keras' image_dataset_from_directory reads it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...io import RUN_CLASSES, is_run_directory
from ..download import fetch
from ..images import is_image_file
from ..sources import SOURCES, RawSplit, SourceData, layouts_hint, layouts_of
from .layout import unpacked

NOT_CLASSES = frozenset({"__MACOSX"})
"""Folders that are never a class: a Mac's resource forks in the zips it makes."""


def list_class_folders(root: Path) -> tuple[list[str], list[Path], np.ndarray, list[str]]:
    """Class folders sorted by name and their image files; notes on empty class folders and on
    folders of cnnlab runs left out (``--data .`` puts the runs in ./runs by default)."""
    classes, paths, labels, notes = [], [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and p.name not in NOT_CLASSES):
        entries = list(folder.rglob("*"))  # one walk: it finds the runs and the images alike
        if is_run_directory(folder) or any(entry.name == RUN_CLASSES and entry.parent.parent == folder
                                           and is_run_directory(entry.parent) for entry in entries):
            notes.append(f"{folder}: left out: it holds cnnlab runs (train --out), not images of a class")
            continue
        files = sorted(entry for entry in entries if is_image_file(entry) and entry.is_file())
        if not files:
            notes.append(f"{folder}: empty class folder (no image files)")
        paths += files
        labels += [len(classes)] * len(files)
        classes.append(folder.name)
    return classes, paths, np.asarray(labels, dtype=np.int64), notes


def gtsrb_layout(root: Path) -> list[str]:
    """A note where ``root`` (or the folder above it) is GTSRB's: as plain class folders its
    training images would be split by image, putting near-copies of one sign on both sides."""
    for where in (root, root.parent):
        if "gtsrb" in layouts_of(where):
            return [f"{root}: GTSRB's layout: gtsrb:{where} reads its CSVs and splits its training images by track "
                    "(a split by image puts near-copies of a sign on both sides)"]
    return []


def published_layout_hint(folder: Path) -> str:
    """For a folder without class folders: the sources whose published layout it has, or the
    folder above it has (Kaggle's GTSRB Test/, its Test.csv beside it); else what was expected."""
    for where, whose in ((folder, "it has"), (folder.parent, "the folder above it has")):
        if found := layouts_of(where):
            return layouts_hint(where, found, whose)
    return " (expected one folder of images per class)"


def class_folders_hint(path: Path) -> str:
    """For a published format's reader given an image copy of its data set (CIFAR-10 as JPEGs in
    class folders, MNIST as PNGs): "; it holds class folders of images: read it as folder:PATH",
    or "" where ``path`` does not hold one or is not a folder (the first few class folders are
    looked into)."""
    top = path / "train" if (path / "train").is_dir() else path
    try:
        classes = sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
        if any(is_image_file(f) for folder in classes[:3] for f in itertools.islice(folder.iterdir(), 50)):
            return f"; it holds class folders of images: read it as folder:{path}"
    except OSError:
        pass
    return ""


def outermost_content(root: Path) -> Path:
    """An extracted archive's folder of class folders: archives often nest it in one folder
    (flower_photos/<class>/), and a Mac adds __MACOSX/ beside it."""
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name not in NOT_CLASSES]
        if len(entries) != 1 or not entries[0].is_dir():
            return root
        root = entries[0]


@SOURCES.register("folder")
def read_folder(path: Path | None) -> SourceData:
    """One sub-folder per class (names sorted), or train/ val/ test/ each holding class folders
    (val/ and test/ without train/: a test set on its own)."""
    root = fetch("folder", path)
    if root.is_file():  # an archive of the folder, extracted once into the data home
        root = outermost_content(unpacked(root))
    if not root.is_dir():
        raise DataError.about("data", f" folder:{root}: not a folder")
    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    # without train/, val/ and test/ are splits only where nothing else is there: a class may be
    # called test
    others = any(p.is_dir() and not p.name.startswith(".") and p.name not in split_dirs for p in root.iterdir())
    if not split_dirs or ("train" not in split_dirs and others):
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
        raise DataError(f"{root}: no class sub-folders{published_layout_hint(root)}")
    if not any(len(split) for split in splits.values()):
        raise DataError(f"{root}: no image files in the class folders")
    notes += gtsrb_layout(root)
    return SourceData(classes, splits, 3, notes)

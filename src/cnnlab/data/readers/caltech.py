"""Caltech-256: 256_ObjectCategories/001.ak47/... as a folder or its tar."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..download import fetch
from ..images import is_image_file
from ..sources import SOURCES, RawSplit, SourceData
from .layout import find_below, unpacked

CALTECH_FOLDER = re.compile(r"^\d{3}\.")


@SOURCES.register("caltech256")
def read_caltech256(path: Path | None, categories: int | list | None = None,
                    include_clutter: bool = False) -> SourceData:
    """Caltech-256: 256_ObjectCategories/001.ak47/... (folder or its tar). ``categories``: the
    first N categories, or a list of names (``ak47`` or ``001.ak47``); the 257.clutter class is
    left out unless ``include_clutter``."""
    root = fetch("caltech256", path)
    root = unpacked(root) if root.is_file() else root
    if not any(CALTECH_FOLDER.match(p.name) for p in root.iterdir()):
        nested = find_below(root, "256_ObjectCategories")
        if nested is None:
            raise DataError.about("data", f" caltech256:{path}: expected 256_ObjectCategories/ with folders like 001.ak47")
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
            raise DataError.about("categories", f": not in {root}: {', '.join(sorted(missing))}")
        folders = chosen
    paths, labels = [], []
    for label, folder in enumerate(folders):
        files = sorted(p for p in (root / folder).iterdir() if p.is_file() and is_image_file(p))
        paths += files
        labels += [label] * len(files)
    ids = [p.relative_to(root).as_posix() for p in paths]
    return SourceData(folders, {"train": RawSplit(np.asarray(labels), ids, paths=paths)}, 3)

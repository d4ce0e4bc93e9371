"""Finding a published data set's folders in what the user gave: the folder itself, a folder
nesting it (archives nest), or an archive extracted once into the data home."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from ...errors import DataError
from ..download import data_home
from ..safe import extract_archive


def unpacked(path: Path) -> Path:
    """A folder as given, or an archive extracted once into the data home (as Keras' get_file
    does: nothing is written beside the archive, which may be on a read-only or shared disk),
    in a folder of its own named by the archive's name and place."""
    if path.is_file():
        place = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:12]
        return extract_archive(path, data_home() / "extracted" / f"{path.name.split('.')[0]}-{place}")
    return path


def read_csv(path: Path, delimiter: str) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None


def find_below(root: Path, relative: str, depth: int = 3) -> Path | None:
    """``root/relative``, or the first match up to ``depth`` folders down (archives nest)."""
    for level in range(depth + 1):
        for match in sorted(root.glob("/".join(["*"] * level + [relative]))):
            return match
    return None

"""Finding a published data set's folders in what the user gave: the folder itself, a folder
nesting it (archives nest), or an archive extracted once beside itself."""

from __future__ import annotations

import csv
from pathlib import Path

from ...errors import DataError
from ..safe import extract_archive


def unpacked(path: Path) -> Path:
    """A folder as given, or an archive extracted once beside itself."""
    if path.is_file():
        return extract_archive(path, path.with_name(path.name.split(".")[0] + "-extracted"))
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

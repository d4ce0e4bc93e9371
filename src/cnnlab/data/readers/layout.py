"""Finding a published data set's folders in what the user gave: the folder itself, a folder
nesting it (archives nest), or an archive extracted once into the data home."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from ..download import data_home, folder_size
from ..safe import extract_archive


def extracted_home() -> Path:
    return data_home() / "extracted"


def unpacked(path: Path) -> Path:
    """A folder as given, or an archive extracted once into the data home (as Keras' get_file
    does: nothing is written beside the archive, which may be on a read-only or shared disk),
    in a folder of its own named by the archive's name and place."""
    if not path.is_file():
        return path
    place = hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:12]
    folder = extract_archive(path, extracted_home() / f"{path.name.split('.')[0]}-{place}")
    with contextlib.suppress(OSError):  # its last use, for data cache --clear --older-than
        os.utime(folder)
    return folder


@dataclass
class Extracted:
    folder: Path
    bytes: int
    last_used: float


def extracted_archives() -> list[Extracted]:
    """The archives extracted into the data home, most recently used first."""
    home = extracted_home()
    found = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("."):
            found.append(Extracted(folder, folder_size(folder), folder.stat().st_mtime))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def clear_extracted(older_than_days: float | None = None) -> list[Extracted]:
    """Remove the extracted archives (those unused for ``older_than_days``, if given); an
    archive is extracted again when next read."""
    limit = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = [e for e in extracted_archives() if limit is None or e.last_used <= limit]
    for entry in removed:
        shutil.rmtree(entry.folder, ignore_errors=True)
    return removed


def read_csv(path: Path, delimiter: str | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line; ``delimiter`` None: ';' where the header has
    one (GTSRB's own files), else ','."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            if delimiter is None:
                delimiter = ";" if ";" in handle.readline() else ","
                handle.seek(0)
            return list(csv.DictReader(handle, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None


def find_below(root: Path, relative: str, depth: int = 3) -> Path | None:
    """``root/relative``, or the first match up to ``depth`` folders down (archives nest)."""
    for level in range(depth + 1):
        for match in sorted(root.glob("/".join(["*"] * level + [relative]))):
            return match
    return None

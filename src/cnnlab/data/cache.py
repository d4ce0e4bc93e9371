"""Decode once: the images of a file-based source, decoded at one size into a uint8 .npy on
disk and memory-mapped from then on. The key covers every file's path, size and modification
time (a stored image's table's, and its row), the crop boxes, the size and the channel count,
so a changed source is decoded again."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import CnnlabError
from ..io import write_json_atomic
from .images import ImageItem, StoredImage, decode_many, file_of

CACHE_VERSION = 2
"""2: photos turned upright by their EXIF orientation (1 decoded them as stored)."""


def cache_root() -> Path:
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")


def readable_size(count: int) -> str:
    """Bytes in KiB, MiB or GiB, one decimal."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 2**10:.1f} KiB"


CACHE_KEY = re.compile(r"[0-9a-f]{24}")
"""A cache's folder name: cache_key()."""
STAGING_PREFIX = ".images."
"""A cache being decoded is ``.images.PID.npy``, renamed to images.npy when whole."""


def left_by_dead_processes(folder: Path, prefix: str, suffix: str = "") -> list[Path]:
    """The files or folders ``PREFIX<pid>SUFFIX`` in ``folder`` that processes now gone (killed
    outright) were writing: a half-decoded cache, a half-extracted archive."""
    if not folder.is_dir():
        return []
    return [path for path in folder.glob(f"{glob.escape(prefix)}*{suffix}")
            if (pid := staging_pid(path, prefix, suffix)) is not None and not process_alive(pid)]


def staging_pid(path: Path, prefix: str = STAGING_PREFIX, suffix: str = ".npy") -> int | None:
    """The process writing into ``path`` (``PREFIX<pid>SUFFIX``: ``.images.PID.npy`` for a cache)."""
    pid = path.name[len(prefix):].removesuffix(suffix)
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def common_folder(items: list[ImageItem]) -> str | None:
    """The folder that holds every one of ``items``: what a cache was decoded from."""
    if not items:
        return None
    return os.path.commonpath({str(file_of(item).parent) for item in items})


@dataclass(frozen=True)
class CacheEntry:
    """One decoded cache: a folder of the cache root named by its key."""

    folder: Path
    bytes: int
    images: int | None
    shape: tuple[int, ...] | None
    """Height, width and channels the images were decoded at."""
    source: str | None
    """The folder the images came from (None for caches made before cnnlab recorded it)."""
    last_used: float
    decoding: bool
    """A running process is decoding into it."""


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """The decoded caches under ``root`` (default the cache root), most recently used first.
    Only folders named by a cache key count: the downloads kept beside them are not caches."""
    root = root or cache_root()
    entries = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not (folder.is_dir() and CACHE_KEY.fullmatch(folder.name)):
            continue
        stats = {}
        for file in folder.iterdir():
            with contextlib.suppress(OSError):  # a file another process removes meanwhile
                stats[file] = file.stat()
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        decoded = meta.get("size"), meta.get("channels")
        shape = (*decoded[0], decoded[1]) if isinstance(decoded[0], list) and isinstance(decoded[1], int) else None
        pids = [staging_pid(f) for f in stats if f.name.startswith(STAGING_PREFIX)]
        entries.append(CacheEntry(folder, sum(stat.st_size for stat in stats.values()), meta.get("files"), shape,
                                  meta.get("source"), max((stat.st_mtime for stat in stats.values()), default=0.0),
                                  any(pid is not None and process_alive(pid) for pid in pids)))
    return sorted(entries, key=lambda e: e.last_used, reverse=True)


def clear_cache(older_than_days: float | None = None,
                root: Path | None = None) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Delete the decoded caches (those unused for ``older_than_days``, if given); they are
    decoded again when next needed. Returns (removed, left because a process decodes into them)."""
    limit = None if older_than_days is None else time.time() - older_than_days * 86400
    removed, busy = [], []
    for entry in cache_entries(root):
        if limit is not None and entry.last_used > limit:
            continue
        if entry.decoding:
            busy.append(entry)
            continue
        shutil.rmtree(entry.folder, ignore_errors=True)
        removed.append(entry)
    return removed, busy


def cache_key(paths: list[ImageItem], boxes: np.ndarray | None, size: tuple[int, int], channels: int) -> str:
    digest = hashlib.sha256(f"{CACHE_VERSION}|{size}|{channels}".encode())
    for path in paths:
        if isinstance(path, StoredImage):
            digest.update(path.store.identity + f"|{path.row}\n".encode())
            continue
        try:
            stat = path.stat()
            # fsencode: a name that is not UTF-8 (Latin-1 from another system's archive) is its bytes
            digest.update(os.fsencode(path.resolve()) + f"|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(os.fsencode(path) + b"|missing\n")
    if boxes is not None:
        digest.update(np.ascontiguousarray(boxes, dtype=np.int64).tobytes())
    return digest.hexdigest()[:24]


def decode_cached(paths: list[ImageItem], size: tuple[int, int], channels: int,
                  boxes: np.ndarray | None = None, progress: bool = True,
                  description: str = "decoding",
                  cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, str], bool]:
    """(images memmap with one row per path, rows of the readable ones, unreadable files with
    reasons, whether the cache was hit). ``boxes`` rows of -1 mean no crop."""
    folder = (cache_dir or cache_root()) / cache_key(paths, boxes, size, channels)
    images_file, meta_file = folder / "images.npy", folder / "meta.json"
    if images_file.is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            images = np.load(images_file, mmap_mode="r")
            if images.shape == (len(paths), size[0], size[1], channels):
                with contextlib.suppress(OSError):  # a cache shared read-only is still read
                    os.utime(meta_file)  # last used: what `cnnlab data cache --clear --older-than` reads
                return images, np.asarray(meta["kept"], dtype=np.int64), meta["unreadable"], True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}.npy"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in left_by_dead_processes(folder, STAGING_PREFIX, ".npy"):
            stale.unlink(missing_ok=True)
        need, free = len(paths) * size[0] * size[1] * channels, shutil.disk_usage(folder).free
        if need > free:  # decoding into a memory map on a full disk ends in SIGBUS, not an error
            raise CnnlabError.mentioning(
                lambda name: f"{folder.parent}: the decode cache needs {readable_size(need)} ({len(paths)} images of "
                             f"{size[0]}x{size[1]}x{channels}); the disk there has {readable_size(free)} free: set "
                             f"CNNLAB_CACHE to a folder on a larger disk, or decode smaller images ({name('image_size')})")
        out = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8,
                                        shape=(len(paths), size[0], size[1], channels))
    except OSError as exc:
        raise CnnlabError(f"{folder}: cannot write the decode cache there ({exc.strerror or exc}); "
                          "set CNNLAB_CACHE to a writable folder") from None
    try:
        with tqdm(total=len(paths), desc=description, unit="img", disable=None if progress else True,
                  leave=False) as bar:
            box_list = None if boxes is None else [None if b[0] < 0 else b for b in boxes]
            _, kept, failed = decode_many(paths, size, channels, bar.update, box_list, out=out)
        out.flush()
        del out
        os.replace(staging, images_file)
    except BaseException:  # Ctrl-C included: half a cache is the size of the whole one
        staging.unlink(missing_ok=True)
        raise
    write_json_atomic(meta_file, {"kept": kept, "unreadable": failed, "size": list(size),
                                  "channels": channels, "files": len(paths), "source": common_folder(paths)})
    return np.load(images_file, mmap_mode="r"), np.asarray(kept, dtype=np.int64), failed, False

"""Opening untrusted files without running code or writing outside a folder: CIFAR's pickles
through an unpickler that builds only plain data and numpy arrays, and archives whose members
are checked before anything is extracted."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..errors import DataError
from .cache import left_by_dead_processes, readable_size

# what CIFAR's pickles (and numpy arrays in any pickle) are made of
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
}
_PLAIN = {"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
          "float", "bool", "complex", "object"}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or (module in ("builtins", "__builtin__") and name in _PLAIN):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_plain_pickle(data: bytes, source: str):
    """Unpickle dicts, lists, strings, bytes, numbers and numpy arrays; anything else is an
    error and no code runs. Bytes keys stay bytes (CIFAR was pickled by Python 2)."""
    try:
        return _PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{source}: unsafe or invalid pickle ({exc})") from None
    # LookupError: IndexError and KeyError, and an encoding that _codecs.encode does not know
    except (EOFError, ValueError, TypeError, AttributeError, LookupError) as exc:
        raise DataError(f"{source}: not a valid pickle ({type(exc).__name__})") from None


def _check_member(name: str, archive: Path, is_file: bool, is_dir: bool) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or name.startswith(("/", "\\")) or ":" in (path.parts or ("",))[0]:
        raise DataError(f"{archive}: refusing member '{name}', which would land outside the folder")
    if not (is_file or is_dir):
        raise DataError(f"{archive}: refusing member '{name}' (links and special files are not extracted)")


def extract_archive(archive: Path, target: Path, select=None) -> Path:
    """Extract a tar (any compression) or zip into ``target`` after checking every member:
    no absolute paths, no '..', no links or devices (``staged_folder``: nothing half-extracted,
    and done again only where the archive changed). ``select(name)`` picks members (default: all)."""

    def extract(staging: Path) -> None:
        try:
            if tarfile.is_tarfile(archive):
                with tarfile.open(archive) as tar:
                    members = [m for m in tar.getmembers() if select is None or select(m.name)]
                    for member in members:
                        _check_member(member.name, archive, member.isfile(), member.isdir())
                    check_room(archive, sum(member.size for member in members), len(members), staging)
                    tar.extractall(staging, members=members, filter="data")
            elif zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    infos = [i for i in zf.infolist() if select is None or select(i.filename)]
                    for info in infos:
                        mode = info.external_attr >> 16
                        is_link = (mode & 0o170000) == 0o120000
                        _check_member(info.filename, archive, not info.is_dir() and not is_link, info.is_dir())
                    check_room(archive, sum(info.file_size for info in infos), len(infos), staging)
                    zf.extractall(staging, members=infos)
            else:
                raise DataError(f"{archive}: not a tar or zip archive")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{archive}: damaged archive ({exc})") from None

    return staged_folder(target, archive, extract)


def staged_folder(target: Path, source: Path, fill: Callable[[Path], None]) -> Path:
    """``target`` as ``fill(folder)`` writes it from the file ``source`` into a new, empty
    folder beside it, renamed into place once complete: a failure or an interruption leaves
    nothing half-written. A ``target`` at least as new as the source is kept as it is (a
    source changed since, photos added to an archive, say, is read again). Each process writes
    a folder of its own: the processes of a distributed run all read the data, and where one
    finishes first the others keep its folder and drop theirs."""
    if target.is_symlink():
        raise DataError(f"{target}: is a symbolic link; refusing to extract {source.name} through it")

    def current() -> bool:
        return target.is_dir() and target.stat().st_mtime >= source.stat().st_mtime

    if current():
        return target
    prefix = f".{target.name}.partial-"
    for stale in left_by_dead_processes(target.parent, prefix):
        _remove(stale)
    staging = target.with_name(f"{prefix}{os.getpid()}")
    _remove(staging)
    try:
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # a new, empty folder of our own: nothing under it can be a planted link
    except OSError as exc:
        raise DataError(f"{staging}: cannot make the extraction folder ({exc.strerror or exc})") from None
    try:
        fill(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        if current():  # another process finished first
            shutil.rmtree(staging)
            return target
        if target.is_dir():
            stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
            shutil.rmtree(stale, ignore_errors=True)
            target.rename(stale)
            shutil.rmtree(stale)
        staging.rename(target)
        os.utime(target)  # extracted now, whatever the members' own times
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if current():  # another process put its folder there between our look and our rename
            return target
        raise DataError(f"{target}: cannot put the extracted files there ({exc.strerror or exc})") from None
    return target


def _remove(path: Path) -> None:
    """A file, link or folder at ``path``, gone; a link is never followed."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)


BLOCK = 4096
"""The disk a small file takes at the least (ext4's and most systems' block)."""


def check_room(archive: Path, unpacked: int, files: int, folder: Path) -> None:
    """Zeros compress about 1000:1: what an archive unpacks to, not its size, must fit; and
    each file takes at least a block, so 70,000 MNIST PNGs of about 280 bytes take 276 MiB, not 18."""
    need, free = unpacked + files * BLOCK, shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"{archive}: unpacks to {readable_size(need)} in {files:,} file{'s' if files != 1 else ''}; {folder.parent} has "
                        f"{readable_size(free)} free")

"""Atomic file writes: a crash mid-write never leaves a half-written file in place of the real
one, Ctrl-C or SIGTERM during a write takes effect once the file is complete, and every file
gets the permissions the user's umask gives (0644 under the usual 022), not the 0600 of a
temporary file."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import CnnlabError

TEMP_SUFFIX = ".tmp"
RUN_CONFIG, RUN_CLASSES = "config.yaml", "classes.json"
"""The two files that make a folder a cnnlab run directory (runs.py writes them first)."""


def is_run_directory(path: Path) -> bool:
    return (path / RUN_CONFIG).is_file() and (path / RUN_CLASSES).is_file()
"""Temporary files are ``.NAME.<random>.tmp`` beside their target."""


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process's umask (read by setting it, so set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def interruptions_held(notice: Callable[[], None] | None = None) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM that arrive inside the block are held until it ends, then delivered;
    the block gets the list of those held. Without ``notice``, every one waits: interrupted
    mid-file, a write would be lost, and torch.save turns the interruption into a RuntimeError
    instead of letting it stop the run cleanly. With it (a training that stops at the next
    point it can continue from, looking at the list), ``notice`` is called when the first
    arrives and a second goes through at once, the user insisting. A signal the process
    ignores stays ignored. (Python-level handlers, not a signal mask: the kernel hands a
    process's signal to any thread that does not block it, and torch's worker threads do not.)"""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield []
        return
    received: list[int] = []
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    handlers = {number: handler for number, handler in handlers.items()
                if handler is not None and handler != signal.SIG_IGN}
    restored = False

    def restore() -> None:
        nonlocal restored
        for number, handler in handlers.items():
            signal.signal(number, handler)
        restored = True

    def hold(signum, frame) -> None:
        if notice is not None and received:  # the user insists
            restore()
            signal.raise_signal(signum)
            return
        received.append(signum)
        if notice is not None:
            notice()

    for number in handlers:
        signal.signal(number, hold)
    try:
        yield received
    finally:
        if not restored:
            restore()
            if received:
                signal.raise_signal(received[0])


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place; an
    interruption meanwhile waits for the file (``interruptions_held``)."""
    with interruptions_held():
        return _write_atomic(Path(path), write)


def _write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), umask_mode())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        # torch.save turns the system's error (a full disk) into a RuntimeError of its own
        system = exc if isinstance(exc, OSError) else exc.__context__ if isinstance(exc, RuntimeError) else None
        if isinstance(system, OSError):
            raise CnnlabError(f"{path}: cannot write it ({system.strerror or system})") from None
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    # surrogateescape: a file name that is not UTF-8 is written back as the bytes it was
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8", errors="surrogateescape")))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays reach the JSON files through metrics and histories
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")

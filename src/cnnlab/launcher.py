"""Start-up for the ``cnnlab`` command: re-run itself with tcmalloc preloaded when the library
is installed. With glibc malloc, torch's large activations are mapped and unmapped every step
(millions of page faults); tcmalloc keeps them (docs/benchmarks.md)."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)


def version() -> str:
    try:
        return metadata.version("cnnlab")
    except metadata.PackageNotFoundError:
        return "unknown"


def fast_allocator() -> str | None:
    return next((p for p in TCMALLOC_PATHS if Path(p).is_file()), None)


def reexec_with_fast_allocator(argv: list[str], program: tuple[str, ...] = ("-m", "cnnlab")) -> None:
    """Replace this process by ``python PROGRAM ARGV`` with tcmalloc preloaded; set
    CNNLAB_ALLOCATOR=system to keep glibc's malloc. Does nothing when tcmalloc is absent or
    already loaded."""
    choice = os.environ.get("CNNLAB_ALLOCATOR", "tcmalloc")
    if choice.lower() not in ("tcmalloc", "system"):
        print(f"cnnlab: warning: CNNLAB_ALLOCATOR={choice}: expected tcmalloc or system; using tcmalloc",
              file=sys.stderr)
    if choice.lower() == "system":
        return
    preload = os.environ.get("LD_PRELOAD", "")
    library = fast_allocator()
    if library is None or "tcmalloc" in preload or {"-h", "--help", "--version"} & set(argv):
        return
    env = dict(os.environ, LD_PRELOAD=f"{library}:{preload}" if preload else library,
               CNNLAB_ALLOCATOR="tcmalloc")
    if os.environ.get("CNNLAB_VERBOSE"):
        print(f"cnnlab: restarting with {library} preloaded", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *program, *argv], env)

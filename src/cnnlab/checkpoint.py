"""Checkpoints: written atomically, read with ``weights_only=True`` so a file can hold tensors
and plain data but never code."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CnnlabError
from .io import write_atomic


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    return write_atomic(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, lazily: bool = False) -> dict:
    """The checkpoint at ``path``, read without running code; ``lazily``: its tensors mapped
    from the file, not read, for a look at the small values beside them."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=lazily)
    # bytes that are no checkpoint make torch's weights-only unpickler raise IndexError,
    # KeyError and more besides the unpickling errors; none of them runs code
    except Exception as exc:  # noqa: BLE001
        first = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}" if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(payload, dict):
        raise CnnlabError(f"{path}: expected a dict of tensors, found {type(payload).__name__}")
    return payload

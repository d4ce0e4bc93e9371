"""Device, precision and thread choices."""

from __future__ import annotations

import contextlib
import os

import torch

from ..errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configure_threads() -> None:
    torch.set_num_threads(cpu_count())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"--device: must be auto, cpu or cuda; got '{name}'")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matrix work runs in hardware rather than emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast where the hardware has bf16 units, otherwise fp32: emulated
    bf16 on an AVX2-only CPU is slower than fp32."""
    if name not in PRECISIONS:
        raise ConfigError(f"--precision: must be one of {', '.join(PRECISIONS)}; got '{name}'")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

"""Where and how this process computes: its device, precision and threads, and its place among
the processes of a distributed run. Worked out once (``Runtime.create``) and passed down; in a
single process it is rank 0 of 1 and its collectives do nothing."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The flags that decide a CPU's fp32 and bf16 speed."""


def cpu_text(cpuinfo: str | None = None) -> str:
    """The CPU a speed figure was measured on: its name, family and model, and the flags that
    decide its kernels. A virtual machine's CPU is often named "AMD EPYC" alone, and a Zen 4
    (family 25) and a Zen 5 (family 26) show the same flags at half and full speed.
    ``cpuinfo``: the text of /proc/cpuinfo (read where not given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    present = set(fields.get("flags", "").split())
    flags = " ".join(flag for flag in CPU_FLAGS if flag in present) or "none of " + ", ".join(CPU_FLAGS)
    family = (f"family {fields['cpu family']}, model {fields['model']}; "
              if "cpu family" in fields and "model" in fields else "")
    return f"{name} ({family}flags: {flags})"


def device_text(device: torch.device) -> str:
    """What a speed measured on ``device`` was measured on: the GPU's name, or the CPU's
    (``cpu_text``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_text()


def device_memory(device: torch.device) -> int:
    """Bytes of memory ``device`` has: the GPU's own, else the machine's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return machine_memory()


def machine_memory() -> int:
    """Bytes of the machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_device(name: str) -> torch.device:
    """``auto``: the process's CUDA device where there is one, else the CPU; ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise ConfigError.about("device", f": must be auto, cpu, cuda or cuda:N; got '{name}'")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError.about("device", lambda spell, asked=name: f" {asked}: no CUDA device is available here; use "
                                    f"{spell('device')}=cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError.about("device", f" {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matrix work runs in hardware rather than emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 autocast where the hardware has bf16 units, fp16 (with a gradient
    scaler) on older GPUs, fp32 on CPUs without bf16: emulated bf16 is slower than fp32."""
    if name not in PRECISIONS:
        raise ConfigError.about("precision", f": must be one of {', '.join(PRECISIONS)}; got '{name}'")
    if name == "fp16" and device.type != "cuda":
        raise ConfigError.about("precision", " fp16: only on CUDA devices; use bf16 or fp32 on a CPU")
    if name == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    return name


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str
    """fp32, bf16 or fp16: the autocast dtype of forward passes."""
    threads: int
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def create(cls, device: str = "auto", precision: str = "auto") -> Runtime:
        """The runtime of this process: torchrun's environment says its rank (none: rank 0 of
        1); the cores are shared evenly by the processes of one node."""
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        if device == "auto" and world > 1 and torch.cuda.is_available():
            device = f"cuda:{local_rank % torch.cuda.device_count()}"
        torch_device = resolve_device(device)
        if torch_device.type == "cuda" and torch_device.index is not None:
            torch.cuda.set_device(torch_device)
        threads = max(1, cpu_count() // local_world) if local_world > 1 else cpu_count()
        torch.set_num_threads(threads)
        if world > 1 and not torch.distributed.is_initialized():
            # gloo between CPU processes, NCCL between GPUs; the address comes from torchrun
            backend = "nccl" if torch_device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        return cls(torch_device, resolve_precision(precision, torch_device), threads, rank, world,
                   local_rank, local_world)

    def close(self) -> None:
        """Leave the process group (a distributed run's last step)."""
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def describe(self) -> str:
        """What this process trains with, as train.log and a run's TRAINED_ON say it: ``cpu
        bf16, 2 threads, on AMD EPYC (family 25, ...)``, and the processes of a distributed run."""
        processes = f" in each of {self.world_size} processes" if self.distributed else ""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return (f"{self.device.type} {self.precision}, {threads}{processes}, "
                f"on {device_text(self.device)}")

    @property
    def is_main(self) -> bool:
        """The process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over the ranks, on every rank."""
        if self.distributed:
            tensor = tensor.clone()
            torch.distributed.all_reduce(tensor)
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's rows (their counts may differ), concatenated in rank order, on every rank."""
        if not self.distributed:
            return tensor
        counts = [None] * self.world_size
        torch.distributed.all_gather_object(counts, int(tensor.shape[0]))
        padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, padded)
        return torch.cat([part[:count] for part, count in zip(parts, counts, strict=True)])

"""Batches straight from the uint8 arrays: gather, augment the whole batch with tensor
operations, normalise, and hand over a channels_last float tensor. No per-image Python work,
so the cores go to the model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .dataset import Split


@dataclass(frozen=True)
class Augment:
    hflip: bool = False
    pad_crop: int = 0
    """Pad by this many pixels (reflect) and crop back at a random offset, CIFAR-style."""

    @classmethod
    def parse(cls, names: list[str]) -> Augment:
        options: dict = {}
        for item in names:
            name, _, arg = item.partition(":")
            if name == "hflip" and not arg:
                options["hflip"] = True
            elif name == "pad_crop":
                try:
                    options["pad_crop"] = int(arg or 4)
                except ValueError:
                    raise ConfigError(f"data.augment: pad_crop takes a pixel count; got '{item}'") from None
            else:
                raise ConfigError(f"data.augment: unknown augmentation '{item}'; "
                                  "valid: hflip, pad_crop[:PIXELS]")
        return cls(**options)

    def apply(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment an (N, H, W, C) uint8 batch."""
        n, height, width, _ = batch.shape
        if self.pad_crop:
            pad = self.pad_crop
            padded = torch.nn.functional.pad(batch.permute(0, 3, 1, 2).float(), (pad,) * 4,
                                             mode="reflect").to(torch.uint8).permute(0, 2, 3, 1)
            dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
            dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
            rows = (dy + torch.arange(height))[:, :, None]
            cols = (dx + torch.arange(width))[:, None, :]
            batch = padded[torch.arange(n)[:, None, None], rows, cols]
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(2), batch)
        return batch


class BatchLoader:
    """Iterates (images, labels) batches over a Split.

    Images come out as float32 (N, C, H, W) in channels_last memory, normalised with the
    training split's mean and std. Shuffling and augmentation draw from ``generator`` so that a
    resumed run sees the same batches.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        mean: list[float],
        std: list[float],
        shuffle: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
    ):
        self.split = split
        self.labels = torch.from_numpy(split.labels)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment or Augment()
        self.generator = generator or torch.Generator().manual_seed(0)
        self.scale = (1.0 / (255.0 * torch.tensor(std))).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean) / torch.tensor(std)).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        order = torch.randperm(count, generator=self.generator) if self.shuffle else None
        for start in range(0, count, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
                labels = self.labels[index]
            else:
                index = order[start: start + self.batch_size]
                labels = self.labels[index]
                index = index.numpy()
            pixels = torch.from_numpy(self.split.gather(index))
            pixels = self.augment.apply(pixels, self.generator)
            yield self.normalize(pixels), labels

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) uint8 -> normalised float (N, C, H, W), channels_last in memory."""
        return torch.addcmul(self.shift, pixels.permute(0, 3, 1, 2).float(), self.scale)

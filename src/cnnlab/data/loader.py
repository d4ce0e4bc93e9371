"""Batches straight from the uint8 arrays: gather the rows, augment the whole batch with tensor
operations, standardise (no per-image Python work, so the cores go to the model). Images come
out as float32 (N, C, H, W) in channels_last memory.

Shuffling and augmentation draw from separate random streams derived from (seed, epoch) and
(seed, epoch, step) alone (alternating flips from the seed): any batch of any epoch can be made
again without saved state, which lets a run resume mid-epoch and lets several processes each
take their share of one batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .augment import Augment, Augmenter, centre_crop
from .dataset import Split
from .preprocessing import Preprocessing, size_text


def random_stream(seed: int, purpose: str, *counters: int) -> torch.Generator:
    """A generator for one purpose at one point of a run, from the seed and counters alone."""
    key = "|".join(map(str, (seed, purpose, *counters))).encode()
    value = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return torch.Generator().manual_seed(value & (2**63 - 1))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) times ``scale``, rounded, at least 1 pixel each."""
    return tuple(max(1, round(side * scale)) for side in size)


class BatchLoader:
    """Iterates (images, labels) batches over a Split, prepared as ``preprocessing`` says.

    A ``training`` loader shuffles (per epoch: ``set_epoch``) and augments (random crops when the
    input is smaller than the stored images); otherwise batches come in order with the centre
    crop. ``resizing`` holds progressive resizing's phases, (scale, epochs) each: the training
    images of those epochs are scaled to that share of the input side. With ``world_size`` > 1,
    each of the batches of ``batch_size`` samples is split between the ranks and this loader
    yields the rows of ``rank`` (the same samples and random augmentations as one process,
    whatever the number of processes).
    """

    def __init__(self, split: Split, batch_size: int, preprocessing: Preprocessing,
                 training: bool = False, augment: Augment | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 resizing: Sequence[tuple[float, int]] = ()):
        self.split = split
        self.device = torch.device(device)
        self.labels = torch.from_numpy(split.labels)
        self.batch_size = batch_size
        self.preprocessing = preprocessing
        self.training = training
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.resizing = tuple(resizing)
        self.epoch = 0
        stored = tuple(split.images.shape[1:3])
        self.input_size = tuple(preprocessing.input_size or stored)
        if self.input_size[0] > stored[0] or self.input_size[1] > stored[1]:
            raise ConfigError.about("data.crop", f" {size_text(self.input_size)} is larger than the images "
                                    f"{size_text(stored)}")
        self.augment = (augment or Augment()).check(split.images.shape[3], self.input_size)
        if self.augment.pca_lighting and preprocessing.pca is None:
            raise ConfigError.about("data.augment", ": pca_lighting needs the training pixels' RGB statistics")
        # alternating flips: which images the even epochs mirror, the odd ones the others
        self.first_flips = None
        if self.augment.alternate_flips:
            self.first_flips = torch.rand(len(self.labels), generator=random_stream(seed, "flip")) < 0.5

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shuffled order and augmentations the next iteration makes."""
        self.epoch = epoch

    def training_size(self, epoch: int) -> tuple[int, int]:
        """The side lengths of the images an epoch trains on: the input's, or its phase's share."""
        end = 0
        for scale, epochs in self.resizing:
            end += epochs
            if epoch < end:
                return scaled_size(self.input_size, scale)
        return self.input_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def order(self) -> torch.Tensor | None:
        """The epoch's sample order (None: in order)."""
        if not self.training:
            return None
        return torch.randperm(len(self.labels), generator=random_stream(self.seed, "shuffle", self.epoch))

    def rows_of_rank(self, start: int, stop: int, rank: int | None = None) -> slice:
        """A rank's share (default this one's) of the batch [start, stop): contiguous, as
        even as possible."""
        rank = self.rank if rank is None else rank
        count = stop - start
        return slice(start + count * rank // self.world_size, start + count * (rank + 1) // self.world_size)

    def positions(self, rank: int) -> list[int]:
        """The samples ``rank`` sees, in the order it sees them (a loader that does not shuffle)."""
        count = len(self.labels)
        return [i for start in range(0, count, self.batch_size)
                for i in range(count)[self.rows_of_rank(start, min(start + self.batch_size, count), rank)]]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches()

    def batches(self, first: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches from batch ``first`` on (a run resumed within an epoch): each the
        samples and augmentations the whole epoch gives it."""
        order = self.order()
        count = len(self.labels)
        size = self.training_size(self.epoch)
        for step, start in enumerate(range(first * self.batch_size, count, self.batch_size), start=first):
            stop = min(start + self.batch_size, count)
            mine = self.rows_of_rank(start, stop)
            index = mine if order is None else order[mine]
            labels = self.labels[index].to(self.device, non_blocking=True)
            pixels = self.pixels(index if order is None else index.numpy())
            if self.training:
                flips = None
                if self.first_flips is not None:
                    flips = (self.first_flips[index] ^ bool(self.epoch % 2)).to(self.device, non_blocking=True)
                augmenter = Augmenter(self.augment, self.input_size, self.preprocessing.pca,
                                      random_stream(self.seed, "augment", self.epoch, step),
                                      slice(mine.start - start, mine.stop - start), stop - start, flips)
                pixels = augmenter(pixels)
                if size != self.input_size:
                    pixels = F.interpolate(pixels, size=size, mode="bilinear", antialias=True, align_corners=False)
            else:
                pixels = centre_crop(pixels, self.input_size)
            yield self.preprocessing.standardize(pixels), labels

    def uncropped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Whole images in order as pixel values (0-255), for test-time views, which go through
        ``preprocessing.standardize`` one by one."""
        for start in range(0, len(self.labels), self.batch_size):
            index = self.rows_of_rank(start, min(start + self.batch_size, len(self.labels)))
            yield self.pixels(index), self.labels[index].to(self.device, non_blocking=True)

    def pixels(self, index) -> torch.Tensor:
        """(N, H, W, C) uint8 rows -> float (N, C, H, W) pixel values on the loader's device,
        channels_last in memory. To a GPU the uint8 rows travel (a quarter of the bytes), from
        pinned memory without waiting; augmentation and standardisation then run there."""
        rows = torch.from_numpy(self.split.gather(index))
        if self.device.type == "cuda":
            rows = rows.pin_memory().to(self.device, non_blocking=True)
        return rows.permute(0, 3, 1, 2).float()

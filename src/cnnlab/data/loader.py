"""Batches straight from the uint8 arrays: gather, normalise, and augment the whole batch with
tensor operations (no per-image Python work, so the cores go to the model). Images come out as
float32 (N, C, H, W) in channels_last memory."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .dataset import Split

AUGMENTATIONS = "hflip, pad_crop[:PIXELS], random_resized_crop[:MIN_SCALE], pca_lighting[:STD]"


@dataclass(frozen=True)
class Augment:
    hflip: bool = False
    pad_crop: int = 0
    """Pad by this many pixels (reflect) and crop back at a random offset, CIFAR-style."""
    random_resized_crop: float = 0.0
    """Minimum area fraction of Inception-style random resized crops (0: off); aspect 3/4..4/3."""
    pca_lighting: float = 0.0
    """Std of the paper's per-image PCA colour shift along the RGB eigenvectors (0: off)."""

    @classmethod
    def parse(cls, names: list[str]) -> Augment:
        options: dict = {}
        defaults = {"pad_crop": 4, "random_resized_crop": 0.08, "pca_lighting": 0.1}
        for item in names:
            name, _, arg = item.partition(":")
            if name == "hflip" and not arg:
                options["hflip"] = True
            elif name in defaults:
                try:
                    options[name] = type(defaults[name])(arg) if arg else defaults[name]
                except ValueError:
                    raise ConfigError(f"data.augment: {name} takes a number; got '{item}'") from None
            else:
                raise ConfigError(f"data.augment: unknown augmentation '{item}'; valid: {AUGMENTATIONS}")
        return cls(**options)


def crop_offsets(height: int, width: int, crop: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the four corner crops and the centre crop."""
    dy, dx = height - crop[0], width - crop[1]
    return [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]


def ten_crops(x: torch.Tensor, crop: tuple[int, int]) -> list[torch.Tensor]:
    """The paper's test-time views: four corners and the centre, each also mirrored."""
    views = [x[:, :, y: y + crop[0], x0: x0 + crop[1]] for y, x0 in crop_offsets(x.shape[2], x.shape[3], crop)]
    return views + [v.flip(3) for v in views]


class BatchLoader:
    """Iterates (images, labels) batches over a Split.

    Normalised with the training split's mean and std. A ``training`` loader shuffles and
    augments (random crops when ``crop`` is smaller than the stored images); otherwise batches
    come in order with the centre crop. Shuffling and augmentation draw from ``generator`` so
    that a resumed run sees the same batches.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        mean: list[float],
        std: list[float],
        training: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        crop: tuple[int, int] | None = None,
        pca: dict | None = None,
    ):
        self.split = split
        self.labels = torch.from_numpy(split.labels)
        self.batch_size = batch_size
        self.training = training
        self.augment = augment or Augment()
        self.generator = generator or torch.Generator().manual_seed(0)
        stored = tuple(split.images.shape[1:3])
        self.crop = tuple(crop) if crop else stored
        if self.crop[0] > stored[0] or self.crop[1] > stored[1]:
            raise ConfigError(f"data.crop {list(self.crop)} is larger than the images {list(stored)}")
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * self.std))
        self.shift = (-torch.tensor(mean).view(1, -1, 1, 1) / self.std)
        self.pca = pca
        if self.augment.pca_lighting and (pca is None or len(mean) != 3):
            raise ConfigError("data.augment: pca_lighting needs RGB images")

    @classmethod
    def with_preprocessing(cls, split: Split, batch_size: int, preprocessing: dict,
                           **kwargs) -> BatchLoader:
        """A loader normalising and cropping as a run's stored ``preprocessing`` says."""
        return cls(split, batch_size, preprocessing["mean"], preprocessing["std"],
                   crop=preprocessing.get("crop"), pca=preprocessing.get("pca"), **kwargs)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        order = torch.randperm(count, generator=self.generator) if self.training else None
        for start in range(0, count, self.batch_size):
            if order is None:
                index = slice(start, start + self.batch_size)
                labels = self.labels[index]
            else:
                index = order[start: start + self.batch_size]
                labels = self.labels[index]
                index = index.numpy()
            batch = self.normalize(torch.from_numpy(self.split.gather(index)))
            yield (self.augmented(batch) if self.training else self.centre(batch)), labels

    def uncropped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised whole images in order, for test-time views."""
        for start in range(0, len(self.labels), self.batch_size):
            index = slice(start, start + self.batch_size)
            yield self.normalize(torch.from_numpy(self.split.gather(index))), self.labels[index]

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) uint8 -> normalised float (N, C, H, W), channels_last in memory."""
        return torch.addcmul(self.shift, pixels.permute(0, 3, 1, 2).float(), self.scale)

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        y, x0 = crop_offsets(x.shape[2], x.shape[3], self.crop)[-1]
        return x[:, :, y: y + self.crop[0], x0: x0 + self.crop[1]]

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        aug, g = self.augment, self.generator
        n, _, height, width = x.shape
        if aug.random_resized_crop:
            x = self._random_resized_crop(x, aug.random_resized_crop)
        elif self.crop != (height, width):
            x = self._shifted_crop(x, height - self.crop[0], width - self.crop[1])
        if aug.pad_crop:
            pad = aug.pad_crop
            x = self._shifted_crop(F.pad(x, (pad,) * 4, mode="reflect"), 2 * pad, 2 * pad)
        if aug.hflip:
            flip = torch.rand(n, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if aug.pca_lighting:
            alpha = torch.randn(n, 3, generator=g) * aug.pca_lighting
            eigval = torch.tensor(self.pca["eigval"])
            eigvec = torch.tensor(self.pca["eigvec"])
            rgb_shift = (alpha * eigval) @ eigvec.T  # sum_i alpha_i lambda_i p_i, per image
            x = x + (rgb_shift[:, :, None, None] / self.std)
        return x.contiguous(memory_format=torch.channels_last)

    def _shifted_crop(self, x: torch.Tensor, spare_y: int, spare_x: int) -> torch.Tensor:
        """A crop of ``self.crop``-sized windows at a random offset per image, in one gather."""
        n = x.shape[0]
        dy = torch.randint(0, spare_y + 1, (n, 1), generator=self.generator)
        dx = torch.randint(0, spare_x + 1, (n, 1), generator=self.generator)
        height, width = x.shape[2] - spare_y, x.shape[3] - spare_x
        rows = (dy + torch.arange(height))[:, :, None]
        cols = (dx + torch.arange(width))[:, None, :]
        return x.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2)

    def _random_resized_crop(self, x: torch.Tensor, min_scale: float) -> torch.Tensor:
        """Crops of random area (min_scale..1) and aspect (3/4..4/3), resized to the crop size
        with one batched bilinear sampling."""
        n = x.shape[0]
        g = self.generator
        area = min_scale + (1 - min_scale) * torch.rand(n, generator=g)
        log_ratio = (torch.rand(n, generator=g) * 2 - 1) * math.log(4 / 3)
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
        cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        grid = F.affine_grid(theta, [n, x.shape[1], *self.crop], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def pca_of(split: Split, samples: int = 2000, seed: int = 0) -> dict:
    """Eigenvalues and eigenvectors of the 3x3 RGB covariance of the training pixels ([0, 1]
    scale), from up to ``samples`` images."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(split), size=min(samples, len(split)), replace=False))
    pixels = split.gather(chosen).reshape(-1, 3).astype(np.float64) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
    return {"eigval": eigval.tolist(), "eigvec": eigvec.tolist()}

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

AUGMENTATIONS = ("hflip, pad_crop[:PIXELS], random_resized_crop[:MIN_SCALE], pca_lighting[:STD], "
                 "rotate[:DEGREES], scale[:FRACTION], translate[:FRACTION], brightness[:FRACTION], "
                 "contrast[:FRACTION], mixup[:ALPHA], cutmix[:ALPHA]")
NORMALIZATIONS = ("dataset", "per_image")


@dataclass(frozen=True)
class Augment:
    hflip: bool = False
    pad_crop: int = 0
    """Pad by this many pixels (reflect) and crop back at a random offset, CIFAR-style."""
    random_resized_crop: float = 0.0
    """Minimum area fraction of Inception-style random resized crops (0: off); aspect 3/4..4/3."""
    pca_lighting: float = 0.0
    """Std of the paper's per-image PCA colour shift along the RGB eigenvectors (0: off)."""
    rotate: float = 0.0
    """Random rotation, uniform within +-this many degrees."""
    scale: float = 0.0
    """Random zoom, uniform within 1 +- this fraction."""
    translate: float = 0.0
    """Random shift, uniform within +- this fraction of the height and width."""
    brightness: float = 0.0
    """Random brightness shift, uniform within +- this fraction of the full pixel range."""
    contrast: float = 0.0
    """Random contrast factor, uniform within 1 +- this fraction, around each image's mean."""
    mixup: float = 0.0
    """Alpha of the Beta(alpha, alpha) weight that blends each image with another one of the
    batch, the loss weighted alike (Zhang et al., mixup, 2018); 0: off."""
    cutmix: float = 0.0
    """Alpha of the Beta(alpha, alpha) share of each image kept when a box of another image is
    pasted in, the loss weighted by area (Yun et al., CutMix, 2019); 0: off. With mixup too,
    each batch uses one of the two at random."""

    @classmethod
    def parse(cls, names: list[str]) -> Augment:
        options: dict = {}
        defaults = {"pad_crop": 4, "random_resized_crop": 0.08, "pca_lighting": 0.1,
                    "rotate": 10.0, "scale": 0.1, "translate": 0.1, "brightness": 0.2,
                    "contrast": 0.2, "mixup": 0.2, "cutmix": 1.0}
        for item in names:
            name, _, arg = item.partition(":")
            if name == "hflip" and not arg:
                options["hflip"] = True
            elif name in defaults:
                try:
                    value = type(defaults[name])(arg) if arg else defaults[name]
                except ValueError:
                    raise ConfigError(f"data.augment: {name} takes a number; got '{item}'") from None
                if not math.isfinite(value) or value < 0:
                    raise ConfigError(f"data.augment: {name} must be a number of at least 0; got '{item}'")
                options[name] = value
            else:
                raise ConfigError(f"data.augment: unknown augmentation '{item}'; valid: {AUGMENTATIONS}")
        return cls(**options)

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.scale or self.translate)

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)


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

    Standardised with the training split's per-channel mean and std, or each image by its own
    mean and std (``normalize="per_image"``). A ``training`` loader shuffles and augments
    (random crops when ``crop`` is smaller than the stored images); otherwise batches come in
    order with the centre crop. Augmentations work on pixel values (0-255) before the
    standardisation. Shuffling and augmentation draw from ``generator`` so that a resumed run
    sees the same batches.
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
        normalize: str = "dataset",
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
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"data.normalize: must be one of {', '.join(NORMALIZATIONS)}; got '{normalize}'")
        self.normalize = normalize
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
                   crop=preprocessing.get("crop"), pca=preprocessing.get("pca"),
                   normalize=preprocessing.get("normalize", "dataset"), **kwargs)

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
            pixels = self.pixels(index)
            yield self.standardize(self.augmented(pixels) if self.training else self.centre(pixels)), labels

    def uncropped(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Whole images in order as pixel values (0-255), for test-time views, which go through
        ``standardize`` one by one."""
        for start in range(0, len(self.labels), self.batch_size):
            index = slice(start, start + self.batch_size)
            yield self.pixels(index), self.labels[index]

    def pixels(self, index) -> torch.Tensor:
        """(N, H, W, C) uint8 rows -> float (N, C, H, W) pixel values, channels_last in memory."""
        return torch.from_numpy(self.split.gather(index)).permute(0, 3, 1, 2).float()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel values -> the model's input scale, channels_last in memory."""
        if self.normalize == "per_image":
            # tf.image.per_image_standardization: the std is floored at 1/sqrt(values), so a
            # flat image does not blow up
            flat = x.flatten(1)
            mean = flat.mean(1).view(-1, 1, 1, 1)
            std = flat.std(1, correction=0).clamp_min(255.0 / math.sqrt(flat.shape[1])).view(-1, 1, 1, 1)
            x = (x - mean) / std
        else:
            x = torch.addcmul(self.shift, x, self.scale)
        return x.contiguous(memory_format=torch.channels_last)

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
        if aug.affine:
            x = self._random_affine(x)
        if aug.hflip:
            flip = torch.rand(n, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if aug.brightness or aug.contrast:
            x = self._brightness_contrast(x)
        if aug.pca_lighting:
            alpha = torch.randn(n, 3, generator=g) * aug.pca_lighting
            eigval = torch.tensor(self.pca["eigval"])
            eigvec = torch.tensor(self.pca["eigvec"])
            rgb_shift = (alpha * eigval) @ eigvec.T  # sum_i alpha_i lambda_i p_i, per image
            x = x + 255.0 * rgb_shift[:, :, None, None]
        return x

    def _uniform(self, n: int, spread: float) -> torch.Tensor:
        """n values uniform within +-spread."""
        return (torch.rand(n, generator=self.generator) * 2 - 1) * spread

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
        ratio = torch.exp(self._uniform(n, math.log(4 / 3)))
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
        cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        return self._sample(x, theta, self.crop, "reflection")

    def _random_affine(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation, zoom and shift of each image, in one batched bilinear sampling; the edges
        are extended, not filled with black."""
        aug, n = self.augment, x.shape[0]
        angle = self._uniform(n, math.radians(aug.rotate))
        zoom = 1 + self._uniform(n, aug.scale)
        shift_x, shift_y = self._uniform(n, 2 * aug.translate), self._uniform(n, 2 * aug.translate)
        # theta maps output coordinates to input ones: the inverse of rotate-and-zoom
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift_x], 1),
                             torch.stack([sin, cos, shift_y], 1)], 1)
        return self._sample(x, theta, tuple(x.shape[2:]), "border")

    @staticmethod
    def _sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], padding: str) -> torch.Tensor:
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)

    def _brightness_contrast(self, x: torch.Tensor) -> torch.Tensor:
        """Each image's deviation from its own mean scaled by 1 +- contrast, then shifted by
        +- brightness of the 0-255 range."""
        aug, n = self.augment, x.shape[0]
        if aug.contrast:
            factor = (1 + self._uniform(n, aug.contrast)).view(-1, 1, 1, 1)
            mean = x.mean((1, 2, 3), keepdim=True)
            x = (x - mean) * factor + mean
        if aug.brightness:
            x = x + 255.0 * self._uniform(n, aug.brightness).view(-1, 1, 1, 1)
        return x.clamp(0.0, 255.0)  # as a camera saturates


def mix_batch(x: torch.Tensor, labels: torch.Tensor, augment: Augment,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup or CutMix of a batch with a shuffled copy of itself: (images, labels of the larger
    share, labels of the smaller share, the larger share's weight >= 0.5). Every loss cnnlab
    has is linear in its targets, so the loss of the mixed targets is the weighted sum of the
    two losses."""
    use_cutmix = augment.cutmix and (not augment.mixup or torch.rand(1, generator=generator).item() < 0.5)
    alpha = augment.cutmix if use_cutmix else augment.mixup
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    share = float(np.random.default_rng(seed).beta(alpha, alpha))
    partner = torch.randperm(x.shape[0], generator=generator)
    if use_cutmix:
        height, width = x.shape[2:]
        cut_h, cut_w = int(height * math.sqrt(1 - share)), int(width * math.sqrt(1 - share))
        top = int(torch.randint(0, height - cut_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - cut_w + 1, (1,), generator=generator))
        x = x.clone()
        x[:, :, top: top + cut_h, left: left + cut_w] = x[partner, :, top: top + cut_h, left: left + cut_w]
        share = 1 - cut_h * cut_w / (height * width)
    else:
        x = share * x + (1 - share) * x[partner]
    if share >= 0.5:
        return x, labels, labels[partner], share
    return x, labels[partner], labels, 1 - share


def pca_of(split: Split, samples: int = 2000, seed: int = 0) -> dict:
    """Eigenvalues and eigenvectors of the 3x3 RGB covariance of the training pixels ([0, 1]
    scale), from up to ``samples`` images."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(split), size=min(samples, len(split)), replace=False))
    pixels = split.gather(chosen).reshape(-1, 3).astype(np.float64) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
    return {"eigval": eigval.tolist(), "eigvec": eigvec.tolist()}

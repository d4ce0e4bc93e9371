"""Augmentation of whole batches with tensor operations (no per-image Python work), on pixel
values (0-255, N x C x H x W) before the standardisation: random crops, flips, affine maps,
photometric jitter, TrivialAugment, the paper's PCA lighting, random erasing, and mixup/CutMix
of a batch with itself."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..config import AUGMENTATIONS
from ..errors import ConfigError
from .resample import affine_sample
from .trivial_augment import LEVELS, OPERATIONS, trivial_augment

AT_MOST = {"random_resized_crop": (1, "the smallest share of the image's area"),
           "translate": (1, "a fraction of the image's side"), "brightness": (1, "a fraction of the pixel range"),
           "contrast": (1, "the contrast factor, 1 +- contrast, stays at 0 or above"),
           "random_erasing": (1, "the probability that an image has a box erased"),
           "gamma": (3, "powers within 1/4..4; beyond them most levels go to black or white"),
           "rotate": (180, "degrees either way; 180 already turns an image any way")}
"""The bounded strengths: the largest each may be, and why (for fractions, Keras' bounds for its
layers; a gamma of 4 takes mid-grey to 0.06; a rotation beyond 180 degrees is one within them)."""

STRENGTHS = {"pad_crop": 4, "random_resized_crop": 0.08, "pca_lighting": 0.1, "rotate": 10.0, "scale": 0.1,
             "translate": 0.1, "brightness": 0.2, "contrast": 0.2, "gamma": 0.5, "random_erasing": 0.25,
             "mixup": 0.2, "cutmix": 1.0}
"""The augmentations that take a strength, and the strength each has when none is given."""

SWITCHES = ("hflip", "trivial_augment")
"""The augmentations that are on or off."""


@dataclass(frozen=True)
class Augment:
    hflip: bool = False
    alternate_flips: bool = False
    """hflip:alternate: each image mirrored in every other epoch instead of at random (a random
    half of them in the first), so that consecutive epochs show the other view of every image
    (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024). The loader, which knows
    the images and the epoch, draws these flips."""
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
    gamma: float = 0.0
    """Random gamma: each image's levels (0-1 scale) raised to a power drawn log-uniformly
    within 1/(1 + this) .. 1 + this (albumentations' RandomGamma); 0: off. A change of exposure
    that per-image standardisation does not undo, where it undoes brightness and contrast."""
    trivial_augment: bool = False
    """One operation per image out of 14 (shears, shifts, rotation, brightness, colour,
    contrast, sharpness, posterize, solarize, autocontrast, equalize or none), at a random
    strength: TrivialAugment's wide space (Müller and Hutter, ICCV 2021), with no setting to
    tune. Not for traffic signs or digits: it rotates by up to 135 degrees."""
    random_erasing: float = 0.0
    """Probability that a random box of an image, 2-33% of its area with aspect 0.3-3.3, is
    replaced by noise (Zhong et al., "Random Erasing Data Augmentation", 2020; timm's
    ``--reprob``); 0: off. Occluded training images make a net use more than one part of the
    object."""
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
        for item in names:
            name, _, arg = item.partition(":")
            if name == "hflip" and arg in ("", "alternate"):
                options.update(hflip=True, alternate_flips=arg == "alternate")
            elif name in SWITCHES and not arg:
                options[name] = True
            elif name in STRENGTHS:
                try:
                    value = type(STRENGTHS[name])(arg) if arg else STRENGTHS[name]
                except ValueError:
                    raise ConfigError.about("data.augment", f": {name} takes a number; got '{item}'") from None
                if not math.isfinite(value) or value < 0:
                    raise ConfigError.about("data.augment", f": {name} must be a number of at least 0; got '{item}'")
                if name == "scale" and value >= 1:
                    raise ConfigError.about("data.augment", f": scale must be below 1 (the zoom, 1 +- scale, stays above 0); "
                                            f"got '{item}'")
                if name in AT_MOST and value > (limit := AT_MOST[name][0]):
                    raise ConfigError.about("data.augment", f": {name} must be at most {limit} ({AT_MOST[name][1]}); "
                                            f"got '{item}'")
                options[name] = value
            else:
                raise ConfigError.about("data.augment", f": unknown augmentation '{item}'; valid: {AUGMENTATIONS}")
        return cls(**options)

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.scale or self.translate)

    @property
    def mixes(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def check(self, channels: int, input_size: tuple[int, int]) -> Augment:
        if self.pca_lighting and channels != 3:
            raise ConfigError.about("data.augment", ": pca_lighting needs RGB images (3 channels)")
        if self.pad_crop >= min(input_size):
            raise ConfigError.about("data.augment", f": pad_crop:{self.pad_crop} pads {self.pad_crop} pixels; a "
                                    f"{input_size[0]}x{input_size[1]} input reflects at most {min(input_size) - 1}")
        return self


def crop_offsets(height: int, width: int, crop: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left corners of the four corner crops and the centre crop."""
    dy, dx = height - crop[0], width - crop[1]
    return [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]


def ten_crops(x: torch.Tensor, crop: tuple[int, int]) -> list[torch.Tensor]:
    """The paper's test-time views: four corners and the centre, each also mirrored."""
    views = [x[:, :, y: y + crop[0], x0: x0 + crop[1]] for y, x0 in crop_offsets(x.shape[2], x.shape[3], crop)]
    return views + [v.flip(3) for v in views]


def shifted_views(x: torch.Tensor, pixels: int = 1) -> list[torch.Tensor]:
    """The image moved ``pixels`` up-left and down-right, the edges mirrored in: with the image
    itself and the mirror images of all three, the test-time views of the fast CIFAR-10
    trainers (Jordan, 2024), for nets trained on small random shifts."""
    padded = F.pad(x, (pixels,) * 4, mode="reflect")
    height, width = x.shape[2], x.shape[3]
    return [padded[:, :, :height, :width], padded[:, :, 2 * pixels:, 2 * pixels:]]


def centre_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    y, x0 = crop_offsets(x.shape[2], x.shape[3], size)[-1]
    return x[:, :, y: y + size[0], x0: x0 + size[1]]


class Augmenter:
    """Applies ``augment`` to training batches cut to ``input_size``, drawing every random
    number from ``generator``. An augmenter that sees ``rows`` of a batch of ``batch`` images
    (one process's share of it) draws the numbers of the whole batch and keeps its rows, so
    the share is augmented as one process would augment it. ``flips`` marks the rows to mirror
    where the caller chooses them (alternating flips); otherwise hflip draws them."""

    def __init__(self, augment: Augment, input_size: tuple[int, int], pca: dict | None,
                 generator: torch.Generator, rows: slice | None = None, batch: int | None = None,
                 flips: torch.Tensor | None = None):
        self.augment, self.input_size, self.pca, self.generator = augment, tuple(input_size), pca, generator
        self.rows, self.batch, self.flips = rows, batch, flips
        self.device = torch.device("cpu")

    def _draw(self, values: torch.Tensor) -> torch.Tensor:
        values = values[self.rows] if self.rows is not None else values
        if self.device.type == "cuda":  # from pinned memory, the copy does not wait for the GPU
            return values.pin_memory().to(self.device, non_blocking=True)
        return values

    def _rand(self, n: int, *shape: int) -> torch.Tensor:
        return self._draw(torch.rand(self.batch or n, *shape, generator=self.generator))

    def _randn(self, n: int, *shape: int) -> torch.Tensor:
        return self._draw(torch.randn(self.batch or n, *shape, generator=self.generator))

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return self._draw(torch.randint(0, high, (self.batch or n, 1), generator=self.generator))

    def _uniform(self, n: int, spread: float) -> torch.Tensor:
        """n values uniform within +-spread."""
        return (self._rand(n) * 2 - 1) * spread

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        aug = self.augment
        self.device = x.device
        n, _, height, width = x.shape
        if aug.random_resized_crop:
            x = self._random_resized_crop(x, aug.random_resized_crop)
        elif self.input_size != (height, width):
            x = self._shifted_crop(x, height - self.input_size[0], width - self.input_size[1])
        if aug.pad_crop:
            pad = aug.pad_crop
            x = self._shifted_crop(F.pad(x, (pad,) * 4, mode="reflect"), 2 * pad, 2 * pad)
        if aug.affine:
            x = self._random_affine(x)
        if aug.hflip:
            flip = self._rand(n) < 0.5 if self.flips is None else self.flips
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if aug.trivial_augment:
            operation = self._randint(len(OPERATIONS), n).flatten()
            level = self._randint(LEVELS, n).flatten() / (LEVELS - 1)
            x = trivial_augment(x, operation, torch.where(self._rand(n) < 0.5, -level, level))
        if aug.brightness or aug.contrast:
            x = self._brightness_contrast(x)
        if aug.gamma:
            power = torch.exp(self._uniform(n, math.log1p(aug.gamma))).view(-1, 1, 1, 1)
            x = 255.0 * (x.clamp(0.0, 255.0) / 255.0) ** power
        if aug.pca_lighting:
            alpha = self._randn(n, 3) * aug.pca_lighting
            eigval = torch.tensor(self.pca["eigval"], device=x.device)
            eigvec = torch.tensor(self.pca["eigvec"], device=x.device)
            rgb_shift = (alpha * eigval) @ eigvec.T  # sum_i alpha_i lambda_i p_i, per image
            x = x + 255.0 * rgb_shift[:, :, None, None]
        if aug.random_erasing:
            x = self._random_erasing(x)
        return x

    def _shifted_crop(self, x: torch.Tensor, spare_y: int, spare_x: int) -> torch.Tensor:
        """A crop of ``self.input_size``-sized windows at a random offset per image, in one gather."""
        n = x.shape[0]
        dy, dx = self._randint(spare_y + 1, n), self._randint(spare_x + 1, n)
        height, width = x.shape[2] - spare_y, x.shape[3] - spare_x
        rows = (dy + torch.arange(height, device=x.device))[:, :, None]
        cols = (dx + torch.arange(width, device=x.device))[:, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def _random_resized_crop(self, x: torch.Tensor, min_scale: float) -> torch.Tensor:
        """Crops of random area (min_scale..1) and aspect (3/4..4/3), resized to the crop size
        with one batched bilinear sampling."""
        n = x.shape[0]
        area = min_scale + (1 - min_scale) * self._rand(n)
        ratio = torch.exp(self._uniform(n, math.log(4 / 3)))
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (self._rand(n) * 2 - 1) * (1 - w)
        cy = (self._rand(n) * 2 - 1) * (1 - h)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
        return affine_sample(x, theta, self.input_size, "reflection")

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
        return affine_sample(x, theta, tuple(x.shape[2:]), "border")

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

    def _random_erasing(self, x: torch.Tensor) -> torch.Tensor:
        """One box per chosen image, of random area and aspect (Zhong et al.'s ranges) at a
        random place, filled with uniform noise: one masked select for the whole batch."""
        n, channels, height, width = x.shape
        erased = self._rand(n) < self.augment.random_erasing
        area = (0.02 + (1 / 3 - 0.02) * self._rand(n)) * height * width
        aspect = torch.exp(self._uniform(n, math.log(1 / 0.3)))
        box_h = torch.sqrt(area * aspect).round().clamp(1, height)
        box_w = torch.sqrt(area / aspect).round().clamp(1, width)
        top = (self._rand(n) * (height - box_h + 1)).floor()
        left = (self._rand(n) * (width - box_w + 1)).floor()
        rows = torch.arange(height, device=x.device)[None, :, None]
        cols = torch.arange(width, device=x.device)[None, None, :]
        inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
                  & (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None]) & erased[:, None, None])
        shape = (self.batch or n, channels, height, width)
        count = math.prod(shape)
        # random bytes as the bytes of random 64-bit integers: six times faster than uint8 draws
        words = torch.randint(-2**63, 2**63 - 1, (-(-count // 8),), generator=self.generator, dtype=torch.int64)
        noise = self._draw(words.view(torch.uint8)[:count].view(shape))
        return torch.where(inside[:, None], noise, x)


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
    partner = torch.randperm(x.shape[0], generator=generator).to(x.device)
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



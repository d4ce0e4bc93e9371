"""What turns a stored image into a model input: the decode size, the model's input size, the
channels, the standardisation and the source options. Derived once when a run starts, stored in
its checkpoints, and read back by evaluate, predict and export."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..config import NORMALIZATIONS
from ..errors import ConfigError
from .dataset import MAX_SIDE, Dataset, Split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel mean and std of pixels on the 0-1 scale (``normalize: imagenet``), as
torchvision's pretrained models take them."""


def size_text(size) -> str:
    """A size as HxW: how the flags take it, and plain beside a recipe's [height, width]."""
    return "x".join(str(side) for side in size)


def resolve_sizes(image_size, crop, default: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(decode size, model input size) from the config's ``image_size`` and ``crop``: the input
    is the crop, else the decode size, else the model's default; the decode size defaults to
    the input."""
    input_size = tuple(crop or image_size or default)
    decoded = tuple(image_size or input_size)
    for key, size in (("data.image_size", decoded), ("data.crop", input_size)):
        if len(size) != 2 or min(size) < 1:
            raise ConfigError.about(key, f": expected [height, width]; got {list(size)}")
        if max(size) > MAX_SIDE:
            raise ConfigError.about(key, f": {size_text(size)} is larger than cnnlab decodes ({MAX_SIDE} pixels a side)")
    if input_size[0] > decoded[0] or input_size[1] > decoded[1]:
        raise ConfigError.about("data.crop", lambda name: f" {size_text(input_size)} is larger than "
                                f"{name('data.image_size')} {size_text(decoded)}: give a smaller one, or none "
                                "(data.crop=null) for inputs of the whole decoded image")
    return (int(decoded[0]), int(decoded[1])), (int(input_size[0]), int(input_size[1]))


def check_normalize(name: str) -> str:
    if name not in NORMALIZATIONS:
        raise ConfigError.about("data.normalize", f": must be one of {', '.join(NORMALIZATIONS)}; got '{name}'")
    return name


def values_text(values) -> str:
    """A list of numbers as the flags take it: ``0.5 0.25``."""
    return " ".join(f"{value:g}" for value in values)


def given_statistics(mean: list[float], std: list[float], channels: int,
                     spec: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``data.mean`` and ``data.std`` for images of ``channels`` channels: one value is every
    channel's."""
    for key, values in (("data.mean", mean), ("data.std", std)):
        if len(values) not in (1, channels):
            raise ConfigError.about(key, f" {values_text(values)}: {len(values)} values, and {spec} gives {channels} "
                                    f"channel{'s' if channels > 1 else ''}; give one value for all channels, or one "
                                    "per channel")
    return tuple(mean) * (channels // len(mean)), tuple(std) * (channels // len(std))


@dataclass(frozen=True)
class Preprocessing:
    mean: tuple[float, ...]
    """Per-channel mean of the training pixels, 0-1 scale (``normalize: dataset``)."""
    std: tuple[float, ...]
    input_size: tuple[int, int] | None = None
    """Height and width the model takes, cut from the decoded image (None: all of it)."""
    image_size: tuple[int, int] | None = None
    """Height and width images are decoded at."""
    channels: int | None = None
    normalize: str = "dataset"
    pca: dict | None = None
    """Eigenvalues and eigenvectors of the training pixels' RGB covariance (pca_lighting)."""
    source_options: dict = field(default_factory=dict)
    """The data source's options the run was trained with (GTSRB's roi_crop...)."""

    def __post_init__(self):
        check_normalize(self.normalize)
        for name in ("input_size", "image_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, (int(value[0]), int(value[1])))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        """Plain data for a checkpoint (read back with weights_only=True)."""
        record = asdict(self)
        crop = record.pop("input_size") or record["image_size"]
        record["crop"] = list(crop) if crop else None
        record["image_size"] = list(record["image_size"]) if record["image_size"] else None
        record.update(mean=list(self.mean), std=list(self.std))
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Preprocessing:
        """From a checkpoint's record, including those written before normalize and
        source_options existed."""
        return cls(mean=record["mean"], std=record["std"], input_size=record.get("crop"),
                   image_size=record.get("image_size"), channels=record.get("channels"),
                   normalize=record.get("normalize", "dataset"), pca=record.get("pca"),
                   source_options=dict(record.get("source_options") or {}))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Float pixel values (0-255, N x C x H x W) -> the model's input scale, channels_last."""
        if self.normalize == "equalized":
            x = equalized(x)
        if self.normalize in ("per_image", "equalized"):
            # tf.image.per_image_standardization: the std is floored at 1/sqrt(values), so a flat
            # image does not blow up
            flat = x.flatten(1)
            mean = flat.mean(1).view(-1, 1, 1, 1)
            std = flat.std(1, correction=0).clamp_min(255.0 / math.sqrt(flat.shape[1])).view(-1, 1, 1, 1)
            x = (x - mean) / std
        else:
            shift, scale = _affine(self.mean, self.std, x.device)
            x = torch.addcmul(shift, x, scale)
        return x.contiguous(memory_format=torch.channels_last)


def equalized(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each image and channel, as OpenCV's equalizeHist: a pixel of
    level v becomes 255 x the share of the pixels above the image's lowest level that are at or
    below v, so a washed-out or dark image spans the whole range. ``x``: 0-255 pixel values, N x C x H x W, rounded to levels."""
    levels = x.clamp(0, 255).round().to(torch.int64).flatten(2)
    counts = torch.zeros(*levels.shape[:2], 256, device=x.device).scatter_add_(
        2, levels, torch.ones(levels.shape, device=x.device))
    below = counts.cumsum(2)
    lowest = below.gather(2, levels.amin(2, keepdim=True))
    spread = (levels.shape[2] - lowest).clamp_min(1)
    return ((below.gather(2, levels) - lowest) * (255 / spread)).view(x.shape)


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift and scale taking 0-255 pixels to (x/255 - mean) / std, made once per device (a
    copy to a GPU every batch would wait for it)."""
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    shift = -torch.tensor(mean).view(1, -1, 1, 1) / std_t
    return shift.to(device), (1.0 / (255.0 * std_t)).to(device)


def derive(dataset: Dataset, image_size: tuple[int, int], input_size: tuple[int, int],
           normalize: str, source_options: dict,
           statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Preprocessing:
    """The preprocessing of a run training on ``dataset``: the mean and std ``statistics``
    given (those of pretrained weights), ImageNet's for ``imagenet``, else its training split's
    (``main_split``: a test set alone can still be benchmarked)."""
    if normalize == "imagenet":
        statistics = IMAGENET_MEAN, IMAGENET_STD
    mean, std = statistics or dataset.channel_stats(dataset.main_split)
    pca = pca_of(dataset.splits[dataset.main_split]) if dataset.channels == 3 else None
    return Preprocessing(mean, std, input_size, image_size, dataset.channels, normalize, pca,
                         dict(source_options))


def pca_of(split: Split, samples: int = 2000, seed: int = 0) -> dict:
    """Eigenvalues and eigenvectors of the 3x3 RGB covariance of the training pixels ([0, 1]
    scale), from up to ``samples`` images."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(split), size=min(samples, len(split)), replace=False))
    pixels = split.gather(chosen).reshape(-1, 3).astype(np.float64) / 255.0
    eigval, eigvec = np.linalg.eigh(np.cov(pixels, rowvar=False))
    return {"eigval": eigval.tolist(), "eigvec": eigvec.tolist()}

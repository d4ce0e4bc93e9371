"""Resampling a batch of images through an affine map, the one step that every geometric
augmentation (random resized crops, affine jitter, TrivialAugment's shears, shifts and turns)
ends with."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def affine_sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int], padding: str) -> torch.Tensor:
    """Each image of ``x`` sampled bilinearly at ``size`` through its 2x3 map ``theta`` (output
    to input, normalised coordinates); ``padding`` (zeros, border or reflection) is what lies
    outside the image."""
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)

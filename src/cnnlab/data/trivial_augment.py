"""TrivialAugment (Müller and Hutter, "TrivialAugment: Tuning-free Yet State-of-the-Art Data
Augmentation", ICCV 2021): each image gets one operation, chosen uniformly, at a strength drawn
uniformly from 31 levels, in the paper's wide search space (torchvision's TrivialAugmentWide).
The photometric operations follow Pillow's ImageEnhance and ImageOps, which the paper used, on
batches of pixel values (0-255, N x C x H x W); the geometric ones fill what they uncover with
black, as the paper does."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .resample import affine_sample

LEVELS = 31
"""Strengths are drawn from this many evenly spaced levels, 0 to the operation's maximum."""

GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma, as Pillow converts RGB to L."""


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Pillow's ImageEnhance: factor 0 gives the degenerate image, 1 the image, above 1 more."""
    return degenerate + (x - degenerate) * factor.view(-1, 1, 1, 1)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return affine_sample(x, theta, tuple(x.shape[2:]), "zeros")


def _shear(x: torch.Tensor, strength: torch.Tensor, horizontal: bool) -> torch.Tensor:
    """A pixel shear of up to 0.99; in normalised coordinates it is scaled by the aspect ratio."""
    height, width = x.shape[2:]
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).repeat(len(x), 1, 1)
    if horizontal:
        theta[:, 0, 1] = strength * 0.99 * height / width
    else:
        theta[:, 1, 0] = strength * 0.99 * width / height
    return _affine(x, theta)


def _translate(x: torch.Tensor, strength: torch.Tensor, horizontal: bool) -> torch.Tensor:
    """A shift of up to 32 pixels, as the wide space has it whatever the image's size."""
    side = x.shape[3] if horizontal else x.shape[2]
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).repeat(len(x), 1, 1)
    theta[:, 0 if horizontal else 1, 2] = strength * 32.0 * 2 / side
    return _affine(x, theta)


def _rotate(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """A rotation of up to 135 degrees about the centre, in pixel space (non-square images too)."""
    height, width = x.shape[2:]
    angle = strength * math.radians(135.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin * height / width, torch.zeros_like(cos)], 1),
                         torch.stack([sin * width / height, cos, torch.zeros_like(cos)], 1)], 1)
    return _affine(x, theta)


def _brightness(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, 1 + 0.99 * strength)


def _color(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(x).expand_as(x), x, 1 + 0.99 * strength)


def _contrast(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    mean = (_grey(x).mean((1, 2, 3), keepdim=True) + 0.5).floor()
    return _blend(mean.expand_as(x), x, 1 + 0.99 * strength)


def _sharpness(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Blend with Pillow's SMOOTH filter (3x3, centre 5, the rest 1, over 13), which leaves the
    outermost pixels as they are (all of them, in an image under 3 pixels a side)."""
    channels = x.shape[1]
    if min(x.shape[2:]) < 3:
        return x
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(channels, 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=channels)
    return _blend(smooth, x, 1 + 0.99 * strength)


def _posterize(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Keep 8 down to 2 of each value's bits."""
    dropped = 2.0 ** (8 - torch.round(8 - 6 * strength.abs())).view(-1, 1, 1, 1)
    return torch.floor(x.round() / dropped) * dropped


def _solarize(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above a threshold, from 255 down to 0."""
    threshold = (255.0 * (1 - strength.abs())).view(-1, 1, 1, 1)
    return torch.where(x >= threshold, 255.0 - x, x)


def _histograms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's channels as integer values (N*C rows) and their 256-bin histograms."""
    values = x.round().clamp(0, 255).long().flatten(2).flatten(0, 1)
    counts = torch.zeros(values.shape[0], 256, dtype=torch.long, device=x.device)
    return values, counts.scatter_add_(1, values, torch.ones_like(values))


def _autocontrast(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Each channel stretched from its lowest to its highest value onto 0-255 (Pillow's
    autocontrast: the table truncates)."""
    values, counts = _histograms(x)
    levels = torch.arange(256, device=x.device)
    present = counts > 0
    low = torch.where(present, levels, 256).min(1, keepdim=True).values
    high = torch.where(present, levels, -1).max(1, keepdim=True).values
    stretched = high > low
    scale = 255.0 / (high - low).clamp(min=1).double()  # in double, as Pillow's table is computed
    table = torch.where(stretched, (levels * scale - low * scale).long().clamp(0, 255), levels)
    return table.gather(1, values).view_as(x).to(x.dtype)


def _equalize(x: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Each channel's histogram equalised, Pillow's table exactly: step = (pixels - count of the
    highest value) // 255, value v -> (pixels below v + step // 2) // step."""
    values, counts = _histograms(x)
    levels = torch.arange(256, device=x.device)
    highest = torch.where(counts > 0, levels, -1).max(1, keepdim=True).values
    step = (counts.sum(1, keepdim=True) - counts.gather(1, highest)) // 255
    below = counts.cumsum(1) - counts
    table = torch.where(step > 0, (below + step // 2) // step.clamp(min=1), levels).clamp(max=255)
    return table.gather(1, values).view_as(x).to(x.dtype)


OPERATIONS = {
    "identity": lambda x, s: x,
    "shear_x": lambda x, s: _shear(x, s, True),
    "shear_y": lambda x, s: _shear(x, s, False),
    "translate_x": lambda x, s: _translate(x, s, True),
    "translate_y": lambda x, s: _translate(x, s, False),
    "rotate": _rotate,
    "brightness": _brightness,
    "color": _color,
    "contrast": _contrast,
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}
"""The wide space's operations, each given images and a signed strength per image in -1..1
(a fraction of the operation's maximum; posterize and solarize use its size only)."""


def trivial_augment(x: torch.Tensor, operation: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """Apply OPERATIONS[operation[i]] at ``strength[i]`` to image i; each operation runs once,
    on the images that drew it."""
    out = x.clone()
    for index, apply in enumerate(OPERATIONS.values()):
        chosen = torch.nonzero(operation == index).flatten()
        if len(chosen):
            out[chosen] = apply(x[chosen], strength[chosen])
    return out.clamp(0.0, 255.0)

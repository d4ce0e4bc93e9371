"""``cnnlab data info``: what a data source holds, before training on it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .dataset import load_dataset
from .sources import read_source


def size_range(spec: str, options: dict | None = None) -> str:
    source = read_source(spec, options)
    sizes = set()
    for part in source.splits.values():
        if part.images is not None:
            sizes.add(part.images.shape[1:3])
            continue
        for path in part.paths:
            try:
                with Image.open(path) as image:  # reads the header only
                    sizes.add((image.height, image.width))
            except (OSError, ValueError, SyntaxError):
                continue
    if not sizes:
        return "none readable"
    low, high = min(sizes), max(sizes)
    return f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]}"


def describe(spec: str, val_split: float = 0.1, seed: int = 0, stats_size: int = 64,
             options: dict | None = None) -> dict:
    """Per-class counts per split (after the train/val split cnnlab would make), image sizes,
    channels, and the training split's per-channel mean and std."""
    source = read_source(spec, options)
    first = next(iter(source.splits.values()))
    size = None if first.images is not None else (stats_size, stats_size)
    dataset = load_dataset(spec, size, None, val_split, seed, options=options)
    mean, std = dataset.channel_stats()
    counts = {name: dict(zip(dataset.classes, np.bincount(split.labels, minlength=dataset.num_classes).tolist(), strict=True))
              for name, split in dataset.splits.items()}
    return {"spec": spec, "classes": dataset.classes, "num_classes": dataset.num_classes,
            "channels": dataset.channels, "size_range": size_range(spec, options), "mean": mean, "std": std,
            "counts": counts, "unreadable": dataset.unreadable}

"""``cnnlab data info``: what a data source holds, before training on it."""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..runtime import cpu_count
from .augment import Augment
from .dataset import Dataset, load_dataset
from .images import DECODE_ERRORS, exif_warnings_silenced, try_decode
from .loader import BatchLoader
from .preprocessing import derive, resolve_sizes
from .sources import read_source


def size_range(source) -> str:
    """The smallest and largest image size of a source, from file headers."""
    sizes = set()
    for part in source.splits.values():
        if part.images is not None:
            sizes.add(part.images.shape[1:3])
            continue
        for path in part.paths:
            try:
                with Image.open(path) as image:  # reads the header only
                    sizes.add((image.height, image.width))
            except DECODE_ERRORS:
                continue
    if not sizes:
        return "none readable"
    low, high = min(sizes), max(sizes)
    return f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]}"


def describe(spec: str, val_split: float = 0.1, seed: int = 0, stats_size: int = 64,
             options: dict | None = None) -> tuple[dict, Dataset]:
    """Per-class counts per split (after the train/val split cnnlab would make), image sizes,
    channels, and the per-channel mean and std of the training split (of the test split, for a
    test set on its own); and the data set itself."""
    source = read_source(spec, options)
    sizes = size_range(source)
    first = next(iter(source.splits.values()))
    size = None if first.images is not None else (stats_size, stats_size)
    dataset = load_dataset(spec, size, None, val_split, seed, options=options, source=source,
                           every_class=False)
    mean, std = dataset.channel_stats(dataset.main_split)
    counts = {name: dict(zip(dataset.classes, np.bincount(split.labels, minlength=dataset.num_classes).tolist(), strict=True))
              for name, split in dataset.splits.items()}
    report = {"spec": spec, "classes": dataset.classes, "num_classes": dataset.num_classes,
              "channels": dataset.channels, "size_range": sizes, "mean": mean, "std": std,
              "stats_split": dataset.main_split,
              "counts": counts, "unreadable": dataset.unreadable, "notes": dataset.notes}
    return report, dataset


def verify(spec: str, options: dict | None = None,
           progress: bool = True) -> tuple[int | None, dict[str, str]]:
    """Fully decode every image file of a source: (files checked, or None for a source whose
    pixels are arrays in its data files; unreadable files with reasons)."""
    source = read_source(spec, options)
    paths = [p for part in source.splits.values() if part.paths is not None for p in part.paths]
    if not paths:
        return None, {}
    with tqdm(total=len(paths), desc="verifying", unit="img", disable=None if progress else True, leave=False) as bar:
        unreadable = {}
        with exif_warnings_silenced(), ThreadPoolExecutor(max_workers=cpu_count()) as pool:
            for path, result in zip(paths, pool.map(lambda p: try_decode(p, None, 3), paths), strict=True):
                if isinstance(result, str):
                    unreadable[str(path)] = result
                bar.update(1)
    return len(paths), unreadable


def batch_rate(loader: BatchLoader, images: int) -> float:
    """img/s at which ``loader`` builds batches (gather, augmentation, normalisation), passing
    over its split as often as it takes to build ``images`` images."""
    count, started = 0, time.perf_counter()
    while count < images:
        for batch, _ in loader:
            count += len(batch)
            if count >= images:
                break
    return count / (time.perf_counter() - started)


def bench(spec: str, image_size: tuple[int, int] | None, crop: tuple[int, int] | None,
          augment: list[str], batch_size: int = 128, batches: int = 50,
          options: dict | None = None) -> dict:
    """img/s of decoding into the cache (from scratch, in a temporary cache) and of augmented
    training batches built from it (from its test split, for a test set on its own)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        started = time.perf_counter()
        dataset = load_dataset(spec, image_size, None, 0.0, 0, options=options,
                               cache_dir=Path(cache_dir))
        decode_seconds = time.perf_counter() - started
        files = dataset.cache.get("images", 0)
        train = dataset.splits[dataset.main_split]
        decoded, input_size = resolve_sizes(image_size, crop, dataset.image_size)
        preprocessing = derive(dataset, decoded, input_size, "dataset", options or {})
        loader = BatchLoader(train, batch_size, preprocessing, training=True,
                             augment=Augment.parse(augment))
        batch_images_per_second = batch_rate(loader, batches * batch_size)
    return {"spec": spec, "images": len(train), "decoded_files": files,
            "decode_images_per_second": files / decode_seconds if files else None,
            "load_seconds": decode_seconds, "batch_images_per_second": batch_images_per_second,
            "batch_size": batch_size, "augment": augment, "image_size": list(dataset.image_size),
            "crop": list(input_size), "threads": cpu_count()}

"""``cnnlab data info``: what a data source holds, before training on it."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..runtime import cpu_count, cpu_text
from .augment import Augment, mix_batch
from .dataset import Dataset, Split, load_dataset
from .images import DECODE_ERRORS, exif_warnings_silenced, map_images, try_decode
from .loader import BatchLoader
from .preprocessing import Preprocessing, derive, pca_of, resolve_sizes
from .sources import read_source


def size_range(source) -> str:
    """The smallest and largest image size of a source, from file headers."""

    def size_of(file, _) -> tuple[int, int] | None:
        try:
            with Image.open(file) as image:  # reads the header only
                return image.height, image.width
        except DECODE_ERRORS:
            return None

    sizes = set()
    for part in source.splits.values():
        if part.images is not None:
            sizes.add(part.images.shape[1:3])
            continue
        sizes.update(size for _, size in map_images(part.paths, size_of) if isinstance(size, tuple))
    if not sizes:
        return "none readable"
    low, high = min(sizes), max(sizes)
    return f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]} to {high[0]}x{high[1]}"


def describe(spec: str, val_split: float = 0.1, seed: int = 0, image_size: tuple[int, int] | None = None,
             options: dict | None = None) -> tuple[dict, Dataset]:
    """Per-class counts per split (after the train/val split cnnlab would make), image sizes,
    channels, and the per-channel mean and std of the training split (of the test split, for a
    test set on its own); and the data set itself, decoded at ``image_size`` (default: arrays
    as stored, image files at 64x64)."""
    source = read_source(spec, options)
    sizes = size_range(source)
    first = next(iter(source.splits.values()))
    size = image_size or (None if first.images is not None else (64, 64))
    dataset = load_dataset(spec, size, None, val_split, seed, options=options, source=source,
                           every_class=False)
    mean, std = dataset.channel_stats(dataset.main_split)
    counts = {name: dict(zip(dataset.classes, np.bincount(split.labels, minlength=dataset.num_classes).tolist(), strict=True))
              for name, split in dataset.splits.items()}
    report = {"spec": spec, "classes": dataset.classes, "descriptions": dataset.descriptions,
              "num_classes": dataset.num_classes,
              "channels": dataset.channels, "size_range": sizes, "mean": mean, "std": std,
              "stats_split": dataset.main_split,
              "counts": counts, "unreadable": dataset.unreadable, "notes": dataset.notes}
    return report, dataset


def augmented_views(dataset: Dataset, augment: list[str], crop: tuple[int, int] | None, views: int = 7,
                    rows: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """An image of each of the first ``rows`` classes as evaluation sees it (the centre crop),
    then ``views`` training views of it drawn with ``augment`` as the training loader draws
    them: what the model is shown. Returns the views, a row per image, and their titles.
    With mixup or CutMix, which mix two images in the training step, the trained views are
    the batch of them mixed as that step mixes it, each titled with the larger part's share
    and class and the other part's class."""
    split = dataset.splits[dataset.main_split]
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(split.labels == c)) for c in np.unique(split.labels)][:rows]
    stored = split.gather(np.asarray(picked, dtype=np.int64))
    channels = dataset.channels
    # a standardisation that leaves pixel values as they are: mean 0, std 1/255
    unchanged = Preprocessing([0.0] * channels, [1 / 255] * channels, crop or dataset.image_size, dataset.image_size,
                              channels, pca=pca_of(split) if channels == 3 else None)

    parsed = Augment.parse(augment)
    names = [dataset.classes[split.labels[index]] for index in picked]

    def shown(images: np.ndarray, training: bool) -> tuple[np.ndarray, list[str]]:
        # each image's position rides as its label through the training loader's shuffle
        part = Split(images, np.arange(len(images)), [str(i) for i in range(len(images))])
        loader = BatchLoader(part, len(images), unchanged, training=training,
                             augment=parsed if training else None, seed=seed)
        pixels, positions = next(iter(loader))
        titles = ["trained"] * len(images)
        if training and parsed.mixes:
            pixels, larger, smaller, share = mix_batch(pixels, positions, parsed, torch.Generator().manual_seed(seed))
            for k, position in enumerate(positions.tolist()):
                titles[position] = (f"{share:.0%} {names[larger[k] // views][:8]} + "
                                    f"{names[smaller[k] // views][:8]}")
        out = np.empty((len(images), *pixels.shape[2:], channels), dtype=np.uint8)
        out[positions.numpy()] = pixels.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
        return out, titles

    evaluated, _ = shown(stored, False)
    trained, trained_titles = shown(np.repeat(stored, views, axis=0), True)
    grid, titles = [], []
    for row in range(len(picked)):
        grid += [evaluated[row], *trained[row * views:(row + 1) * views]]
        titles += [f"{names[row][:14]}: evaluated", *trained_titles[row * views:(row + 1) * views]]
    return np.stack(grid), titles


def verify(spec: str, options: dict | None = None,
           progress: bool = True) -> tuple[int | None, dict[str, str]]:
    """Fully decode every image (a file, or one kept in a table) of a source: (images checked,
    or None for a source whose pixels are arrays in its data files; unreadable ones with reasons)."""
    source = read_source(spec, options)
    paths = [p for part in source.splits.values() if part.paths is not None for p in part.paths]
    if not paths:
        return None, {}
    with tqdm(total=len(paths), desc="verifying", unit="img", disable=None if progress else True, leave=False) as bar:
        unreadable = {}
        with exif_warnings_silenced():
            for index, result in map_images(paths, lambda image, _: try_decode(image, None, 3)):
                if isinstance(result, str):
                    unreadable[str(paths[index])] = result
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
    training batches built from it (from its test split, for a test set on its own), and the
    CPU they were measured on."""
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
            "crop": list(input_size), "threads": cpu_count(), "cpu": cpu_text()}

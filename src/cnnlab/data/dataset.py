"""From a SPEC string to decoded, split, normalisable uint8 arrays: the one path every source
goes through."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnlabWarning, ConfigError, DataError, callers_stacklevel
from .cache import decode_cached
from .images import resize_images
from .sources import RawSplit, SourceData, read_source
from .split import stratified_split, stratified_subset

MAX_SIDE = 4096
"""The largest height or width images are decoded at (a decode cache of larger images would
not fit in memory or on disk for any data set worth training on)."""


@dataclass
class Split:
    images: np.ndarray
    """(M, H, W, C) uint8 backing rows, in memory or memory-mapped from the decode cache."""
    labels: np.ndarray
    ids: list[str]
    rows: np.ndarray | None = None
    """The rows of ``images`` holding this split's samples, in order; None: all rows."""

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:  # not every pixel and id
        return f"Split({len(self)} images of {'x'.join(map(str, self.images.shape[1:]))})"

    def gather(self, indices: np.ndarray | slice) -> np.ndarray:
        """Pixels of the given samples, read from the backing rows (only these reach RAM)."""
        if self.rows is None:
            return np.asarray(self.images[indices])
        rows = self.rows[indices]
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on a memmap
        pixels = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        pixels[order] = self.images[rows[order]]
        return pixels

    def pixels(self) -> np.ndarray:
        return self.gather(slice(None))

    def relabelled(self, mapping: np.ndarray) -> Split:
        """The same samples with label ``i`` replaced by ``mapping[i]``."""
        return Split(self.images, mapping[self.labels], self.ids, self.rows)


def concat_splits(parts: list[Split]) -> Split:
    """One split holding the samples of several, in order (rows of one cached array stay rows)."""
    if len(parts) == 1:
        return parts[0]
    labels = np.concatenate([part.labels for part in parts])
    ids = [sample for part in parts for sample in part.ids]
    if len({id(part.images) for part in parts}) == 1 and all(p.rows is not None for p in parts):
        return Split(parts[0].images, labels, ids, np.concatenate([part.rows for part in parts]))
    return Split(np.concatenate([part.pixels() for part in parts]), labels, ids)


@dataclass
class Dataset:
    spec: str
    classes: list[str]
    splits: dict[str, Split]
    image_size: tuple[int, int]
    channels: int
    unreadable: dict[str, str] = field(default_factory=dict)
    """Files skipped because they could not be decoded, with the reason."""
    notes: list[str] = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    """Where file-based images were decoded to, and whether that cache already held them."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """What a class is, where its name does not say (SourceData.descriptions)."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:  # what it holds in a line, as a Hugging Face Dataset says it
        sizes = ", ".join(f"{name} {len(split)}" for name, split in self.splits.items())
        unreadable = f"; {len(self.unreadable)} unreadable" if self.unreadable else ""
        shape = "x".join(map(str, (*self.image_size, self.channels)))
        return f"Dataset({self.spec!r}: {self.num_classes} classes, {shape}; {sizes}{unreadable})"

    def split_ids(self) -> dict[str, list[str]]:
        return {name: split.ids for name, split in self.splits.items()}

    @property
    def main_split(self) -> str:
        """The training split; for a test set on its own, the split there is."""
        return "train" if "train" in self.splits else next(iter(self.splits))

    def channel_stats(self, split: str) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of a split's pixels (the training split's, which a run
        standardises with), scaled to [0, 1]."""
        train = self.splits[split]
        total = np.zeros(self.channels)
        squares = np.zeros(self.channels)
        for start in range(0, len(train), 2048):
            chunk = train.gather(slice(start, start + 2048))
            chunk = chunk.reshape(-1, self.channels).astype(np.float64) / 255.0
            total += chunk.sum(0)
            squares += (chunk**2).sum(0)
        count = max(len(train) * self.image_size[0] * self.image_size[1], 1)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
        return mean.tolist(), np.maximum(std, 1e-3).tolist()


def load_dataset(
    spec: str,
    image_size: tuple[int, int] | list[int] | None = None,
    channels: int | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    subset: int | None = None,
    split_ids: dict[str, list[str]] | None = None,
    progress: bool = True,
    options: dict | None = None,
    source: SourceData | None = None,
    cache_dir: Path | None = None,
    every_class: bool = True,
) -> Dataset:
    """Read a data source, split it and decode it at ``image_size`` (height, width).

    ``split_ids`` (a run's split.json) reproduces a recorded split exactly; otherwise the
    training split is divided by ``val_split`` and ``seed``, stratified by class, unless the
    source has its own validation split. Official test splits stay test splits. Training
    needs ``every_class`` to have training samples; describing a source does not.
    """
    check_split_options(val_split, channels)
    source = source or read_source(spec, options)
    channels = source.channels if channels is None else channels
    if image_size is None:
        first = next(iter(source.splits.values()))
        if first.images is None:
            raise DataError.about("data", f" {spec}: give an image size for image files")
        image_size = first.images.shape[1:3]
    image_size = (int(image_size[0]), int(image_size[1]))
    if min(image_size) < 1 or max(image_size) > MAX_SIDE:
        raise DataError.about("image_size", f": {image_size[0]}x{image_size[1]} is outside 1..{MAX_SIDE} pixels a side")

    unreadable, cache = _decode_files(source, image_size, channels, progress, cache_dir, spec)
    raw = choose_splits(source.splits, val_split, seed, subset, split_ids, spec)
    splits = {}
    for name, part in raw.items():
        if part.images.shape[1:] == (*image_size, channels):
            splits[name] = Split(part.images, part.labels, part.ids, part.rows)
        else:  # pixels shipped at another size (digits, MNIST at 32x32...): resize once
            resized = resize_images(np.asarray(part.images[part.rows]), image_size, channels)
            splits[name] = Split(resized, part.labels, part.ids)

    counts = np.bincount(splits["train"].labels, minlength=len(source.classes)) if "train" in splits else None
    empty = [] if counts is None else [source.classes[c] for c in np.flatnonzero(counts == 0)]
    if empty and every_class:
        imageless = set(empty) - {source.classes[label] for part in source.splits.values() for label in np.unique(part.labels)}
        if imageless:
            raise DataError.about("data", f" {spec}: class '{min(imageless)}' has no images at all; add some, or "
                                  "leave the class out")
        others = f" (nor have {len(empty) - 1} other classes)" if len(empty) > 1 else ""
        raise DataError.about("data", lambda name: f" {spec}: class '{empty[0]}' has no training samples{others}; "
                              f"add images or lower {name('val_split')}")
    notes = list(source.notes)
    for name in [name for name, part in splits.items() if name != "train" and not len(part)]:
        # e.g. one image per class: a stratified fraction of nothing; an empty split breaks metrics
        del splits[name]
        of = f"{len(splits['train'])} samples in {len(source.classes)} classes); left out"
        note = CnnlabWarning.about("data", lambda option, split=name, of=of: f" {spec}: the {split} split would be "
                                   f"empty ({option('val_split')}={val_split} of {of}")
        warnings.warn(note, stacklevel=callers_stacklevel())
        notes.append(str(note))
    return Dataset(spec, source.classes, splits, image_size, channels, unreadable, notes, cache,
                   source.descriptions)


def choose_splits(
    splits: dict[str, RawSplit],
    val_split: float,
    seed: int,
    subset: int | None,
    split_ids: dict[str, list[str]] | None,
    spec: str,
) -> dict[str, RawSplit]:
    """The splits a run trains, validates and tests on (``load_dataset``'s rules), from a
    source's splits, decoded or not."""
    check_seed(seed)
    if split_ids is not None:
        pool = {}
        for part in splits.values():
            pool.update({sample_id: (part, i) for i, sample_id in enumerate(part.ids)})
        chosen = {}
        for name, ids in split_ids.items():
            missing = [i for i in ids if i not in pool]
            if missing:
                many = len(missing) > 1
                raise DataError.about("data", f" {spec}: {len(missing)} sample{'s' if many else ''} of the {name} split "
                                      f"the run recorded (its split.json) {'are' if many else 'is'} not in this data "
                                      f"(first: {missing[0]})")
            chosen[name] = _gather([pool[i] for i in ids])
        return chosen

    chosen = dict(splits)
    if "train" not in chosen:  # a test set on its own (to evaluate a run on)
        return chosen
    if "val" not in chosen and val_split > 0:
        train, val = split_by_group(chosen["train"], val_split, seed)
        chosen["val"] = chosen["train"].take(val)
        chosen["train"] = chosen["train"].take(train)
    if check_subset(subset) is not None:
        for name, part in chosen.items():
            # validation and test shrink in proportion, so a quick run stays quick
            size = subset if name == "train" else max(1, subset * len(part) // len(splits["train"]))
            chosen[name] = part.take(stratified_subset(part.labels, size, seed))
    return chosen


def check_split_options(val_split: float, channels: int | None, prefix: str = "") -> None:
    """Refuse a ``val_split`` outside [0, 1) and ``channels`` other than 1, 3 or None (the
    source's own), before any image is read. ``prefix``: where the caller keeps them
    (``data.`` in a config)."""
    if channels not in (None, 1, 3):
        raise ConfigError.about(f"{prefix}channels", f": must be 1 or 3; got {channels}")
    if not 0.0 <= val_split < 1.0:
        raise ConfigError.about(f"{prefix}val_split", f": must be at least 0 and below 1; got {val_split}")


def check_seed(seed: int) -> None:
    """Refuse a seed numpy's generators do not take: below 0 (the config bounds it above)."""
    if seed < 0:
        raise ConfigError.about("seed", f": must be 0 or more; got {seed}")


def check_subset(subset: int | None) -> int | None:
    if subset is not None and subset < 1:
        raise DataError.about("subset", f": must be a positive number of samples; got {subset}")
    return subset


def _decode_files(source, image_size: tuple[int, int], channels: int, progress: bool,
                  cache_dir: Path | None, spec: str) -> tuple[dict[str, str], dict]:
    """Turn every file-based split of ``source`` into rows of one cached, memory-mapped array
    (decoded once for all splits, so any later split or subset reuses it). A split none of
    whose files could be read is an error naming some of them."""
    parts = [(name, part) for name, part in source.splits.items() if part.paths is not None]
    if not parts:
        return {}, {}
    paths = [p for _, part in parts for p in part.paths]
    boxes = None
    if any(part.boxes is not None for _, part in parts):
        boxes = np.concatenate([part.boxes if part.boxes is not None else
                                np.full((len(part), 6), -1) for _, part in parts])
    images, kept, unreadable, hit = decode_cached(paths, image_size, channels, boxes, progress,
                                                  cache_dir=cache_dir)
    readable = np.zeros(len(paths), dtype=bool)
    readable[kept] = True
    offset = 0
    for name, part in parts:
        rows = np.arange(offset, offset + len(part))
        keep = np.flatnonzero(readable[rows])
        if len(part) and not len(keep):
            path, reason = str(part.paths[0]), unreadable[str(part.paths[0])]
            first = (reason if path in reason else f"{path}: {reason}") + (", and others" if len(part) > 1 else "")
            raise DataError.about("data", f" {spec}: none of the {len(part)} images of its {name} split could be read "
                                  f"({first}); cnnlab data verify lists each with its reason")
        source.splits[name] = RawSplit(
            part.labels[keep], [part.ids[i] for i in keep], images,
            groups=None if part.groups is None else part.groups[keep], rows=rows[keep])
        offset += len(part)
    return unreadable, {"file": str(images.filename), "hit": hit, "images": len(paths)}


def split_by_group(part: RawSplit, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of samples, or of whole groups (GTSRB tracks) when the source has them,
    so near-identical shots of one object never sit on both sides."""
    if part.groups is None:
        return stratified_split(part.labels, fraction, seed)
    groups, first, inverse = np.unique(part.groups, return_index=True, return_inverse=True)
    kept, held = stratified_split(part.labels[first], fraction, seed)
    held_mask = np.isin(inverse, held)
    return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)


def _gather(members: list[tuple[RawSplit, int]]) -> RawSplit:
    """A split made of samples that may come from several of the source's splits."""
    if len({id(part) for part, _ in members}) == 1:
        return members[0][0].take(np.asarray([i for _, i in members], dtype=np.int64))
    labels = np.asarray([part.labels[i] for part, i in members])
    ids = [part.ids[i] for part, i in members]
    if len({id(part.images) for part, _ in members}) == 1:  # rows of one cached array
        return RawSplit(labels, ids, members[0][0].images,
                        rows=np.asarray([part.rows[i] for part, i in members]))
    return RawSplit(labels, ids, np.stack([part.images[part.rows[i]] for part, i in members]))


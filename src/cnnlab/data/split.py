"""Stratified, seeded splits: every class keeps the same fraction in each part."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): round(fraction * n) samples of each class are held out, chosen
    by ``seed``; a class with at least two samples keeps one on each side."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"split fraction must be in [0, 1); got {fraction}")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held.append(members[:count])
        kept.append(members[count:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of about ``size`` samples with the class proportions of ``labels``."""
    if size >= len(labels):
        return np.arange(len(labels))
    _, subset = stratified_split(labels, size / len(labels), seed)
    return subset

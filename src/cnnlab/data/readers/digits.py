"""scikit-learn's bundled 8x8 digits: the source that needs no file at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ..sources import SOURCES, RawSplit, SourceData


@SOURCES.register("digits")
def read_digits(path: Path | None) -> SourceData:
    """scikit-learn's bundled 8x8 digits: no download at all."""
    if path is not None:
        raise DataError.about("data", " digits: takes no path (it ships with scikit-learn)")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    ids = [f"digits/{i}" for i in range(len(images))]
    return SourceData([str(c) for c in range(10)], {"train": RawSplit(bunch.target, ids, images)}, 1)

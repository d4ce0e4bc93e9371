"""Data: sources (a registry of SPEC names and one reader per format), decoding into the cache,
splits, the preprocessing record, augmentation and batches."""

from . import readers  # noqa: F401  (registers the data sources)
from .augment import Augment
from .dataset import Dataset, Split, concat_splits, load_dataset
from .loader import BatchLoader
from .preprocessing import Preprocessing
from .sources import (
           SOURCES,
           RawSplit,
           SourceData,
           canonical_spec,
           data_is_gone,
           parse_spec,
           read_source,
)

__all__ = ["SOURCES", "Augment", "BatchLoader", "Dataset", "Preprocessing", "RawSplit",
           "SourceData", "Split", "canonical_spec", "concat_splits", "data_is_gone", "load_dataset", "parse_spec",
           "read_source"]

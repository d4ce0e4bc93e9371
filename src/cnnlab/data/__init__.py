"""Data sources, decoding, splits and batches."""

from . import datasets  # noqa: F401  (registers the published data sets)
from .dataset import Dataset, Split, load_dataset
from .loader import Augment, BatchLoader
from .sources import SOURCES, RawSplit, SourceData, parse_spec, read_source

__all__ = ["SOURCES", "Augment", "BatchLoader", "Dataset", "RawSplit", "SourceData", "Split",
           "load_dataset", "parse_spec", "read_source"]

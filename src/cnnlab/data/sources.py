"""Data sources: ``NAME`` or ``NAME:PATH`` strings resolved through a registry. A source reads
its files as they are published and returns the raw splits; decoding at the training size,
splitting and batching happen in one place for all of them (dataset.py)."""

from __future__ import annotations

import inspect
import os
import tarfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnlabWarning, DataError, callers_stacklevel
from ..registry import Registry
from .download import Remote, fetch_url
from .images import ImageItem


@dataclass
class RawSplit:
    """One split as the source has it: pixels in memory, or files still to decode."""

    labels: np.ndarray
    ids: list[str]
    images: np.ndarray | None = None
    """(N, H, W, C) uint8, for sources that ship pixels."""
    paths: list[ImageItem] | None = None
    """Image files (or files' bytes stored in a table), for sources that ship files."""
    boxes: np.ndarray | None = None
    """(N, 6) regions to crop before resizing (GTSRB's sign boxes): x1, y1, x2, y2 (inclusive)
    on an image of the given width and height, scaled to each file's actual size."""
    groups: np.ndarray | None = None
    """Samples of one group (GTSRB's track of 30 shots of one sign) stay on one side of a split."""
    rows: np.ndarray | None = None
    """Which rows of ``images`` are this split's samples (None: all of them, in order), so that
    splitting never copies the pixels."""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a split holds either images or paths")
        if self.images is not None and self.rows is None:
            self.rows = np.arange(len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> RawSplit:
        indices = np.asarray(indices, dtype=np.int64)
        return RawSplit(
            self.labels[indices],
            [self.ids[i] for i in indices],
            self.images,
            None if self.paths is None else [self.paths[i] for i in indices],
            None if self.boxes is None else self.boxes[indices],
            None if self.groups is None else self.groups[indices],
            None if self.rows is None else self.rows[indices],
        )


@dataclass
class SourceData:
    classes: list[str]
    splits: dict[str, RawSplit]
    """Always "train"; "val" and "test" where the source defines them."""
    channels: int
    """The channel count the source's images naturally have."""
    notes: list[str] = field(default_factory=list)
    """What a user should know of how the files were read (an empty class folder, a column
    chosen among several): read_source shows each as a warning."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """What a class is, where its name does not say (GTSRB's classes are numbers): shown beside
    the name in reports and predictions, never in its place (runs match classes by name)."""


SourceReader = Callable[..., SourceData]
"""reader(path, **options) -> SourceData"""
SOURCES: Registry[SourceReader] = Registry("data source", entry_points="cnnlab.sources")


@dataclass(frozen=True)
class Layout:
    """A published data set's layout, as its source recognises a folder of it."""

    title: str
    """The data set's name as its authors write it (``GTSRB``)."""
    recognises: Callable[[Path], bool]


LAYOUTS: dict[str, Layout] = {}
"""Source -> its published layout, which a folder of class folders never has: a bare path to
such a folder is read by that source (GTSRB's root as a folder is three classes, Meta, Test
and Train; CIFAR's python folder has none). Readers add theirs as they register."""


LOCAL_COPIES: dict[str, Callable[[str], Path | None]] = {}
"""Source -> where it finds a data set named as its publisher names it, on this machine (``hf:``:
``uoft-cs/cifar10``, in the Hugging Face cache), None where it has no copy. Asked only for a
PATH that is not there; readers add theirs as they register."""


def with_nested(folder: Path) -> list[Path]:
    """``folder``, and the one folder it holds where it holds nothing else (archives nest a
    data set in one: GTSRB/, cifar-10-batches-py/)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return [folder, *(entries if len(entries) == 1 and entries[0].is_dir() else [])]


def named_twice(names: list[str]) -> list[str]:
    """The class names a source lists more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)


def source_name(spec: str) -> str:
    """The source a data SPEC names, nothing read or downloaded: a bare folder path is a
    ``folder``, or the source whose published layout it has; a bare .npz or .csv file is ``npz``
    or ``csv``, a .parquet or .arrow file ``hf`` (the name need not be a registered source)."""
    return _named_source(spec)[0]


def _named_source(spec: str) -> tuple[str, list[str]]:
    """``source_name``, and for a bare folder the sources whose layout it has (listed once:
    two or more, as MNIST's and Fashion-MNIST's, leave it a ``folder`` that parse_spec refuses)."""
    name = spec.partition(":")[0].strip().lower()
    if name in SOURCES:
        return name, []
    path = Path(spec).expanduser()
    if path.is_file():
        return FILE_SOURCES.get(path.suffix.lower(), name), []
    if not path.is_dir():
        return name, []
    found = layouts_of(path)
    return found[0] if len(found) == 1 else "folder", found


FILE_SOURCES = {".npz": "npz", ".csv": "csv", ".parquet": "hf", ".arrow": "hf"}
"""The sources a bare file path is read by, by its suffix."""


def layouts_of(folder: Path) -> list[str]:
    """The sources whose published layout ``folder`` has (MNIST's and Fashion-MNIST's files are
    named alike)."""
    return [source for source, layout in LAYOUTS.items() if _recognised(layout, folder)]


def _recognised(layout: Layout, folder: Path) -> bool:
    try:
        return layout.recognises(folder)
    except OSError:  # a folder that cannot be listed or a file that cannot be read has no layout
        return False


def layouts_hint(folder: Path, found: list[str], whose: str = "it has") -> str:
    """"; it has the layout of MNIST or Fashion-MNIST: read it as mnist:FOLDER or ...", for the
    sources ``found`` (``layouts_of``)."""
    return (f"; {whose} the layout of {' or '.join(LAYOUTS[name].title for name in found)}: read it as "
            f"{' or '.join(f'{name}:{folder}' for name in found)}")


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """``mnist:/data/mnist`` -> ("mnist", Path("/data/mnist")); ``digits`` -> ("digits", None);
    ``folder:https://...`` -> ("folder", the URL's local copy, downloaded once into the data home);
    ``hf:uoft-cs/cifar10`` -> ("hf", its snapshot in the Hugging Face cache: ``LOCAL_COPIES``)."""
    if not spec.strip():  # an unset shell variable (--data "$DATA"); a path of "" is the working folder
        raise DataError.about("data", ": empty; give a source name (digits), SOURCE:PATH or a folder of class sub-folders")
    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    read_as, found = _named_source(spec)
    if name not in SOURCES and read_as != name:
        if len(found) > 1:  # MNIST's files, Fashion-MNIST's
            raise DataError.about("data", f" {spec}: a folder{layouts_hint(Path(spec).expanduser(), found)}")
        if read_as in FILE_SOURCES.values() and Path(spec).expanduser().is_file():
            read = f"a file, read as {read_as}:{spec}"
        elif read_as in LAYOUTS:
            read = f"a folder in {LAYOUTS[read_as].title}'s layout, read as {read_as}:{spec}"
        else:
            read = f"a folder, read as folder:{spec} (one sub-folder per class)"
        warnings.warn(CnnlabWarning.about("data", f" {spec}: {read}"), stacklevel=callers_stacklevel())
        return read_as, Path(spec).expanduser()
    if name not in SOURCES and not sep and ("/" in spec or spec.startswith((".", "~"))):
        raise DataError.about("data", f" {spec}: {_not_a_folder(Path(spec).expanduser())}")
    SOURCES.get(name)
    if sep and not path:
        raise DataError.about("data", f" {spec}: empty path after '{name}:'")
    if path.startswith(("http://", "https://")):
        return name, fetch_url(Remote(path), f"the local copy as {name}:PATH")
    if path and name in LOCAL_COPIES and not Path(path).expanduser().exists() and (copy := LOCAL_COPIES[name](path)):
        return name, copy
    return name, Path(path).expanduser() if path else None


def _not_a_folder(path: Path) -> str:
    """What is wrong with a path given as ``--data`` that is neither a folder nor a file a
    source reads by its suffix."""
    if not path.is_file():
        return "no such folder (a data SPEC is a source name, SOURCE:PATH, or a folder of class sub-folders)"
    if zipfile.is_zipfile(path) or tarfile.is_tarfile(path):
        # an archive holds class folders or a published data set: which, only its reader can tell
        return (f"an archive; name the source that reads it: folder:{path} for class folders inside it, or the "
                "data set's own (gtsrb:, caltech256:, cifar10:...)")
    return "a file; a data SPEC is a source name, SOURCE:PATH, or a folder of class sub-folders"


def canonical_spec(spec: str) -> str:
    """``spec`` as its source reads it, as a run records it: a bare path gets the source that
    reads it (``source_name``: ``folder:PATH``, ``gtsrb:PATH``, ``npz:PATH``...), and a path is
    made absolute (``~`` expanded), so that evaluate and resume find the data from any folder."""
    name, path = parse_spec(spec)
    return spec if path is None else f"{name}:{os.path.abspath(path)}"


def data_is_gone(spec: str) -> bool:
    """Whether ``spec`` names a path that is not there (data moved or deleted since a run)."""
    return (path := parse_spec(spec)[1]) is not None and not path.exists()


def source_options(name: str) -> list[str]:
    return [p for p in inspect.signature(SOURCES.get(name)).parameters if p != "path"]


def options_taken(name: str, options: dict) -> tuple[dict, list[str]]:
    """Of ``options`` (another source's), those that the source ``name`` takes too, and the
    names of the others: a GTSRB recipe's ``roi_crop`` means nothing to a folder of class folders."""
    accepted = source_options(name)
    return ({k: v for k, v in options.items() if k in accepted}, [k for k in options if k not in accepted])


def read_source(spec: str, options: dict | None = None) -> SourceData:
    name, path = parse_spec(spec)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    valid = source_options(name)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise DataError.about("data", f" {spec}: the {name} source has no option '{unknown[0]}'; "
                              f"its options: {', '.join(valid) or 'none'}")
    source = SOURCES.get(name)(path, **options)
    for note in source.notes:
        warnings.warn(note, stacklevel=callers_stacklevel())
    return source

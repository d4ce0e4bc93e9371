"""Hugging Face datasets, as the Hub stores them and as the ``datasets`` library saves them:
parquet files named by their split (``data/train-00000-of-00002.parquet``,
``plain_text/test-00000-of-00001.parquet``), or the Arrow files ``save_to_disk`` writes
(``train/data-00000-of-00001.arrow``) and ``load_dataset`` caches (``cifar10-train.arrow``).
Each holds an ``Image`` column (each image file's bytes and name) and a ``ClassLabel`` column,
whose class names the schema's ``huggingface`` metadata keeps. The images are decoded from the
files' bytes as the table holds them (nothing written out, nothing re-encoded) into the decode
cache, as image files are."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..download import fetch
from ..images import DECODE_ERRORS, IMAGE_SUFFIXES, StoredImage, map_images
from ..sources import LAYOUTS, LOCAL_COPIES, SOURCES, Layout, RawSplit, SourceData, named_twice

TABLE_SUFFIXES = (".parquet", ".arrow")
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val",
               "dev": "val", "test": "test", "testing": "test", "eval": "test", "evaluation": "test"}
"""The words a file's name or folder names its split by, as the Hub's ``datasets`` library reads them."""
LABEL_NAMES = ("label", "labels")
"""The label column of a file without the Hub's metadata."""
NO_LABEL = -1
"""What ``datasets`` stores for an image without a label (a competition's test split)."""
GREY_MODES = frozenset({"1", "L", "I", "I;16", "F"})


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401  (pa.parquet)
    except ImportError:
        raise DataError.about("data", " hf: reading a Hugging Face dataset's files needs the pyarrow package "
                              "(pip install 'cnnlab[hf]')") from None
    return pa


class TableFile:
    """One file of a dataset's rows, open: a parquet file, or an Arrow stream (memory-mapped)."""

    def __init__(self, path: Path):
        pa = _pyarrow()
        self.path = path
        if path.suffix.lower() == ".parquet":
            self._parquet, self._table = pa.parquet.ParquetFile(path), None
            self.schema, self.rows = self._parquet.schema_arrow, self._parquet.metadata.num_rows
        else:
            with pa.memory_map(str(path)) as source:
                try:  # datasets writes streams; pyarrow's own files have a footer
                    self._table = pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:
                    self._table = pa.ipc.open_file(source).read_all()
            # the offsets of a damaged or crafted file, checked before any value is read through them
            self._table.validate(full=True)
            self._parquet = None
            self.schema, self.rows = self._table.schema, self._table.num_rows

    def values(self, column: str) -> list:
        table = self._table if self._parquet is None else self._parquet.read(columns=[column])
        return table.column(column).to_pylist()

    def batches(self, column: str, start: int = 0, rows: int = 1024) -> Iterator[tuple[int, object]]:
        """(first row, the column's values) a batch of at most ``rows`` at a time (the file's
        images are not held at once), from the batch holding row ``start`` on: a parquet file's
        earlier row groups are not read."""
        if self._parquet is None:
            table = self._table.select([column]).slice(start)
            first = start
            for batch in table.to_batches(max_chunksize=rows):
                yield first, batch.column(0)
                first += batch.num_rows
            return
        groups, first = [], 0
        for group in range(self._parquet.num_row_groups):
            size = self._parquet.metadata.row_group(group).num_rows
            if first + size > start or groups:
                groups.append(group)
            else:
                first += size
        for batch in self._parquet.iter_batches(columns=[column], batch_size=rows, row_groups=groups):
            yield first, batch.column(0)
            first += batch.num_rows


def split_of(relative: Path) -> str | None:
    """The split a file's path below the data's folder names (its name's words first, then its
    folders', nearest first): ``train-00000-of-00002.parquet``, ``train/data-00000-of-00001.arrow``
    and ``cifar10-train.arrow`` are train, ``validation-...`` val, ``test-...`` test; None where
    no word names one."""
    for part in (relative.stem, *reversed(relative.parent.parts)):
        for word in re.split(r"[-_. ]", part.lower()):
            if word in SPLIT_WORDS:
                return SPLIT_WORDS[word]
    return None


def files_below(folder: Path, suffixes: tuple[str, ...] = TABLE_SUFFIXES, depth: int = 3) -> Iterator[Path]:
    """The files of ``suffixes`` (parquet and Arrow) in ``folder`` and at most ``depth`` folders
    below it (the Hub nests them in ``data/`` or a configuration's folder, and that in a
    snapshot's; ``load_dataset``'s cache three down), hidden ones left out, in one walk, by name;
    a folder that cannot be looked into is passed over (/proc/1/cwd refuses even root)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.name.lower().endswith(suffixes) and entry.is_file():
                yield Path(entry.path)
            elif depth and entry.is_dir():
                yield from files_below(Path(entry.path), suffixes, depth - 1)
        except OSError:
            continue


def shards_by_split(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """split -> its files, and notes on the files left out. A file is its split's by its name
    (``split_of``); where no file names a split, all are training files (``part.0.parquet``,
    the ``data-00000-of-00001.arrow`` of one saved split...).
    The files of several configurations (``full/``, ``mini/``) are refused: which one is meant
    is for the user to say."""
    files = [root] if root.is_file() else sorted(files_below(root))
    if not files:
        image = next(files_below(root, tuple(IMAGE_SUFFIXES)), None)
        files_instead = f"; its images are files ({image.relative_to(root).as_posix()}): read their folder as " \
            "folder:PATH" if image else ""
        raise DataError.about("data", f" hf:{root}: no .parquet or .arrow files in it or the three folders below "
                              f"it{files_instead}")
    if root.is_file():
        return {split_of(Path(root.name)) or "train": files}, []
    relative = {file: file.relative_to(root) for file in files}
    configurations = sorted({"/".join(part for part in relative[file].parent.parts if part.lower() not in SPLIT_WORDS)
                             or "." for file in files})
    if len(configurations) > 1:
        raise DataError.about("data", f" hf:{root}: holds the files of {len(configurations)} configurations "
                              f"({', '.join(configurations)}): give one's folder, e.g. hf:{root / configurations[-1]}")
    named = {file: split_of(relative[file]) for file in files}
    if not any(named.values()):
        return {"train": files}, []
    splits: dict[str, list[Path]] = {}
    for file, split in named.items():
        if split:
            splits.setdefault(split, []).append(file)
    left_out = [relative[file].as_posix() for file, split in named.items() if split is None]
    notes = [f"{root}: left out {', '.join(left_out)}: not a train, validation or test split by name"] if left_out else []
    return splits, notes


@dataclass
class Columns:
    image: str
    label: str | None
    names: list[str] | None
    """The label column's class names (a ``ClassLabel``'s), None where the file gives none."""


def hub_features(table: TableFile) -> dict:
    """The ``datasets`` features of a file: as its schema's metadata keeps them, else as the
    ``dataset_info.json`` that ``save_to_disk`` writes beside it has them (empty: neither)."""
    try:
        if b"huggingface" in (table.schema.metadata or {}):
            features = json.loads(table.schema.metadata[b"huggingface"]).get("info", {}).get("features", {})
        elif (info := table.path.parent / "dataset_info.json").is_file():
            features = json.loads(info.read_text(encoding="utf-8")).get("features", {})
        else:
            return {}
    except (ValueError, AttributeError, OSError):  # damaged metadata: the columns are found by their types
        return {}
    return features if isinstance(features, dict) else {}


def columns_of(table: TableFile, image: str | None, label: str | None,
               labelled: bool = True) -> tuple[Columns, list[str]]:
    """The image and label columns of a file, and notes on a choice made among several: the
    columns named (source options ``image`` and ``label``), else those the Hub's metadata types
    ``Image`` and ``ClassLabel``, else a column of image bytes and one named label (not
    ``labelled``: None where there is none, as in images to predict)."""
    pa = _pyarrow()
    file, schema = table.path, table.schema
    features = hub_features(table)
    names = schema.names

    def typed(kind: str) -> list[str]:
        return [name for name in names if isinstance(features.get(name), dict) and features[name].get("_type") == kind]

    def holds_bytes(name: str) -> bool:
        kind = schema.field(name).type
        return (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind)

    notes = []
    found = {}
    for role, given, candidates in (("image", image, typed("Image") or [n for n in names if holds_bytes(n)]),
                                    ("label", label, typed("ClassLabel") or [n for n in names if n in LABEL_NAMES])):
        if given is not None:
            if given not in names:
                raise DataError(f"{file}: the source option {role} names {given!r}, which is no column of it "
                                f"(its columns: {', '.join(names)})")
            found[role] = given
        elif not candidates and (role == "image" or labelled):
            raise DataError.about("data", f" hf:{file}: no {role} column (its columns: {', '.join(names)}); "
                                  f"name one with the source option {role}")
        else:
            found[role] = candidates[0] if candidates else None
            if len(candidates) > 1:
                notes.append(f"{file}: {role}s from the column {candidates[0]} (also: {', '.join(candidates[1:])}; "
                             f"the source option {role} chooses)")
    if not holds_bytes(found["image"]):
        raise DataError(f"{file}: its column {found['image']} does not hold image files' bytes")
    label_feature = features.get(found["label"], {})
    classes = label_feature.get("names") if isinstance(label_feature, dict) else None
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(n, str) for n in classes)):
        raise DataError.about("data", f" hf:{file}: the class names of column {found['label']} are not a list of names")
    if classes is not None and ((twice := named_twice(classes)) or "" in classes):
        named = f"name {twice[0]} twice" if twice else "hold an empty name"
        raise DataError(f"{file}: the class names of column {found['label']} {named}")
    return Columns(found["image"], found["label"], classes), notes


def image_bytes(column) -> list[bytes | None]:
    """A batch's image column as the files' bytes."""
    return (column.field("bytes") if _pyarrow().types.is_struct(column.type) else column).to_pylist()


def stored_name(column, index: int) -> str | None:
    """The name row ``index`` of a batch's image column was stored under (an Image's path),
    asked only of a row without bytes."""
    if not _pyarrow().types.is_struct(column.type) or column.type.get_field_index("path") < 0:
        return None
    return column.field("path")[index].as_py()


@contextlib.contextmanager
def reading(file: Path):
    """pyarrow's errors on a damaged file (many kinds, from its footer to a page) as one line."""
    try:
        yield
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{file}: its columns do not fit in this machine's memory") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
        kind = "parquet" if file.suffix.lower() == ".parquet" else "Arrow"
        raise DataError(f"{file}: not a readable {kind} file ({type(exc).__name__}: {exc})") from None


class TableImages:
    """The image column of one table file, its files' bytes read a batch of rows at a time when
    decoded (an ``ImageStore``): nothing is held or written out before."""

    def __init__(self, table: TableFile, column: str):
        self.path, self.column, self._table = table.path, column, table
        stat = table.path.stat()
        self.identity = os.fsencode(table.path.resolve()) + f"|{stat.st_size}|{stat.st_mtime_ns}|{column}".encode()

    def images(self, rows: list[int]) -> Iterator[bytes | str]:
        wanted = iter(rows)
        next_row, end = next(wanted, None), 0
        with reading(self.path):  # the file opened once, to read its labels: predict reads a chunk of rows at a time
            for first, column in self._table.batches(self.column, next_row or 0):
                if next_row is None:
                    break
                end = first + len(column)
                if next_row >= end:  # none of this batch's rows is wanted
                    continue
                datas = image_bytes(column)
                while next_row is not None and next_row < end:
                    data = datas[next_row - first]
                    yield data if data is not None else no_bytes(stored_name(column, next_row - first))
                    next_row = next(wanted, None)
            end = self._table.rows
        for missing in ([] if next_row is None else [next_row, *wanted]):
            yield f"no row {missing}: the file has {end} rows now"


def no_bytes(name: str | None) -> str:
    """Why a row has no image: ``datasets``' to_parquet and its cache of a local folder keep the
    images' paths only, and cnnlab follows no path out of the data's folder."""
    return "no image bytes" + (f": it names {name}, a file outside it (read that file's folder as folder:PATH, or "
                               "write the dataset with save_to_disk, which stores the images)" if name else "")


def checked_labels(values: list, classes: list[str] | None, file: Path) -> list:
    """A file's labels: a ``ClassLabel``'s numbers checked against its names (None: no label,
    as -1 is), else the class names or numbers themselves, numbered across all files later."""
    if classes is not None:
        for row, value in enumerate(values):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not NO_LABEL <= value < len(classes)):
                raise DataError(f"{file}, row {row}: label {value!r} is no class of its {len(classes)}")
        return [NO_LABEL if value is None else value for value in values]
    for row, value in enumerate(values):
        if value is None:
            raise DataError(f"{file}, row {row}: no label")
        if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
            raise DataError(f"{file}, row {row}: label {value!r}; expected a class number or name")
    return values


def class_names(labels: list[list]) -> list[str]:
    """The classes of labels that are names or numbers without names: sorted, numbers by value."""
    values = {value for file_labels in labels for value in file_labels}
    if len({type(value) for value in values}) > 1:
        raise DataError.about("data", " hf: some labels are class numbers and some names")
    return [str(value) for value in sorted(values)]


@SOURCES.register("hf")
def read_hub_dataset(path: Path | None, image: str | None = None, label: str | None = None) -> SourceData:
    """A Hugging Face dataset's parquet or Arrow files (a folder of them: a Hub snapshot, a
    ``save_to_disk`` folder; or one file), split by their names; ``image`` and ``label`` name
    the columns where the files' metadata does not settle them (CIFAR-100's ``fine_label`` and
    ``coarse_label``)."""
    if path is not None and not path.exists():  # a dataset named as on the Hub (uoft-cs/cifar10), say
        raise DataError.about("data", f" hf:{path}: no such file or folder, nor a dataset in the Hugging Face cache "
                              f"({hub_cache()}); cnnlab reads a local copy: huggingface-cli download --repo-type "
                              "dataset OWNER/NAME puts one there (as load_dataset does), read as hf:OWNER/NAME")
    root = fetch("hf", path)
    _pyarrow()
    shards, notes = shards_by_split(root)
    files = [file for split_files in shards.values() for file in split_files]
    tables: list[TableFile] = []
    first: Columns | None = None
    labels: dict[Path, list] = {}
    for file in files:
        with reading(file):
            tables.append(table := TableFile(file))
            columns, chosen = columns_of(table, image, label)
            values = table.values(columns.label)
        if first is None:
            first, notes = columns, notes + chosen
        elif columns != first:
            raise DataError(f"{file}: its image and label columns or class names differ from {files[0]}'s")
        labels[file] = checked_labels(values, columns.names, file)
    stored = {table.path: TableImages(table, first.image) for table in tables}
    classes = first.names
    if classes is None:
        classes = class_names(list(labels.values()))
        number = {name: i for i, name in enumerate(classes)}
        labels = {file: [number[str(value)] for value in values] for file, values in labels.items()}
    splits = {}
    for split, split_files in shards.items():
        split_labels = np.asarray([value for file in split_files for value in labels[file]], dtype=np.int64)
        ids = [f"{file.name}:{row}" for file in split_files for row in range(len(labels[file]))]
        if len(split_labels) and (split_labels == NO_LABEL).all():
            notes.append(f"{root}: the {split} split left out: its images have no labels (-1)")
            continue
        if (split_labels == NO_LABEL).any():
            raise DataError(f"{ids[int(np.flatnonzero(split_labels == NO_LABEL)[0])]}: no label, among labelled images")
        splits[split] = RawSplit(split_labels, ids, paths=[StoredImage(stored[file], row) for file in split_files
                                                           for row in range(len(labels[file]))])
    if not any(len(split) for split in splits.values()):
        raise DataError.about("data", f" hf:{root}: no labelled images")
    return SourceData(classes, splits, _channels(splits), notes)


def table_images(path: Path, image: str | None = None) -> list[StoredImage]:
    """The images of one parquet or Arrow file in row order, labelled or not (``cnnlab predict``)."""
    with reading(path):
        table = TableFile(path)
        columns, _ = columns_of(table, image, None, labelled=False)
    store = TableImages(table, columns.image)
    return [StoredImage(store, row) for row in range(table.rows)]


def _channels(splits: dict[str, RawSplit]) -> int:
    """1 where the first image is greyscale (MNIST's PNGs), else 3."""
    from PIL import Image

    def mode(image, _) -> str:
        with Image.open(image) as picture:
            return picture.mode

    first = next(split.paths[0] for split in splits.values() if split.paths)
    try:
        ((_, found),) = map_images([first], mode)
    except DECODE_ERRORS:  # decoding reports the image; the others decide the channels by default
        return 3
    return 1 if found in GREY_MODES else 3


def holds_tables(folder: Path) -> bool:
    """Whether a bare path is a dataset's folder: its files at most two folders down
    (``data/train/``, ``plain_text/``, a saved split's folder). Not three, as ``hf:`` looks: a
    bare path may be / or a home folder, tens of thousands of folders three down."""
    return next(files_below(folder, depth=2), None) is not None


LAYOUTS["hf"] = Layout("a Hugging Face dataset", holds_tables)


REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A Hub repository's owner or name (letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``)."""
COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_cache() -> Path:
    """Where huggingface_hub keeps what it downloads (``huggingface-cli download``, and the
    files ``load_dataset`` fetches): $HF_HUB_CACHE (or the older $HUGGINGFACE_HUB_CACHE), else
    $HF_HOME/hub, $HF_HOME being $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(
        os.path.expandvars(os.path.expanduser(home)), "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def cached_snapshot(name: str) -> Path | None:
    """The folder of the dataset ``OWNER/NAME`` (a folder inside it after a third ``/``: a
    configuration's) in the Hugging Face cache: the snapshot of the revision ``main`` names,
    or the only one; None where the cache has none."""
    parts = name.split("/")
    repo, inside = parts[:2], parts[2:]
    if not all(REPO_PART.fullmatch(part) and "--" not in part and ".." not in part for part in repo) \
            or any(part in ("", ".", "..") for part in inside):
        return None
    folder = hub_cache() / "--".join(["datasets", *repo])
    snapshots = folder / "snapshots"
    try:
        revisions = sorted(entry.name for entry in snapshots.iterdir() if entry.is_dir())
        main = (folder / "refs" / "main").read_text(encoding="ascii").strip() if (folder / "refs" / "main").is_file() \
            else None
    except (OSError, UnicodeDecodeError):
        return None
    if main in revisions and COMMIT.fullmatch(main):
        revision = main
    elif len(revisions) == 1:
        revision = revisions[0]
    elif revisions:
        raise DataError.about("data", f" hf:{name}: the Hugging Face cache holds {len(revisions)} revisions of it and "
                              f"main names none ({', '.join(revisions)}): give one's folder, e.g. "
                              f"hf:{snapshots / revisions[-1]}")
    else:
        return None
    found = snapshots.joinpath(revision, *inside)
    if not found.exists():
        folders = sorted(entry.name for entry in (snapshots / revision).iterdir() if entry.is_dir())
        raise DataError.about("data", f" hf:{name}: no folder {'/'.join(inside)} in {'/'.join(repo)}'s snapshot in the "
                              f"Hugging Face cache (its folders: {', '.join(folders) or 'none'})")
    return found


LOCAL_COPIES["hf"] = cached_snapshot


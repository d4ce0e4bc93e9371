"""The run directory: every file name of a run, every file it writes (atomically, readable
under the user's umask) and every line it prints go through RunDirectory, so a distributed run
only has to make its non-main processes silent. ``load_run`` reads one back."""

from __future__ import annotations

import base64
import contextlib
import csv
import fcntl
import html
import io
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .errors import CnnlabError
from .io import (
    RUN_CLASSES,
    RUN_CONFIG,
    TEMP_SUFFIX,
    is_run_directory,
    write_atomic,
    write_json_atomic,
    write_text_atomic,
)

CONFIG, CLASSES = RUN_CONFIG, RUN_CLASSES
HISTORY_CSV, HISTORY_JSON = "history.csv", "history.json"
SPLIT, SUMMARY, SUMMARY_JSON, METRICS, LOG = (
    "split.json", "summary.txt", "summary.json", "metrics.json", "train.log")
DATA, LOCK = "data.json", ".lock"
TRAINED_ON = "trained_on.json"
"""Where a run trained: a record for each time it was started or resumed, from which epoch on
and on what (``Runtime.describe``), so that its epochs' seconds and img/s name their machine."""
BEST, LAST = "best.pt", "last.pt"
REPORT, CURVES, PREVIEW = "report.html", "curves.png", "preview.jpg"
PNG_GRIDS = ("preview.png", "samples-*.png", "mistakes-*.png")
"""The grids of images as runs made before wrote them, before they were JPEG files."""
TENSORBOARD, ONNX, SAFETENSORS = "tensorboard", "model.onnx", "model.safetensors"
EVALUATIONS = "evaluations"
"""Evaluations on other data (or with test-time augmentation), one folder each, so that they
never overwrite the run's own results."""


Shape = Callable[[Any], bool]
"""Whether a value read from a run's JSON file has the shape cnnlab writes there."""


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _anything(value: Any) -> bool:
    return True


def _optional(shape: Shape) -> Shape:
    return lambda value: value is None or shape(value)


def _list_of(shape: Shape) -> Shape:
    return lambda value: isinstance(value, list) and all(map(shape, value))


def _mapping_of(shape: Shape) -> Shape:
    return lambda value: isinstance(value, dict) and all(map(shape, value.values()))


def _object(*required: str, **fields: Shape) -> Shape:
    """An object holding the keys ``required``, whose keys named in ``fields``, where present,
    hold what their shapes accept: the values cnnlab reads back and formats (a number that is
    text would end in a TypeError)."""
    return lambda value: (isinstance(value, dict) and all(key in value for key in required)
                          and all(shape(value[key]) for key, shape in fields.items() if key in value))


# an epoch's logs: its number, and the numbers cnnlab logs and reads back finite; what a
# callback added to them (as a Keras callback may) is the user's
_EPOCH_RECORD = _object("epoch", epoch=_number, lr=_number, seconds=_number, images_per_second=_number,
                        **{key: _number for name in ("loss", "accuracy", "top5_accuracy", "mse")
                           for key in (name, f"val_{name}")})
_SCORES = _object(precision=_number, recall=_number, f1=_number, support=_whole)
_SPLIT_FIELDS = _object(
    "loss", "accuracy", "mse", "per_class", "averages", "confusion_matrix",
    loss=_number, accuracy=_number, top5_accuracy=_number, mse=_number, samples=_whole, seconds=_number,
    images_per_second=_number, machine=_text, per_class=_mapping_of(_SCORES),
    averages=lambda value: _object("macro")(value) and _mapping_of(_SCORES)(value),
    confusion_matrix=_list_of(_list_of(_whole)),
    roc_auc=_object(macro=_optional(_number), micro=_optional(_number), per_class=_list_of(_optional(_number))),
    calibration=_object(ece=_number, bins=_list_of(_object(low=_number, high=_number, count=_whole,
                                                           accuracy=_optional(_number),
                                                           confidence=_optional(_number)))))


def _split_metrics(value: Any) -> bool:
    """A split's metrics as the report and comparison read them: the numbers of its table and a
    confusion matrix of a row and a column for each class of its per-class scores."""
    if not _SPLIT_FIELDS(value):
        return False
    classes, matrix = len(value["per_class"]), value["confusion_matrix"]
    return len(matrix) == classes and all(len(row) == classes for row in matrix)


_METRICS_FIELDS: dict[str, Shape] = dict(checkpoint=_text, epoch=_whole, data=_text, split=_text,
                                         tta=_optional(_text), options=_mapping_of(_anything), machine=_text,
                                         **{split: _split_metrics for split in ("train", "val", "test", "all")})
_EVALUATION = _object("data", "split", "epoch", **_METRICS_FIELDS)

EVALUATION_SHAPE = ("an evaluation: its data, split and epoch, and that split's metrics",
                    lambda value: _EVALUATION(value) and value["split"] in value)
"""What evaluations/<name>/metrics.json must hold: report.html's section of it reads all of it."""

RUN_JSON_SHAPES: dict[str, tuple[str, Shape]] = {
    CLASSES: ("a list of class names", _list_of(_text)),
    SPLIT: ("lists of sample ids by split",
            lambda value: isinstance(value, dict) and "train" in value and all(map(_list_of(_text), value.values()))),
    HISTORY_JSON: ("a list of epoch records, each with its epoch and finite numbers for what it logged",
                   _list_of(_EPOCH_RECORD)),
    METRICS: ("an object of metrics by split, each of the kinds cnnlab writes", _object(**_METRICS_FIELDS)),
    SUMMARY_JSON: ("an object of the model's summary, each of the kinds cnnlab writes",
                   _object(model=_text, input_shape=_list_of(_whole), num_classes=_whole,
                           layers=_list_of(_mapping_of(_anything)), total_params=_whole,
                           trainable_params=_whole, non_trainable_params=_whole, flops=_number,
                           activation_bytes=_number)),
    DATA: ("an object of the data's facts, each of the kinds cnnlab writes",
           _object(spec=_text, classes=_list_of(_text), image_size=_list_of(_whole), channels=_whole,
                   counts=_mapping_of(_whole), unreadable=_mapping_of(_text), notes=_list_of(_text),
                   cache=_mapping_of(_anything), descriptions=_mapping_of(_text))),
    TRAINED_ON: ("a list of {epoch, machine} records",
                 _list_of(_object("epoch", "machine", epoch=_whole, machine=_text))),
}
"""The JSON files of a run (by name, also in evaluations/<name>/, where metrics.json is
EVALUATION_SHAPE's) and what each must hold."""


def predictions_file(split: str) -> str:
    return f"predictions-{split}.csv"


def split_pictures(split: str) -> dict[str, str]:
    """The pictures of one evaluated split, by kind."""
    return {"confusion": f"confusion-{split}.png", "confusion_normalized": f"confusion-{split}-normalized.png",
            "roc": f"roc-{split}.png", "calibration": f"calibration-{split}.png", "samples": f"samples-{split}.jpg",
            "mistakes": f"mistakes-{split}.jpg"}


def evaluation_folder(label: str) -> str:
    return f"{EVALUATIONS}/{label}"


class RunDirectory:
    def __init__(self, path: Path, quiet: bool = False, main_process: bool = True):
        self.path = Path(path)
        self.quiet = quiet
        self.main_process = main_process
        self._held: dict[str, dict | None] = {}

    @classmethod
    def create(cls, out: str | Path, name: str, **kwargs) -> RunDirectory:
        """A new folder ``out/name`` (``name-2``, ``-3``... when taken: a run never writes into
        another run's folder)."""
        root = Path(out).expanduser()  # a recipe's out: ~/runs (only a shell expands ~)
        path, suffix = root / name, 1
        while True:
            # mkdir is the test: a run started in the same second by another process may take a name
            try:
                path.mkdir(parents=True)
                return cls(path, **kwargs)
            except FileExistsError:
                suffix += 1
                path = root / f"{name}-{suffix}"
            except OSError as exc:
                raise CnnlabError.about("out", f" {out}: cannot create the run directory: {exc.strerror or exc}") from None

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return self.file(name).is_file()

    @contextlib.contextmanager
    def training_lock(self, resuming: bool):
        """Held while this process trains the run, so that no second one (``--resume`` typed in
        another terminal, a job started twice) trains it beside it: both would write its
        checkpoints, and the second delete the first's half-written files as stale. The
        system releases the lock when the process ends, killed or not. ``resuming``: the user
        gave the run to resume, which the error names."""
        if not self.main_process:
            yield
            return
        try:
            handle = self.file(LOCK).open("a")
        except OSError as exc:
            raise CnnlabError(f"{self.file(LOCK)}: cannot write there ({exc.strerror or exc})") from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                detail = f"{self.path}: another process is training this run now; wait for it to end (or stop it), then resume"
                raise (CnnlabError.about("resume", " " + detail) if resuming else CnnlabError(detail)) from None
            except OSError:
                pass  # a file system without locks: train unguarded, as before
            yield

    def log_tail(self, size: int = 4096) -> str:
        """The last lines of train.log ("" where there is none)."""
        try:
            with self.file(LOG).open("rb") as handle:
                handle.seek(max(handle.seek(0, os.SEEK_END) - size, 0))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def being_trained(self) -> bool:
        """Whether a process holds ``training_lock`` now."""
        try:
            with self.file(LOCK).open("rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released as the file closes
        except BlockingIOError:
            return True
        except OSError:  # no lock file (never trained here), or a file system without locks
            pass
        return False

    def remove_stale_temporaries(self) -> list[Path]:
        """Half-written files left by a process killed mid-write (the finished file is never
        touched: each write goes to a temporary file renamed into place)."""
        stale = [p for p in self.path.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    # printing
    def log(self, message: str, console: bool = True) -> None:
        if not self.main_process:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.file(LOG).open("a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(f"{stamp} {message}\n")
        if console and not self.quiet:
            tqdm.write(message, file=sys.stdout)

    def progress(self, total: int, description: str, done: int = 0) -> tqdm:
        """A Keras-like bar on a terminal; nothing when output is piped (the epoch line says it)."""
        enabled = self.main_process and not self.quiet and sys.stdout.isatty()
        return tqdm(total=total, initial=done, desc=description, disable=not enabled, leave=False,
                    unit="step", dynamic_ncols=True, file=sys.stdout,
                    bar_format="{desc} {n_fmt}/{total_fmt} {bar} ETA {remaining} {postfix}")

    # reading
    def read_json(self, name: str, default: Any = None) -> Any:
        """A JSON file of the run, or ``default`` where it is absent; one of the run's own files
        (RUN_JSON_SHAPES) must have the shape cnnlab writes, so a damaged one is one error."""
        if not self.exists(name):
            return default
        try:
            value = json.loads(self.file(name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CnnlabError(f"{self.file(name)}: unreadable JSON ({exc})") from None
        path = PurePosixPath(name)
        shape = (EVALUATION_SHAPE if path.parts[0] == EVALUATIONS and path.name == METRICS
                 else RUN_JSON_SHAPES.get(path.name))
        if shape is not None and not shape[1](value):
            raise CnnlabError(f"{self.file(name)}: expected {shape[0]}; the file is damaged")
        return value

    def read_text(self, name: str) -> str:
        return self.file(name).read_text(encoding="utf-8") if self.exists(name) else ""

    def evaluations(self) -> list[str]:
        """The labels of the evaluations on other data, sorted."""
        return sorted(p.parent.name for p in self.path.glob(f"{EVALUATIONS}/*/{METRICS}"))

    def evaluation_label(self, base: str, identity: dict[str, Any]) -> str:
        """``base``, or ``base-2``, ``-3``...: the first whose folder is free or holds an
        evaluation of the same ``identity`` (its metrics.json's data, split, tta and options).
        Two test sets of one folder name never replace each other's results; evaluating the
        same data again rewrites its own."""
        wanted = json.loads(json.dumps(identity))
        label, number = base, 1
        while True:
            stored = self.read_json(f"{evaluation_folder(label)}/{METRICS}")
            if stored is None or all(stored.get(key) == value for key, value in wanted.items()):
                return label
            number += 1
            label = f"{base}-{number}"

    # writing (only the main process of a distributed run writes)
    def write_bytes(self, name: str, data: bytes) -> None:
        if self.main_process:
            write_atomic(self.file(name), lambda handle: handle.write(data))

    def write_text(self, name: str, text: str) -> None:
        if self.main_process:
            write_text_atomic(self.file(name), text)

    def write_json(self, name: str, data: Any) -> None:
        if self.main_process:
            write_json_atomic(self.file(name), data)

    def save_checkpoint(self, name: str, payload: dict) -> None:
        if not self.main_process:
            return
        if name in self._held:
            self._held[name] = payload
            return
        save_checkpoint(self.file(name), payload)

    @contextlib.contextmanager
    def holding(self, *names: str):
        """Checkpoints named ``names`` saved inside the block are written when it ends, after
        everything else it wrote; if the block fails they are not written at all."""
        self._held = dict.fromkeys(names)
        try:
            yield
        except BaseException:
            self._held = {}
            raise
        held, self._held = self._held, {}
        for name, payload in held.items():
            if payload is not None:
                save_checkpoint(self.file(name), payload)

    def record_machine(self, epoch: int, machine: str) -> None:
        """Add to TRAINED_ON that the run trains on ``machine`` from ``epoch`` on. A damaged
        record is started afresh, not refused: it holds none of the run's results."""
        try:
            sessions = self.read_json(TRAINED_ON, [])
        except CnnlabError:
            sessions = []
        self.write_json(TRAINED_ON, [*sessions, {"epoch": epoch, "machine": machine}])

    def write_history(self, history: list[dict[str, float]]) -> None:
        if not self.main_process:
            return
        columns = list(dict.fromkeys(key for row in history for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.file(HISTORY_CSV), buffer.getvalue())
        write_json_atomic(self.file(HISTORY_JSON), history)


RUN_FILES = {CONFIG, HISTORY_CSV, HISTORY_JSON, CLASSES, SPLIT, SUMMARY, SUMMARY_JSON, METRICS, LOG, DATA, LOCK,
             TRAINED_ON, BEST, LAST, REPORT, CURVES, PREVIEW, ONNX, SAFETENSORS}
RUN_FOLDERS = {EVALUATIONS, TENSORBOARD}
"""The files a run and the commands on it write, besides each split's predictions and pictures."""


def is_run_file(relative: PurePosixPath) -> bool:
    """Whether ``relative`` (a path inside a run directory) names a file of the run."""
    if relative.parts[0] in RUN_FOLDERS:
        return True
    split_files = [predictions_file("*"), *split_pictures("*").values(), *PNG_GRIDS]
    return len(relative.parts) == 1 and (relative.name in RUN_FILES
                                         or any(relative.match(pattern) for pattern in split_files))


def refuse_run_file(path: str | Path, kind: str, suffixes: tuple[str, ...], own: tuple[str, ...] = ()) -> Path:
    """``path``, a file a command writes where the user said, unless its name does not end as
    the ``kind`` of file written does (``suffixes``: an HTML report over a notes file, or over
    /etc/passwd, is refused as Keras' model.save refuses a name without .keras), or it would
    replace one of a run's files (RUN_FILES, its predictions and pictures, anything under
    evaluations/): a later command never replaces a run's results. ``own`` names the command's
    own earlier output in the run's folder (``model.onnx`` for export), which it may write again."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise CnnlabError(f"{path}: {kind} is written as {' or '.join(suffixes)}; give a name that ends so")
    if not path.exists():
        return path
    for folder in path.resolve().parents:
        if is_run_directory(folder):
            relative = PurePosixPath(path.resolve().relative_to(folder).as_posix())
            if is_run_file(relative) and str(relative) not in own:
                raise CnnlabError(f"{path}: is a file of the run {folder}; write to a new name or outside the run")
            return path
    return path


def file_safe(text: str) -> str:
    """``text`` with every run of characters other than letters and digits made one '-'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


DATA_FILE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".npz", ".csv", ".parquet", ".arrow")
"""What a data file's name ends with that says nothing of the data."""
HUB_SNAPSHOT = re.compile(r"datasets--(?P<repo>[^/]+)/snapshots/[^/]+(?P<inside>/.*)?$")
"""A dataset's folder in the Hugging Face cache (``hf:OWNER/NAME``), named by its commit."""


def data_name(spec: str) -> str:
    """A file-name-safe name for a data SPEC: the source and the last part of its path, without
    a data file's suffix; a Hugging Face cache's snapshot by its dataset's name."""
    source, _, path = spec.partition(":")
    last = Path(path).name
    if snapshot := HUB_SNAPSHOT.search(Path(path).as_posix()):
        last = snapshot["repo"].replace("--", "-") + (snapshot["inside"] or "")
    last = next((last[:-len(end)] for end in DATA_FILE_SUFFIXES if last.lower().endswith(end)), last)
    parts = [source] + ([last] if last and last != source else [])
    return file_safe("-".join(parts)) or "data"


def run_name(config: TrainConfig) -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{config.model.name}-{data_name(config.data.spec)}"


@dataclass
class Run:
    """A finished (or interrupted) run, read from its directory: its config and classes at once,
    each of its other files when first used (``load_run``)."""

    path: Path
    config: TrainConfig
    classes: list[str]

    @property
    def directory(self) -> RunDirectory:
        return RunDirectory(self.path)

    @cached_property
    def history(self) -> list[dict[str, float]]:
        return self.directory.read_json(HISTORY_JSON, [])

    @cached_property
    def metrics(self) -> dict:
        return self.directory.read_json(METRICS, {})

    @cached_property
    def descriptions(self) -> dict[str, str]:
        """What a class is, where the data says and its name does not (GTSRB's "16": "vehicles
        over 3.5 t prohibited"); see ``class_label``."""
        return class_descriptions(self.directory.read_json(DATA, {}))

    @cached_property
    def summary(self) -> dict:
        """The model's summary (SUMMARY_JSON: its parameter counts, FLOPs, layers)."""
        return self.directory.read_json(SUMMARY_JSON, {})

    @cached_property
    def trained_on(self) -> list[dict]:
        """TRAINED_ON's records (none in runs made before it was written); see ``machine_spans``."""
        return self.directory.read_json(TRAINED_ON, [])

    def checkpoint(self, which: str = "best") -> dict:
        path = self.path / f"{which}.pt"
        if not path.exists() and not (self.path / LAST).exists():
            raise CnnlabError(f"{self.path}: no {path.name} yet: no epoch of this run has finished (continue it "
                              f"with cnnlab train --resume {self.path})")
        return load_checkpoint(path)

    def __repr__(self) -> str:
        try:
            best = self.metrics.get("val", {}).get("accuracy")
        except CnnlabError:  # a repr names the run whatever its files hold
            best = "unreadable"
        return f"Run({str(self.path)!r}, model={self.config.model.name!r}, val_accuracy={best})"

    def _repr_html_(self) -> str:
        """The run as a notebook shows it: what ``cnnlab runs`` says of it, its training curves
        and a link to its report, where it drew them."""
        try:
            row, _ = run_row(self, str(self.path))
        except CnnlabError as exc:  # as the repr, whatever its files hold
            return f"<p>{html.escape(repr(self))}: {html.escape(str(exc))}</p>"
        cells = {"run": row["name"], **row_texts(row), "data": self.config.data.spec}
        shown = "<table>" + "".join(f"<tr><th style='text-align:left'>{name}</th><td style='text-align:left'>"
                                    f"{html.escape(str(value))}</td></tr>" for name, value in cells.items()) + "</table>"
        if self.directory.exists(CURVES):
            shown += f'<img src="{data_uri(self.directory.file(CURVES))}" alt="training curves" style="max-width:100%">'
        if self.directory.exists(REPORT):
            shown += f'<p><a href="{html.escape(str(self.directory.file(REPORT)))}" target="_blank">{REPORT}</a></p>'
        return shown


def data_uri(picture: Path) -> str:
    """A run's picture as a data URI: an HTML page that shows it holds it."""
    kind = "jpeg" if picture.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"data:image/{kind};base64," + base64.b64encode(picture.read_bytes()).decode("ascii")


def load_run(path: str | Path, whole: bool = True) -> Run:
    """The run at ``path``. ``whole``: read each of its files now, so that a damaged one is refused
    here; else each when first used, so that what needs the model alone (predict, export) is not
    refused for a damaged history."""
    path = Path(path)
    if not path.is_dir():
        raise CnnlabError(f"{path}: no such run directory")
    directory = RunDirectory(path)
    if not is_run_directory(path):
        raise CnnlabError(f"{path}: not a cnnlab run directory (no {CONFIG} or {CLASSES})")
    run = Run(path, TrainConfig.from_yaml(path / CONFIG), directory.read_json(CLASSES))
    if whole:
        for name in ("history", "metrics", "descriptions", "trained_on"):
            getattr(run, name)
    return run


def weights_file(given: str, model_name: str) -> str:
    """The file a --weights value names for ``model_name``: as ``resolve_weights`` reads it (a
    path, a URL, Keras' ``imagenet``), and a run directory gives its best checkpoint."""
    # imported when called: listing runs (cnnlab runs) needs no model code
    from .models.weights import resolve_weights

    # first: Keras' "imagenet" names its file even beside a folder of that name
    given = resolve_weights(given, model_name)
    path = Path(given).expanduser()
    if not path.is_dir():
        return given
    if not is_run_directory(path):
        raise CnnlabError.about("weights", f" {given}: a folder, not a weights file: give a file, or a run "
                                f"directory (its {BEST})")
    if not (path / BEST).is_file():
        raise CnnlabError.about("weights", f" {given}: a run directory without {BEST}: no epoch of it has finished")
    return str(path / BEST)


def class_descriptions(data: dict) -> dict[str, str]:
    """The class descriptions a run's data.json records (none in runs made before they were)."""
    described = data.get("descriptions")
    if not isinstance(described, dict):
        return {}
    return {name: text for name, text in described.items() if isinstance(text, str)}


def class_label(name: str, descriptions: dict[str, str]) -> str:
    """A class as reports and predictions show it: its name, and what it is where the data
    says (``16 (vehicles over 3.5 t prohibited)``)."""
    description = descriptions.get(name)
    return f"{name} ({description})" if description else name


SEARCH_DEPTH = 4
"""How far below a folder runs are looked for (runs/<project>/<experiment>/<sweep>/<run>): a
folder given by mistake (a home) is not walked to its end."""


def runs_in(folder: Path) -> list[Path]:
    """``folder`` if it is a run, else the runs in it and in its sub-folders up to SEARCH_DEPTH
    down, oldest first. Neither runs nor hidden folders are searched, nor folders that are links
    (a link to a run is a run)."""
    if is_run_directory(folder):
        return [folder]
    found, level = [], [folder] if folder.is_dir() else []
    for _ in range(SEARCH_DEPTH):
        below = []
        for parent in level:
            with contextlib.suppress(OSError):  # a folder this user may not read holds no run of theirs
                for child in parent.iterdir():
                    if is_run_directory(child):
                        found.append(child)
                    elif child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                        below.append(child)
        level = below
    return sorted(found, key=lambda p: (p / CONFIG).stat().st_mtime)


def run_label(path: Path, folder: Path) -> str:
    """A run as a listing of ``folder`` names it: its path below the folder."""
    return path.name if path == folder else path.relative_to(folder).as_posix()


DIVERGED = re.compile(r"training diverged: the loss became \S+ in epoch (\d+)[^\n]*\n?$")
"""The last line of a run that ended because its loss became NaN or infinite."""


def where_stopped(directory: RunDirectory, config: TrainConfig) -> str:
    """`` in epoch E after batch K of B`` for a run stopped within an epoch, as its last.pt
    records it (its tensors left unread), else nothing: a run stopped at an epoch's end, or a
    last.pt that resuming will say is damaged."""
    try:
        within = load_checkpoint(directory.file(LAST), lazily=True).get("within_epoch")
        epoch, batch = within["epoch"] + 1, int(within["batch"])
        samples = directory.read_json(DATA, {}).get("counts", {}).get("train")
    except (CnnlabError, TypeError, KeyError, ValueError, AttributeError):
        return ""
    of = f" of {-(-samples // config.batch_size)}" if isinstance(samples, int) else ""
    return f" in epoch {epoch} after batch {batch}{of}"


def training_seconds(history: list[dict]) -> float:
    """The time a run's epochs took to train, from its history."""
    return sum(row.get("seconds", 0.0) for row in history)


def machine_spans(trained_on: list[dict], epochs: int) -> list[tuple[int, int, str]]:
    """The machines a run's first ``epochs`` epochs trained on, from its TRAINED_ON records:
    ``(first epoch, last epoch, machine)`` in order, a machine's consecutive records as one
    span; a record from which no epoch finished counts for none."""
    spans: list[tuple[int, int, str]] = []
    for index, record in enumerate(trained_on):
        following = trained_on[index + 1]["epoch"] if index + 1 < len(trained_on) else epochs + 1
        first, last = record["epoch"], min(following - 1, epochs)
        if first > last:
            continue
        if spans and spans[-1][2] == record["machine"]:
            spans[-1] = (spans[-1][0], last, record["machine"])
        else:
            spans.append((first, last, record["machine"]))
    return spans


def machines_text(trained_on: list[dict], epochs: int) -> str:
    """``machine_spans`` in words: the machine alone where one trained every epoch, else
    ``cpu fp32, ... (epochs 1-10), then cuda bf16, ... (epochs 11-30)``; empty where the run
    has no records."""
    spans = machine_spans(trained_on, epochs)
    if len(spans) == 1:
        return spans[0][2]
    return ", then ".join(f"{machine} (epoch{f' {first}' if first == last else f's {first}-{last}'})"
                          for first, last, machine in spans)


def duration(seconds: float) -> str:
    """``450 ms``, ``4.4 s``, ``45 s``, ``7 min 24 s``, ``2 h 05 min``."""
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f} ms"
    if round(seconds, 1) < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def run_table(folder: Path) -> list[dict]:
    """Every run of ``folder`` as runs_in finds them, oldest first: its name (its path below
    the folder), model, data, epochs (trained, asked for), best validation accuracy (of a
    finished run, its kept checkpoint's as evaluated at the end), test accuracy, the epochs'
    training time and what it trained on (``machine_spans``), and where it stands (finished,
    training now, diverged, or stopped, with the command that continues it)."""
    return [row for row, _, _ in runs_with_configs(folder)]


def runs_with_configs(folder: Path) -> list[tuple[dict, TrainConfig | None, str]]:
    """run_table's rows, each with its run's config (None for a run that cannot be read) and
    state: finished, training now, diverged, stopped or unreadable."""
    if not folder.is_dir():
        raise CnnlabError(f"{folder}: no such folder")
    rows = []
    for path in runs_in(folder):
        try:
            run = load_run(path)
        except CnnlabError as exc:
            rows.append(({"name": run_label(path, folder), "status": f"unreadable: {exc}"}, None, "unreadable"))
            continue
        row, state = run_row(run, run_label(path, folder))
        rows.append((row, run.config, state))
    return rows


def row_texts(row: dict) -> dict[str, str]:
    """A run_table row's figures as `cnnlab runs` prints them, by heading: "-" where a row (of
    a run that cannot be read) has none."""
    percent = lambda value: "-" if value is None else f"{value:.2%}"  # noqa: E731
    return {"model": row.get("model", "-"), "data": row.get("data", "-"),
            "epochs": "/".join(map(str, row["epochs"])) if "epochs" in row else "-",
            "val acc": percent(row.get("val_accuracy")), "test acc": percent(row.get("test_accuracy")),
            "training": "-" if row.get("training_seconds") is None else duration(row["training_seconds"]),
            "status": row["status"]}


def run_row(run: Run, name: str) -> tuple[dict, str]:
    """run_table's row of one run, named ``name``, and its state."""
    directory = run.directory
    history_written = directory.file(HISTORY_JSON).stat().st_mtime if directory.exists(HISTORY_JSON) else 0.0
    if directory.being_trained():
        state = status = "training now"
    elif directory.exists(METRICS) and directory.file(METRICS).stat().st_mtime >= history_written:
        state = status = "finished"  # the final evaluation comes after the last epoch's history
    elif diverged := DIVERGED.search(directory.log_tail()):
        state, status = "diverged", f"diverged in epoch {diverged.group(1)}: try a lower --lr"
    else:
        state, status = "stopped", f"stopped{where_stopped(directory, run.config)}: cnnlab train --resume {run.path}"
    accuracies = [row["val_accuracy"] for row in run.history if "val_accuracy" in row]
    # a finished run's figure is its kept checkpoint's, as evaluated at the end (its report's)
    evaluated = run.metrics.get("val", {}).get("accuracy") if state == "finished" else None
    return {"name": name, "model": run.config.model.name,
            "data": data_name(run.config.data.spec), "epochs": [len(run.history), run.config.epochs],
            "val_accuracy": evaluated if evaluated is not None else max(accuracies, default=None),
            "test_accuracy": run.metrics.get("test", {}).get("accuracy"),
            "training_seconds": training_seconds(run.history) if run.history else None,
            "trained_on": [{"epochs": [first, last], "machine": machine} for first, last, machine
                           in machine_spans(run.trained_on, len(run.history))],
            "status": status}, state


NOT_THE_SETTING = ("seed", "name", "out", "report", "tensorboard")
"""Config keys that two repeats of one setting may differ in: the seed, and where and what
each writes."""


def dotted_items(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"optimizer.lr": 0.001, ...}``; an empty mapping sets nothing."""
    items: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            items.update(dotted_items(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def spread(values: list[float]) -> dict | None:
    """Mean, sample standard deviation (None for one value), lowest and highest."""
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def seed_groups(folder: Path) -> list[dict]:
    """The runs of ``folder`` grouped by their config with the seed left out: the repeats of
    one setting, in the order their first run was made, with the mean and spread of their best
    validation and their test accuracies and of their training times (and the machines those
    were measured on, ``trained_on``), and the settings that
    set each group apart from the other groups of its model and data (``differs``). The
    figures are the finished runs' (``finished``): a stopped or running run's best so far is
    no result of its setting. Runs that cannot be read are left out."""
    groups: dict[str, dict] = {}
    for row, config, state in runs_with_configs(folder):
        if config is None:
            continue
        setting = {k: v for k, v in dotted_items(config.to_dict()).items() if k not in NOT_THE_SETTING}
        group = groups.setdefault(json.dumps(setting, sort_keys=True, default=str),
                                  {"setting": setting, "rows": [], "seeds": [], "states": []})
        group["rows"].append(row)
        group["seeds"].append(config.seed)
        group["states"].append(state)
    result = []
    for group in groups.values():
        # set apart from the other settings of the same model on the same data: the comparison
        # that a sweep makes
        peers = [other["setting"] for other in groups.values()
                 if all(other["setting"][k] == group["setting"][k] for k in ("model.name", "data.spec"))]
        differing = sorted(k for k in set().union(*peers)
                           if len({json.dumps(peer.get(k), default=str) for peer in peers}) > 1)
        rows, states = group["rows"], group["states"]
        finished = [row for row, state in zip(rows, states, strict=True) if state == "finished"]
        result.append({
            "runs": [row["name"] for row in rows], "model": rows[0]["model"], "data": rows[0]["data"],
            "epochs": group["setting"]["epochs"], "seeds": sorted(group["seeds"]),
            "finished": [row["name"] for row in finished],
            **{figure: spread([row[figure] for row in finished if row[figure] is not None])
               for figure in ("val_accuracy", "test_accuracy", "training_seconds")},
            "trained_on": list(dict.fromkeys(span["machine"] for row in finished for span in row["trained_on"])),
            "status": ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states)),
            "differs": {k: group["setting"].get(k) for k in differing}})
    return result

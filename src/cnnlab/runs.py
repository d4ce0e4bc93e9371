"""The run directory: every file a run writes and every line it prints go through RunDirectory,
so a distributed run only has to make its non-main processes silent. ``load_run`` reads one
back; evaluate and predict need nothing else."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .config import TrainConfig
from .errors import CnnlabError
from .io import write_json_atomic, write_text_atomic
from .training.checkpoint import load_checkpoint, save_checkpoint

CONFIG, HISTORY_CSV, HISTORY_JSON = "config.yaml", "history.csv", "history.json"
CLASSES, SPLIT, SUMMARY, METRICS, LOG = (
    "classes.json", "split.json", "summary.txt", "metrics.json", "train.log")
BEST, LAST = "best.pt", "last.pt"


class RunDirectory:
    def __init__(self, path: Path, quiet: bool = False, main_process: bool = True):
        self.path = Path(path)
        self.quiet = quiet
        self.main_process = main_process

    @classmethod
    def create(cls, out: str | Path, name: str, **kwargs) -> RunDirectory:
        root = Path(out)
        path = root / name
        suffix = 1
        while path.exists():
            suffix += 1
            path = root / f"{name}-{suffix}"
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise CnnlabError(f"--out {out}: cannot create the run directory: {exc.strerror}") from None
        return cls(path, **kwargs)

    def file(self, name: str) -> Path:
        return self.path / name

    # printing
    def log(self, message: str, console: bool = True) -> None:
        if not self.main_process:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.file(LOG).open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")
        if console and not self.quiet:
            tqdm.write(message, file=sys.stdout)

    def progress(self, total: int, description: str) -> tqdm:
        """A Keras-like bar on a terminal; nothing when output is piped (the epoch line says it)."""
        enabled = self.main_process and not self.quiet and sys.stdout.isatty()
        return tqdm(total=total, desc=description, disable=not enabled, leave=False,
                    unit="step", dynamic_ncols=True, file=sys.stdout,
                    bar_format="{desc} {n_fmt}/{total_fmt} {bar} ETA {remaining} {postfix}")

    # files
    def write_text(self, name: str, text: str) -> None:
        if self.main_process:
            write_text_atomic(self.file(name), text)

    def write_json(self, name: str, data: Any) -> None:
        if self.main_process:
            write_json_atomic(self.file(name), data)

    def save_checkpoint(self, name: str, payload: dict) -> None:
        if self.main_process:
            save_checkpoint(self.file(name), payload)

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


def run_name(config: TrainConfig) -> str:
    source, _, path = config.data.spec.partition(":")
    parts = [source] + ([Path(path).name] if path and Path(path).name != source else [])
    data = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(parts)).strip("-")
    return f"{datetime.now():%Y%m%d-%H%M%S}-{config.model.name}-{data}"


@dataclass
class Run:
    """A finished (or interrupted) run, read from its directory."""

    path: Path
    config: TrainConfig
    classes: list[str]
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def checkpoint(self, which: str = "best") -> dict:
        return load_checkpoint(self.path / f"{which}.pt")

    def load_model(self, which: str = "best"):
        """The trained model (eval mode, on the CPU) and its checkpoint."""
        from .models.weights import model_from_checkpoint

        checkpoint = self.checkpoint(which)
        return model_from_checkpoint(checkpoint, self.path / f"{which}.pt"), checkpoint

    def __repr__(self) -> str:
        best = self.metrics.get("val", {}).get("accuracy")
        return f"Run({str(self.path)!r}, model={self.config.model.name!r}, val_accuracy={best})"


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise CnnlabError(f"{path}: no such run directory")
    if not (path / CONFIG).is_file() or not (path / CLASSES).is_file():
        raise CnnlabError(f"{path}: not a cnnlab run directory (no {CONFIG} or {CLASSES})")
    config = TrainConfig.from_yaml(path / CONFIG)
    classes = _read_json(path / CLASSES)
    history = _read_json(path / HISTORY_JSON) if (path / HISTORY_JSON).is_file() else []
    metrics = _read_json(path / METRICS) if (path / METRICS).is_file() else {}
    return Run(path, config, classes, history, metrics)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CnnlabError(f"{path}: unreadable JSON ({exc})") from None

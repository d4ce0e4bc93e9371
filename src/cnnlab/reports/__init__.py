"""Reports: the pictures and report.html of every run, and the comparison of runs. Pictures are
drawn here and written through the run's RunDirectory, which owns every file name."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import runs
from ..data.inspect import augmented_views
from ..errors import CnnlabError, callers_stacklevel
from ..io import write_atomic, write_text_atomic
from . import plots
from .html import ReportSources, comparison_report, run_report, short_names


def split_pictures(directory: runs.RunDirectory, split: str, part, probs: np.ndarray, metrics: dict,
                   classes: list[str], folder: str = "",
                   explain: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]] | None = None) -> None:
    """Confusion matrices, ROC, reliability and prediction grids of one evaluated split, in the run
    directory or its sub-folder ``folder``. ``explain(indices)`` gives the model's view of those
    samples and their Grad-CAM maps, laid over the grids."""
    names = {kind: f"{folder}/{name}" if folder else name for kind, name in runs.split_pictures(split).items()}
    matrix = np.asarray(metrics["confusion_matrix"])
    directory.write_bytes(names["confusion"], plots.confusion_matrix(matrix, classes, normalize=False))
    directory.write_bytes(names["confusion_normalized"], plots.confusion_matrix(matrix, classes, normalize=True))
    directory.write_bytes(names["roc"], plots.roc_curves(probs, part.labels, classes, metrics["roc_auc"]))
    directory.write_bytes(names["calibration"], plots.reliability_diagram(metrics["calibration"]))
    for kind, mistakes in (("samples", False), ("mistakes", True)):
        chosen, _ = plots.grid_choice(part.labels, probs, mistakes)
        views, heatmaps = explain(chosen) if explain is not None and len(chosen) else (None, None)
        directory.write_bytes(names[kind], plots.prediction_grid(part, probs, classes, mistakes,
                                                                 views=views, heatmaps=heatmaps))


def run_pictures(directory: runs.RunDirectory, history: list[dict], best_epoch: int | None, dataset,
                 augment: list[str], crop: tuple[int, int] | None) -> None:
    directory.write_bytes(runs.CURVES, plots.training_curves({directory.path.name: history}, best_epoch))
    directory.write_bytes(runs.PREVIEW, preview(dataset, augment, crop))


def write_report(directory: runs.RunDirectory) -> Path:
    directory.write_text(runs.REPORT, run_report(directory))
    return directory.file(runs.REPORT)


def preview(dataset, augment: list[str] = (), crop: tuple[int, int] | None = None, kind: str = "jpeg") -> bytes:
    """A grid of training images per class (of test images, for a test set on its own); with
    ``augment`` or a ``crop`` smaller than the images, an image per class as evaluation sees it,
    then as training augments it; a ``kind`` (jpeg or png) file."""
    if augment or (crop is not None and tuple(crop) != tuple(dataset.image_size)):
        views, titles = augmented_views(dataset, list(augment), crop, views=7)
        return plots.image_grid(views, titles, columns=8, kind=kind,
                                title=f"evaluated (centre crop) and trained views; augment: {', '.join(augment) or 'none'}")
    return plots.data_preview(dataset.splits[dataset.main_split], dataset.classes, kind=kind)


PICTURE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def write_preview(dataset, out: Path, augment: list[str] = (), crop: tuple[int, int] | None = None) -> Path:
    """``cnnlab data info --preview FILE``: ``preview`` of ``dataset``."""
    out = runs.refuse_run_file(out, "a picture", PICTURE_SUFFIXES)
    data = preview(dataset, augment, crop, PICTURE_SUFFIXES[out.suffix.lower()])
    return write_atomic(out, lambda handle: handle.write(data))


def comparable_run(path: Path) -> runs.Run:
    """A run as compare shows it: each file it reads (its summary's parameter count among
    them) read now, so that a damaged one refuses the run before anything is written."""
    run = runs.load_run(path)
    run.summary  # noqa: B018 - read now, with the rest
    return run


def runs_to_compare(path: Path) -> list[runs.Run]:
    """A run given to compare, or the runs of a folder given instead (a sweep's). A run of the
    folder that cannot be read is left out with a warning, as `runs` lists it and goes on; a
    run given by name is refused."""
    if not path.is_dir() or runs.is_run_directory(path):
        return [comparable_run(path)]  # which says what is wrong, if anything
    found = runs.runs_in(path)
    if not found:
        raise CnnlabError(f"{path}: not a cnnlab run directory ({runs.CONFIG} and {runs.CLASSES}), nor a folder "
                          "holding runs")
    loaded = []
    for run in found:
        try:
            loaded.append(comparable_run(run))
        except CnnlabError as exc:
            warnings.warn(f"{run}: left out of the comparison: {exc}", stacklevel=callers_stacklevel())
    if not loaded:
        raise CnnlabError(f"{path}: every run it holds is unreadable ({len(found)} left out)")
    return loaded


def compare(run_paths: list, out: Path) -> Path:
    """Validation accuracy, loss and MSE of several runs (or of every run in a folder of them)
    overlaid, and a table of their best metrics, parameters, training time and img/s (with
    the machines those were measured on), in
    ``out`` (HTML) beside ``out``.png."""
    out = runs.refuse_run_file(out, "a comparison", (".html", ".htm"))
    picture_path = runs.refuse_run_file(out.with_suffix(".png"), "its picture", (".png",))
    loaded = [run for path in map(Path, run_paths) for run in runs_to_compare(path)]
    names = [r.path.name for r in loaded]
    if len(set(names)) < len(names):
        names = [str(r.path) for r in loaded]
    names = short_names(names)
    curves = plots.training_curves(dict(zip(names, (r.history for r in loaded), strict=True)),
                                   metrics=("accuracy", "loss", "mse"))
    picture = write_atomic(picture_path, lambda handle: handle.write(curves))
    return write_text_atomic(out, comparison_report(loaded, names, picture))


__all__ = ["ReportSources", "compare", "plots", "run_pictures", "split_pictures", "write_preview", "write_report"]

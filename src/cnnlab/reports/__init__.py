"""Reports: the pictures and report.html of every run, and the comparison of runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import write_text_atomic
from . import plots
from .html import comparison_report, run_report


def split_pictures(run_path: Path, split: str, part, probs: np.ndarray, metrics: dict,
                   classes: list[str]) -> None:
    """Confusion matrices, ROC and prediction grids of one evaluated split."""
    plots.confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes,
                           run_path / f"confusion-{split}.png", normalize=False)
    plots.confusion_matrix(np.asarray(metrics["confusion_matrix"]), classes,
                           run_path / f"confusion-{split}-normalized.png", normalize=True)
    plots.roc_curves(probs, part.labels, classes, metrics["roc_auc"], run_path / f"roc-{split}.png")
    plots.prediction_grid(part, probs, classes, run_path / f"samples-{split}.png")
    plots.prediction_grid(part, probs, classes, run_path / f"mistakes-{split}.png",
                          mistakes_only=True)


def run_pictures(run_path: Path, history: list[dict], best_epoch: int | None, train,
                 classes: list[str]) -> None:
    plots.training_curves({run_path.name: history}, run_path / "curves.png", best_epoch)
    plots.data_preview(train, classes, run_path / "preview.png")


def write_report(run_path: Path) -> Path:
    return write_text_atomic(run_path / "report.html", run_report(run_path))


def compare(run_paths: list, out: Path) -> Path:
    """Validation accuracy, loss and MSE of several runs overlaid, and a table of their best
    metrics, parameters, training time and img/s, in ``out`` (HTML) beside ``out``.png."""
    from ..runs import load_run

    runs = [load_run(p) for p in run_paths]
    names = [r.path.name for r in runs]
    if len(set(names)) < len(names):
        names = [str(r.path) for r in runs]
    out = Path(out)
    curves = plots.training_curves(dict(zip(names, (r.history for r in runs), strict=True)),
                                   out.with_suffix(".png"), metrics=("accuracy", "loss", "mse"))
    return write_text_atomic(out, comparison_report(runs, curves))


__all__ = ["compare", "plots", "run_pictures", "split_pictures", "write_report"]

"""The pictures the tutorials draw by hand, drawn for every run (matplotlib, Agg): each function
returns the PNG's bytes, for the run directory (or the caller) to write."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from ..errors import callers_stacklevel  # noqa: E402

NUMBERS_UP_TO = 30
"""Confusion matrices with more classes than this show colours only."""


GLYPH_MISSING = re.compile(r"Glyph (\d+) .*missing from font")
undrawable: set[str] = set()
"""The characters (of class names, mostly) already reported as missing from the fonts."""


def png(figure) -> bytes:
    return picture(figure, "png")


def picture(figure, kind: str) -> bytes:
    """``figure`` as a png or jpeg file's bytes: JPEG for grids of photographs, which PNG
    compresses poorly (a grid of 64 flowers: 3.2 MB as PNG, 0.6 MB as JPEG)."""
    for text in figure.findobj(Text):  # tick labels, titles and legends alike
        text.set_text(drawable(text.get_text()))
    buffer = io.BytesIO()
    # matplotlib warns of each character its fonts lack, in every picture: said once instead
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.savefig(buffer, format=kind, dpi=100, bbox_inches="tight",
                       pil_kwargs={"quality": 90} if kind == "jpeg" else None)
    plt.close(figure)
    missing = set()
    for warning in caught:
        if glyph := GLYPH_MISSING.search(str(warning.message)):
            missing.add(chr(int(glyph.group(1))))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if new := missing - undrawable:
        undrawable.update(new)
        warnings.warn(f"the installed fonts lack {''.join(sorted(new))} (of class names): the pictures draw "
                      "them as boxes, report.html's tables show them; install a font that has them (e.g. Noto Sans "
                      "CJK) for matplotlib", stacklevel=callers_stacklevel())
    return buffer.getvalue()


def drawable(text: str) -> str:
    """``text`` with the bytes of a name that is not UTF-8 (a file or class folder named on
    another system, which Python holds as surrogates no font can draw) shown as U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return text


def training_curves(histories: dict[str, list[dict]], best_epoch: int | None = None,
                    metrics: Sequence[str] = ("accuracy", "loss")) -> bytes:
    """Train (dashed) against validation (solid) per metric; with several runs, one colour each
    and one legend under the plots, where it covers no curve."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2), squeeze=False)
    single = len(histories) == 1
    last = max((row["epoch"] for history in histories.values() for row in history), default=1)
    for axis, metric in zip(axes[0], metrics, strict=True):
        for index, (name, history) in enumerate(histories.items()):
            colour = f"C{index}"
            epochs = [row["epoch"] for row in history]
            for prefix, style, label in (("", "--", "train"), ("val_", "-", "validation")):
                values = [row.get(prefix + metric) for row in history]
                if all(v is None for v in values):
                    continue
                if single:
                    colour = "C0" if prefix == "" else "C1"
                axis.plot(epochs, values, style, color=colour, marker="o", markersize=3,
                          label=label if single else f"{name} ({label})")
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlim(0.5, last + 0.5)  # whole epochs, also for a run of one
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(metric.replace("_", " "))
        axis.grid(alpha=0.3)
        if single:
            axis.legend(fontsize=8)
    if not single:
        handles, labels = axes[0][0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      ncol=min(4, len(labels)), fontsize=8, frameon=False)
    return png(figure)


def confusion_matrix(matrix: np.ndarray, classes: list[str], normalize: bool) -> bytes:
    matrix = np.asarray(matrix, dtype=np.float64)
    if normalize:
        totals = matrix.sum(1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    count = len(classes)
    side = min(max(5.0, 0.32 * count + 2), 30.0)
    figure, axis = plt.subplots(figsize=(side + 1.5, side))
    image = axis.imshow(matrix, cmap="Blues", interpolation="nearest",
                        vmin=0, vmax=1 if normalize else None)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    font = max(4, min(10, int(300 / max(count, 1))))
    names = [drawable(name) for name in classes]  # tick labels are made at drawing time, after png() looks
    axis.set_xticks(range(count), names, rotation=90, fontsize=font)
    axis.set_yticks(range(count), names, fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if count <= NUMBERS_UP_TO:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), value in np.ndenumerate(matrix):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            axis.text(col, row, text, ha="center", va="center", fontsize=max(5, font - 1),
                      color="white" if value > threshold else "black")
    return png(figure)


def roc_curves(probs: np.ndarray, labels: np.ndarray, classes: list[str], auc: dict,
               worst: int = 5) -> bytes:
    """Micro and macro averages and the classes with the lowest AUC."""
    count = len(classes)
    one_hot = np.eye(count)[labels]
    figure, axis = plt.subplots(figsize=(6.5, 6))
    grid = np.linspace(0, 1, 201)
    curves = {}
    for c in range(count):
        if auc["per_class"][c] is not None:
            fpr, tpr, _ = roc_curve(one_hot[:, c], probs[:, c])
            curves[c] = (fpr, tpr)
    if auc["micro"] is not None:
        fpr, tpr, _ = roc_curve(one_hot.ravel(), probs.ravel())
        axis.plot(fpr, tpr, color="black", linewidth=2, label=f"micro average (AUC {auc['micro']:.3f})")
    if curves:
        mean_tpr = np.mean([np.interp(grid, fpr, tpr) for fpr, tpr in curves.values()], axis=0)
        axis.plot(grid, mean_tpr, color="C3", linewidth=2, linestyle="--",
                  label=f"macro average (AUC {auc['macro']:.3f})")
        shown = sorted(curves, key=lambda c: auc["per_class"][c])[:worst]
        for c in shown:
            fpr, tpr = curves[c]
            axis.plot(fpr, tpr, linewidth=1, alpha=0.8,
                      label=f"{classes[c]} (AUC {auc['per_class'][c]:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"ROC, one-vs-rest (lowest {min(worst, len(curves))} classes shown)")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    return png(figure)


def reliability_diagram(calibration: dict) -> bytes:
    """Accuracy per confidence bin beside the bin's mean confidence (a calibrated model's bars
    reach its marks, on the diagonal; bars below their marks are over-confident, above them
    under-confident), and how many samples each bin holds."""
    bins = calibration["bins"]
    width = bins[0]["high"] - bins[0]["low"]
    lows = np.array([b["low"] for b in bins])
    filled = [b for b in bins if b["count"]]
    figure, (axis, counts) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1]})
    axis.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
             color="C0", edgecolor="white", label="accuracy")
    axis.hlines([b["confidence"] for b in filled], [b["low"] for b in filled], [b["high"] for b in filled],
                color="C3", linewidth=2.5, label="mean confidence")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy")
    axis.set_title(f"Reliability: expected calibration error {calibration['ece']:.4f} ({len(bins)} bins)")
    axis.legend(fontsize=8, loc="upper left")
    axis.grid(alpha=0.3)
    counts.bar(lows, [b["count"] for b in bins], width=width, align="edge", color="grey", edgecolor="white")
    counts.set_xlabel("top-1 probability (confidence)")
    counts.set_ylabel("samples")
    counts.grid(alpha=0.3)
    return png(figure)


def image_grid(images: np.ndarray, titles: list[str], colours: list[str] | None = None,
               columns: int = 8, title: str | None = None, heatmaps: np.ndarray | None = None,
               kind: str = "jpeg") -> bytes:
    """Images (N, H, W, C) uint8 in a grid, each with its title, as a ``kind`` (jpeg or png)
    file; ``heatmaps`` (N, H, W) in [0, 1] are laid over them (Grad-CAM)."""
    count = max(len(images), 1)
    columns = min(columns, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.15 * rows), squeeze=False,
                             layout="constrained")  # keeps the title next to the grid, however tall
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(images):
            continue
        image = images[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image,
                    cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=255)
        if heatmaps is not None:
            axis.imshow(heatmaps[index], cmap="jet", alpha=0.35, vmin=0, vmax=1)
        axis.set_title(titles[index], fontsize=7, color=(colours or ["black"] * len(images))[index])
    if title:
        figure.suptitle(title, fontsize=10)
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    return picture(figure, kind)


def grid_choice(labels: np.ndarray, probs: np.ndarray, mistakes_only: bool, count: int = 32,
                seed: int = 0) -> tuple[np.ndarray, str]:
    """The samples a prediction grid shows, and its title: a seeded sample, or the most
    confident mistakes."""
    predicted = probs.argmax(1)
    confidence = probs[np.arange(len(probs)), predicted]
    if mistakes_only:
        wrong = np.flatnonzero(predicted != labels)
        return (wrong[np.argsort(-confidence[wrong])][:count],
                f"most confident mistakes ({len(wrong)} mistakes in {len(labels)})")
    rng = np.random.default_rng(seed)
    return (np.sort(rng.choice(len(labels), size=min(count, len(labels)), replace=False)),
            "sample predictions (true / predicted, probability; mistakes in red)")


def prediction_grid(split, probs: np.ndarray, classes: list[str], mistakes_only: bool = False,
                    count: int = 32, seed: int = 0, views: np.ndarray | None = None,
                    heatmaps: np.ndarray | None = None) -> bytes:
    """A sample of a Split's predictions (true / predicted / probability; mistakes in red), or
    the most confident mistakes; ``views`` (the model's input of each chosen sample) and their
    Grad-CAM ``heatmaps`` replace the stored images when given."""
    labels = split.labels
    chosen, title = grid_choice(labels, probs, mistakes_only, count, seed)
    predicted = probs.argmax(1)
    confidence = probs[np.arange(len(probs)), predicted]
    titles = [f"{classes[labels[i]][:12]} / {classes[predicted[i]][:12]}\n{confidence[i]:.2f}" for i in chosen]
    colours = ["black" if predicted[i] == labels[i] else "red" for i in chosen]
    if heatmaps is not None:
        title += "; Grad-CAM of the predicted class"
    return image_grid(split.gather(chosen) if views is None else views, titles, colours, title=title,
                      heatmaps=heatmaps)


def data_preview(split, classes: list[str], per_class: int = 4, max_classes: int = 16,
                 seed: int = 0, kind: str = "jpeg") -> bytes:
    """A few images of each class of a Split (up to ``max_classes`` classes), titled by class."""
    labels = split.labels
    rng = np.random.default_rng(seed)
    picked = []
    for c in range(min(len(classes), max_classes)):
        members = np.flatnonzero(labels == c)
        picked += list(rng.choice(members, size=min(per_class, len(members)), replace=False))
    picked = np.asarray(picked, dtype=np.int64)
    return image_grid(split.gather(picked), [classes[labels[i]][:16] for i in picked],
                      columns=per_class * 2 if per_class * 2 <= 8 else 8, title="data preview", kind=kind)


def lr_curve(lrs: list[float], losses: list[float], steepest: float, minimum: float) -> bytes:
    """The learning-rate range test: smoothed loss against a log-scaled learning rate."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(lrs, losses, color="C0")
    axis.set_xscale("log")
    for value, colour, label in ((steepest, "C3", "steepest descent"), (minimum, "C2", "minimum / 10")):
        axis.axvline(value, color=colour, linestyle="--", label=f"{label}: {value:.2e}")
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel("training loss (smoothed)")
    axis.set_title("learning-rate range test")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=9)
    return png(figure)

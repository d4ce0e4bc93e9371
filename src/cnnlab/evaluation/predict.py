"""Predicting classes of new images, files or pixels held in memory, with a run's best checkpoint."""

from __future__ import annotations

import glob
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..data import BatchLoader, Split
from ..data.download import Remote, fetch_url
from ..data.images import ImageItem, decode_many, is_image_file, resize_images, to_mode
from ..data.readers.arrays import images_array, pixel_table
from ..data.readers.gtsrb import sign_boxes
from ..data.readers.hub import TABLE_SUFFIXES, table_images
from ..errors import CnnlabError, CnnlabWarning, DataError, callers_stacklevel
from .artifacts import RunArtifacts, inference_model, load_artifacts
from .inference import check_finite_outputs, predict_logits, warn_of_mirrored_views
from .metrics import top_classes


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]
    """(class name, probability), most probable first."""


@dataclass
class PredictionResult:
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    probabilities: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    """Every class's probability, a row per prediction (Keras' ``model.predict(x)``)."""
    descriptions: dict[str, str] = field(default_factory=dict)
    """What a class is, where the run's data says and its name does not (Run.descriptions)."""
    seconds: float = 0.0
    """The time these predictions took: reading and decoding the files (or resizing the images
    given) and the model's pass, not loading the model."""
    machine: str = ""
    """What they were computed with (``Runtime.describe``): device, precision, threads, CPU or GPU."""

    def __repr__(self) -> str:  # not every prediction and probability
        speed = f"; {len(self.predictions) / self.seconds:,.0f} img/s" if self.seconds else ""
        return f"PredictionResult({len(self.predictions)} predictions, {len(self.unreadable)} unreadable{speed})"


def expand_inputs(inputs: list[str]) -> list[tuple[ImageItem, str]]:
    """Files, folders (searched recursively for images), glob patterns, http(s) URLs of
    images (downloaded once into the data home) and a Hugging Face dataset's parquet or Arrow
    files, in the given order: each file, and the name its result is shown by (a URL's is the
    URL, a row's FILE:ROW)."""
    found: list[tuple[ImageItem, str]] = []
    for item in inputs:
        path = Path(item)
        if item.startswith(("http://", "https://")):
            found.append((fetch_url(Remote(item), "the image file instead"), item))
        elif path.is_dir():
            found += [(p, str(p)) for p in sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))]
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:  # a Hugging Face dataset's, FILE:ROW from 0
            found += [(image, f"{item}:{row}") for row, image in enumerate(table_images(path))]
        elif path.is_file():
            found.append((path, str(path)))
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise CnnlabError(f"{item}: the pattern matches no files")
            found += [(p, str(p)) for p in matches]
        elif path.exists():
            raise CnnlabError(f"{item}: not a regular file (a pipe, socket or device); give image files or folders")
        else:
            raise CnnlabError(f"{item}: no such file or folder")
    if not found:
        raise CnnlabError(f"no image files in {', '.join(inputs)}")
    return found


def predict_files(run_path, inputs: list[str], top_k: int = 5, batch_size: int = 64,
                  tta: str | None = None, device: str = "auto", boxes: Path | None = None) -> PredictionResult:
    """Top-k classes of every readable image in ``inputs``; unreadable files are reported.
    ``boxes``: a GTSRB annotation CSV, each image cropped to its row's box (``sign_boxes``)."""
    parts = list(predict_in_chunks(run_path, inputs, top_k, batch_size, tta, device, boxes)[1])
    return PredictionResult([p for part in parts for p in part.predictions],
                            {path: why for part in parts for path, why in part.unreadable.items()},
                            np.concatenate([part.probabilities for part in parts]), parts[0].descriptions,
                            sum(part.seconds for part in parts), parts[0].machine)


def pixel_rows(images, size: tuple[int, int], channels: int) -> np.ndarray:
    """(N, height, width, channels) uint8 from a PIL image, an array of pixels as ``train(data=)``
    takes them ((N, H, W[, C]) or one (H, W[, C]) image, uint8 0..255 or floats in [0, 1]; a
    torch tensor too), or a list of those, each resized to ``size`` as an image file would be."""
    if isinstance(images, list | tuple):
        rows = [one_image_rows(image, size, channels, f"inputs[{i}]") for i, image in enumerate(images)]
        if not rows:
            raise DataError("inputs: holds no images")
        return np.concatenate(rows)
    return one_image_rows(images, size, channels, "inputs")


def one_image_rows(image, size: tuple[int, int], channels: int, where: str) -> np.ndarray:
    if isinstance(image, str | Path):
        raise DataError(f"{where}: a file path among in-memory images: give paths or images, not both")
    if isinstance(image, Image.Image):
        upright = to_mode(ImageOps.exif_transpose(image), channels)  # as the image's file would be read
        return resize_images(np.asarray(upright).reshape(upright.height, upright.width, channels)[None],
                             size, channels)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise DataError(f"{where}: not an image ({type(image).__name__}); give a PIL image, "
                        "an array of pixels or a file path")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3)):
        image = image[None]
    elif image.ndim == 4 and image.shape[1] in (1, 3) and image.shape[3] not in (1, 3):
        raise DataError(f"{where}: shaped {image.shape}, channels first; give (N, H, W, C), "
                        "e.g. np.moveaxis(x, 1, -1) or x.permute(0, 2, 3, 1)")
    return resize_images(images_array(image, where), size, channels)


def predict_images(run_path, images, top_k: int = 5, batch_size: int = 64, tta: str | None = None,
                   device: str = "auto") -> PredictionResult:
    """Top-k classes of images held in memory (see ``pixel_rows``), named by their position:
    "[0]", "[1]"..."""
    artifacts = prediction_artifacts(run_path, top_k, tta)
    prep = artifacts.preprocessing
    model, runtime = inference_model(artifacts, device)
    started = time.perf_counter()
    rows = pixel_rows(images, prep.image_size, prep.channels)
    result = predict_rows(model, runtime, artifacts, Split(rows, np.zeros(len(rows), dtype=np.int64),
                                                           [f"[{i}]" for i in range(len(rows))]),
                          top_k, batch_size, tta)
    result.seconds, result.machine = time.perf_counter() - started, runtime.describe()
    return result


def prediction_artifacts(run_path, top_k: int, tta: str | None, cropped: bool = False) -> RunArtifacts:
    """The run's artifacts, after the checks and warnings that every prediction, of files or of
    images in memory, makes first. A run trained on boxes cut from its images (GTSRB's
    ``roi_crop``) reads an image given whole less well: gtsrb-resnet9 scored 87.3% on its
    validation images of gtsrb-tune whole, 99.0% on their sign boxes. ``cropped``: the images
    are cut to boxes given with them."""
    if top_k < 1:
        raise CnnlabError.about("top_k", f": must be at least 1; got {top_k}")
    artifacts = load_artifacts(run_path)
    warn_of_mirrored_views(tta, artifacts.run.config.data.augment)
    if artifacts.preprocessing.source_options.get("roi_crop") and not cropped:
        warnings.warn(CnnlabWarning.mentioning(
            lambda name: "this run was trained on the sign boxes cut from its images (roi_crop), and predict "
                         "takes each image whole: crop the images to the sign, as the training images were, or "
                         f"give their boxes ({name('boxes')}=CSV, as GTSRB's annotations)"), stacklevel=callers_stacklevel())
    return artifacts


def predict_rows(model, runtime, artifacts, split: Split, top_k: int, batch_size: int,
                 tta: str | None) -> PredictionResult:
    classes = artifacts.classes
    logits = predict_logits(model, BatchLoader(split, batch_size, artifacts.preprocessing), runtime, tta)
    check_finite_outputs(logits)
    probs = artifacts.loss.probabilities(logits).numpy() if len(split.ids) else np.empty((0, len(classes)))
    order = top_classes(probs, min(top_k, len(classes)))
    return PredictionResult([Prediction(sample_id, [(classes[c], float(probs[row, c])) for c in order[row]])
                             for row, sample_id in enumerate(split.ids)], probabilities=probs.astype(np.float32),
                            descriptions=artifacts.run.descriptions)


CHUNK_BYTES = 256 * 2**20
"""Decoded images held at once: a folder of any size is predicted in chunks of this much."""


def chunked_predictions(artifacts: RunArtifacts, device: str, count: int,
                        load: Callable[[int, int], tuple[Split, dict[str, str]]], top_k: int, batch_size: int,
                        tta: str | None) -> Iterator[PredictionResult]:
    """The results for ``count`` images, CHUNK_BYTES of them at a time: ``load(start, stop)``
    gives those images as a Split at the run's size, and the unreadable among them by name.
    The model is loaded before this returns."""
    model, runtime = inference_model(artifacts, device)
    machine = runtime.describe()
    prep = artifacts.preprocessing
    chunk = max(1, CHUNK_BYTES // (prep.image_size[0] * prep.image_size[1] * prep.channels))

    def chunks() -> Iterator[PredictionResult]:
        for start in range(0, count, chunk):
            started = time.perf_counter()
            split, unreadable = load(start, min(start + chunk, count))
            result = predict_rows(model, runtime, artifacts, split, top_k, batch_size, tta)
            result.unreadable = unreadable
            result.seconds, result.machine = time.perf_counter() - started, machine
            yield result

    return chunks()


def predicted_tables(artifacts: RunArtifacts, tables: list[tuple[str, tuple[np.ndarray, np.ndarray | None]]],
                     top_k: int, batch_size: int, tta: str | None,
                     device: str) -> tuple[list[str], Iterator[PredictionResult]]:
    """predict_in_chunks of tables of pixels (Kaggle's test.csv): each row an image, named by
    its table and row number (Kaggle's ImageId, from 1); a labelled table's labels are left."""
    prep = artifacts.preprocessing
    named = [(f"{item}:{row}", images[row - 1]) for item, (images, _) in tables for row in range(1, len(images) + 1)]

    def load(start: int, stop: int) -> tuple[Split, dict[str, str]]:
        part = named[start:stop]
        rows = resize_images(np.stack([image for _, image in part]), prep.image_size, prep.channels)
        return Split(rows, np.zeros(len(rows), dtype=np.int64), [name for name, _ in part]), {}

    return [name for name, _ in named], chunked_predictions(artifacts, device, len(named), load, top_k, batch_size, tta)


def predict_in_chunks(run_path, inputs: list[str], top_k: int = 5, batch_size: int = 64, tta: str | None = None,
                      device: str = "auto", boxes: Path | None = None) -> tuple[list[str], Iterator[PredictionResult]]:
    """The names the images of ``inputs`` are shown by, and predict_files' results one chunk
    of them after another, so that the first come at once and memory holds one chunk of decoded
    images whatever the number of files. The run, the inputs and their ``boxes`` are checked
    before this returns."""
    artifacts = prediction_artifacts(run_path, top_k, tta, cropped=boxes is not None)
    tables = [(item, table) for item in inputs if Path(item).suffix.lower() == ".csv" and Path(item).is_file()
              and (table := pixel_table(Path(item))) is not None]
    if tables:
        if len(tables) < len(inputs) or boxes is not None:
            raise CnnlabError(f"{tables[0][0]}: a table of pixels is predicted on its own, not with image files "
                              "or boxes; give the tables alone")
        return predicted_tables(artifacts, tables, top_k, batch_size, tta, device)
    found = expand_inputs(inputs)
    paths, names = [path for path, _ in found], {str(path): name for path, name in found}
    crops = None if boxes is None else sign_boxes(Path(boxes), paths)
    prep = artifacts.preprocessing

    def load(start: int, stop: int) -> tuple[Split, dict[str, str]]:
        part = paths[start:stop]
        images, kept, unreadable = decode_many(part, prep.image_size, prep.channels,
                                               boxes=None if crops is None else crops[start:stop])
        split = Split(images[kept], np.zeros(len(kept), dtype=np.int64), [names[str(part[i])] for i in kept])
        return split, {names[path]: reason for path, reason in unreadable.items()}

    return [name for _, name in found], chunked_predictions(artifacts, device, len(paths), load, top_k, batch_size, tta)

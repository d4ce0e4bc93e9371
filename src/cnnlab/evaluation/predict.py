"""Predicting classes of new image files with a run's best checkpoint."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import BatchLoader, Split
from ..data.images import decode_many, is_image_file
from ..errors import CnnlabError
from .artifacts import inference_model, load_artifacts
from .inference import predict_logits


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]
    """(class name, probability), most probable first."""


@dataclass
class PredictionResult:
    predictions: list[Prediction] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (searched recursively for images) and glob patterns, in the given order."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        elif path.is_file():
            paths.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise CnnlabError(f"{item}: the pattern matches no files")
            paths += matches
        else:
            raise CnnlabError(f"{item}: no such file or folder")
    if not paths:
        raise CnnlabError(f"no image files in {', '.join(inputs)}")
    return paths


def predict_files(run_path, inputs: list[str], top_k: int = 5, batch_size: int = 64,
                  tta: str | None = None, device: str = "auto") -> PredictionResult:
    """Top-k classes of every readable image in ``inputs``; unreadable files are reported."""
    result = PredictionResult()
    for part in predict_in_chunks(run_path, inputs, top_k, batch_size, tta, device)[1]:
        result.predictions += part.predictions
        result.unreadable.update(part.unreadable)
    return result


CHUNK_BYTES = 256 * 2**20
"""Decoded images held at once: a folder of any size is predicted in chunks of this much."""


def predict_in_chunks(run_path, inputs: list[str], top_k: int = 5, batch_size: int = 64, tta: str | None = None,
                      device: str = "auto") -> tuple[list[Path], Iterator[PredictionResult]]:
    """The image files of ``inputs``, and predict_files' results one chunk of them after
    another, so that the first come at once and memory holds one chunk of decoded images
    whatever the number of files. The run and the inputs are checked before this returns."""
    if top_k < 1:
        raise CnnlabError(f"--top-k: must be at least 1; got {top_k}")
    artifacts = load_artifacts(run_path)
    paths = expand_inputs(inputs)
    model, runtime = inference_model(artifacts, device)
    prep, classes = artifacts.preprocessing, artifacts.classes
    chunk = max(1, CHUNK_BYTES // (prep.image_size[0] * prep.image_size[1] * prep.channels))

    def chunks() -> Iterator[PredictionResult]:
        for start in range(0, len(paths), chunk):
            part = paths[start:start + chunk]
            images, kept, unreadable = decode_many(part, prep.image_size, prep.channels)
            split = Split(images[kept], np.zeros(len(kept), dtype=np.int64), [str(part[i]) for i in kept])
            logits = predict_logits(model, BatchLoader(split, batch_size, prep), runtime, tta)
            probs = artifacts.loss.probabilities(logits).numpy() if len(kept) else np.empty((0, len(classes)))
            order = np.argsort(-probs, axis=1)[:, : min(top_k, len(classes))]
            yield PredictionResult([Prediction(sample_id, [(classes[c], float(probs[row, c])) for c in order[row]])
                                    for row, sample_id in enumerate(split.ids)], unreadable)

    return paths, chunks()

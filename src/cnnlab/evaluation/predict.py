"""Predicting classes of new image files with a run's best checkpoint."""

from __future__ import annotations

import glob
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
    if top_k < 1:
        raise CnnlabError(f"--top-k: must be at least 1; got {top_k}")
    artifacts = load_artifacts(run_path)
    paths = expand_inputs(inputs)
    model, runtime = inference_model(artifacts, device)
    prep, classes = artifacts.preprocessing, artifacts.classes
    images, kept, unreadable = decode_many(paths, prep.image_size, prep.channels)
    split = Split(images[kept], np.zeros(len(kept), dtype=np.int64), [str(paths[i]) for i in kept])
    logits = predict_logits(model, BatchLoader(split, batch_size, prep), runtime, tta)
    probs = artifacts.loss.probabilities(logits).numpy() if len(kept) else np.empty((0, len(classes)))
    order = np.argsort(-probs, axis=1)[:, : min(top_k, len(classes))]
    predictions = [Prediction(sample_id, [(classes[c], float(probs[row, c])) for c in order[row]])
                   for row, sample_id in enumerate(split.ids)]
    return PredictionResult(predictions, unreadable)

"""The Python API: thin functions over the same core the CLI uses.

    from cnnlab import train, evaluate, predict, load_run
    run = train(model="lenet5", data="mnist:/data/mnist", epochs=3)
    evaluate(run, split="test")["accuracy"]
    predict(run, ["digit.png"]).predictions[0].top
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .data import Dataset, load_dataset
from .evaluation.evaluate import evaluate_run
from .evaluation.predict import PredictionResult, predict_files
from .models import create_model
from .runs import Run, load_run
from .training.callbacks import Callback
from .training.trainer import train as _train

# keyword shortcuts for the fields people set most
_SHORTCUTS = {"model": "model.name", "data": "data.spec", "lr": "optimizer.lr", "crop": "data.crop",
              "optimizer": "optimizer.name", "val_split": "data.val_split",
              "schedule": "schedule.name", "augment": "data.augment", "subset": "data.subset",
              "image_size": "data.image_size", "weights": "model.weights"}


def train(config: TrainConfig | dict | str | Path | None = None, *,
          callbacks: Sequence[Callback] = (), quiet: bool = False, **overrides: Any) -> Run:
    """Train and return the Run. ``config`` is a TrainConfig, a dict or a recipe YAML path;
    keyword overrides use field names (``epochs=3``), dotted paths with ``__``
    (``optimizer__momentum=0.9``) or the shortcuts ``model``, ``data``, ``lr``, ``optimizer``,
    ``val_split``, ``schedule``, ``augment``, ``subset``, ``image_size``, ``weights``."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    elif isinstance(config, str | Path):
        config = TrainConfig.from_yaml(config)
    dotted = {_SHORTCUTS.get(key, key.replace("__", ".")): value for key, value in overrides.items()}
    if dotted:
        config = config.with_overrides(dotted, source="train()")
    return _train(config, callbacks=callbacks, quiet=quiet)


def resume(run: Run | str | Path, epochs: int | None = None, quiet: bool = False,
           callbacks: Sequence[Callback] = ()) -> Run:
    """Continue an interrupted run from its last.pt, optionally to more epochs."""
    path = run.path if isinstance(run, Run) else Path(run)
    config = load_run(path).config
    if epochs is not None:
        config = config.with_overrides({"epochs": epochs})
    return _train(config, callbacks=callbacks, resume=path, quiet=quiet)


def evaluate(run: Run | str | Path, data: str | None = None, split: str = "val", **kwargs) -> dict:
    """Metrics of the run's best checkpoint on ``split`` (val or test)."""
    return evaluate_run(run.path if isinstance(run, Run) else run, data, split, **kwargs)


def predict(run: Run | str | Path, inputs: str | Sequence[str], top_k: int = 5,
            tta: str | None = None) -> PredictionResult:
    """Top-k classes of image files, folders or globs; ``tta="10crop"`` averages ten views."""
    items = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    return predict_files(run.path if isinstance(run, Run) else run, [str(i) for i in items], top_k,
                         tta=tta)


__all__ = ["Dataset", "Run", "TrainConfig", "create_model", "evaluate", "load_dataset",
           "load_run", "predict", "resume", "train"]

"""The Python API: thin functions over the same core the CLI uses.

    from cnnlab import train, evaluate, predict, load_run
    run = train(model="lenet5", data="mnist:/data/mnist", epochs=3)
    evaluate(run, split="test")["accuracy"]
    predict(run, ["digit.png"]).predictions[0].top
"""

from __future__ import annotations

import functools
import inspect
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import KIND_WORDS, TrainConfig, checked_value
from .data import Dataset, load_dataset
from .errors import CnnlabError, ConfigError, Spell, shown
from .models import create_model as build_model
from .models import list_models
from .runs import Run, is_run_directory, load_run, weights_file

if TYPE_CHECKING:
    import torch

    from .evaluation.predict import PredictionResult
    from .training.callbacks import Callback
    from .training.lr_find import LRFinding

# Training, evaluation and prediction are imported when called: predicting needs neither
# scikit-learn nor matplotlib, which the others load (seconds of start-up).

# keyword shortcuts for the fields people set most
_SHORTCUTS = {"model": "model.name", "data": "data.spec", "lr": "optimizer.lr", "crop": "data.crop",
              "optimizer": "optimizer.name", "val_split": "data.val_split",
              "schedule": "schedule.name", "augment": "data.augment", "subset": "data.subset",
              "image_size": "data.image_size", "weights": "model.weights"}


_KEYWORDS = {dotted: keyword for keyword, dotted in _SHORTCUTS.items()}


def _keyword(dotted: str) -> str:
    """A config key as train() takes it: ``optimizer.lr`` -> ``lr``, ``optimizer.momentum`` ->
    ``optimizer__momentum``."""
    return _KEYWORDS.get(dotted, dotted.replace(".", "__"))


@contextmanager
def _errors_naming(keywords: Iterable[str], spell: Spell = _keyword) -> Iterator[None]:
    """Errors name options as the caller gave them: ``train(val_split=2)`` is told of
    ``val_split``, not of the CLI's --val-split; a value from the config of its key
    (``data.val_split``). ``keywords``: the config keys given as keywords."""
    given = frozenset(keywords)
    try:
        yield
    except CnnlabError as exc:
        exc.respell(spell, lambda option: spell(option) if option in given else option)
        raise


# the types the config checks its fields as (checked_value), by the names annotations give them
_PLAIN_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
# what else the API's annotations name, and how a message names each
_KINDS = {**KIND_WORDS, Path: "a path", Run: "a Run", TrainConfig: "a TrainConfig", dict: "a dict"}
_NAMES = {**_PLAIN_TYPES, "Path": Path, "Run": Run, "TrainConfig": TrainConfig, "dict": dict}


def _argument_check(annotation: str) -> Callable[[Any, str, str], Any] | None:
    """How an argument of this annotation is checked: numbers, flags and texts as the config's
    fields are; paths, runs, configs and mappings by their type; None where the annotation
    names anything else (a callback, arrays), which the function checks itself."""
    try:
        hint = eval(annotation, {"__builtins__": {}}, _NAMES)
    except (NameError, TypeError, SyntaxError):
        return None
    members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if all(member in _PLAIN_TYPES.values() for member in members):
        return lambda value, name, caller: checked_value(hint, value, name, caller)
    instances = tuple(os.PathLike if member is Path else member for member in members)

    def check(value, name, caller):
        if isinstance(value, instances):
            return value
        kinds = [_KINDS[member] for member in members]
        expected = " or ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)
        raise ConfigError.about(name, f": expected {expected}, got {shown(value)}", before=f"{caller}: ")

    return check


def _checked_arguments(function: Callable) -> Callable:
    """``function`` with its arguments checked before it runs (``_argument_check``):
    ``predict(run, x, top_k="3")`` is told ``predict(): top_k: expected a whole number, got
    '3'``, and ``load_run(3)`` ``load_run(): path: expected text or a path, got 3``, where they
    met Python's TypeError deep inside cnnlab."""
    signature = inspect.signature(function)
    checks = {name: check for name, parameter in signature.parameters.items()
              if isinstance(parameter.annotation, str) and (check := _argument_check(parameter.annotation))}

    @functools.wraps(function)
    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if name in checks:
                bound.arguments[name] = checks[name](value, name, f"{function.__name__}()")
        return function(*bound.args, **bound.kwargs)

    return checked


def _as_given(run: Run | str | Path) -> str | Path:
    """A run given as a Run, as its path; any other value as it is (a URL stays text: a Path
    would fold its //)."""
    return run.path if isinstance(run, Run) else run


@_checked_arguments
def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
                 input_size: tuple[int, int] | None = None, *, weights: str | Path | Run | None = None,
                 **options: Any) -> torch.nn.Module:
    """A registered model, as ``timm.create_model``; unspecified sizes take the model's
    defaults, ``options`` are its options (``cnnlab models``). ``weights``: a run, or a file
    as ``--weights`` takes it (a state dict, safetensors, Keras .h5 or .keras, a URL, ``imagenet``), to
    start from; where the class count differs, the output layer starts afresh and a warning
    says so (timm's ``num_classes=`` with ``checkpoint_path=``); from a run of the same model,
    the sizes and options not given are the run's (``create_model(name, weights=run)`` is the
    run's trained model, as ``load_model(run)`` is, in training mode), and where its output
    layer is the run's, ``.classes`` names its outputs (timm's label names). A model with weights has
    ``.pretrained_inputs``, as timm's ``pretrained_cfg`` has a mean and std: how its inputs
    were standardised (``mode`` as ``data.normalize`` names it; ``mean`` and ``std`` of pixels
    on the 0-1 scale), None where the file does not say."""
    import warnings

    from .errors import CnnlabWarning, callers_stacklevel
    from .models.weights import input_normalization, load_weights

    path = None if weights is None else weights_file(str(_as_given(weights)), name)
    built = _run_model(weights, name)
    if built is not None:
        num_classes = built["num_classes"] if num_classes is None else num_classes
        in_channels = built["in_channels"] if in_channels is None else in_channels
        input_size = built["input_size"] if input_size is None else input_size
        options = {**built["options"], **options}
    model = build_model(name, num_classes, in_channels, input_size, **options)
    if path is not None:
        note = load_weights(model, path, log=lambda message: None)
        if note:
            warnings.warn(CnnlabWarning(note), stacklevel=callers_stacklevel())
        model.pretrained_inputs = input_normalization(path)
    if built is not None and model.num_classes == built["num_classes"]:
        model.classes = built["classes"]
    return model


def _run_model(weights: str | Path | Run | None, name: str) -> dict | None:
    """How the model of a run given as weights was built (its checkpoint's sizes and options)
    and the classes it learnt; None for a weights file, a run of another model, or a checkpoint
    that does not say."""
    if weights is None or not (isinstance(weights, Run) or is_run_directory(Path(weights).expanduser())):
        return None
    run = weights if isinstance(weights, Run) else load_run(weights, whole=False)
    spec = run.checkpoint("best").get("model")
    try:
        if spec["name"] != name:
            return None
        return {"num_classes": int(spec["num_classes"]), "in_channels": int(spec["in_channels"]),
                "input_size": tuple(int(side) for side in spec["input_size"]), "options": dict(spec["options"]),
                "classes": list(run.classes)}
    except (KeyError, TypeError, ValueError):  # a damaged checkpoint: loading its weights says so
        return None


list_models = _checked_arguments(list_models)
load_dataset = _checked_arguments(load_dataset)
load_run = _checked_arguments(load_run)


def _train_config(config: TrainConfig | dict | str | Path | None, overrides: dict[str, Any],
                  caller: str) -> tuple[TrainConfig, list[str]]:
    """The config train() and lr_find() take, and the keys its keyword ``overrides`` set."""
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    elif isinstance(config, str | Path):
        config = TrainConfig.from_yaml(config)
    if isinstance(overrides.get("weights"), Run | Path):  # a run gives its best checkpoint
        overrides = {**overrides, "weights": str(_as_given(overrides["weights"]))}
    if isinstance(overrides.get("data"), Path):
        overrides = {**overrides, "data": str(overrides["data"])}
    elif "data" in overrides and not isinstance(overrides["data"], str):
        from .data.readers.arrays import arrays_spec

        overrides = {**overrides, "data": arrays_spec(overrides["data"])}
    dotted = {_SHORTCUTS.get(key, key.replace("__", ".")): value for key, value in overrides.items()}
    if dotted:
        from .training.setup import with_data

        config = with_data(config, dotted.get("data.spec"))
        config = config.with_overrides(dotted, source=f"{caller}()", spell=_keyword)
    return config, list(dotted)


@_checked_arguments
def train(config: TrainConfig | dict | str | Path | None = None, *,
          callbacks: Sequence[Callback] = (), quiet: bool = False, **overrides: Any) -> Run:
    """Train and return the Run. ``config`` is a TrainConfig, a dict or a recipe YAML path;
    keyword overrides use field names (``epochs=3``), dotted paths with ``__``
    (``optimizer__momentum=0.9``) or the shortcuts ``model``, ``data``, ``lr``, ``optimizer``,
    ``val_split``, ``schedule``, ``augment``, ``subset``, ``image_size``, ``weights``.
    ``data`` is a source spec (``"mnist:/data/mnist"``) or arrays: ``(x, y)`` or
    ``((x, y), (x_val, y_val))`` in Keras' ``load_data()`` shapes."""
    from .training.setup import train as run_training

    config, given = _train_config(config, overrides, "train")
    with _errors_naming(given):
        return run_training(config, callbacks=callbacks, quiet=quiet)


@_checked_arguments
def lr_find(config: TrainConfig | dict | str | Path | None = None, *, start_lr: float = 1e-7,
            end_lr: float = 10.0, steps: int = 100, plot: str | Path | None = None,
            **overrides: Any) -> LRFinding:
    """The learning-rate range test (Smith, 2017; fastai's ``learn.lr_find()``): ``steps``
    training steps of the config train() would run while the lr rises exponentially from
    ``start_lr`` to ``end_lr``. Returns the lrs, the smoothed losses and the suggestion
    (``.steepest``: where the loss falls fastest); ``plot``, a .png path, draws them. No run
    is made. ``config`` and the keyword overrides as train() takes them."""
    from .training.lr_find import find_lr

    config, given = _train_config(config, overrides, "lr_find")
    with _errors_naming([*given, "start_lr", "end_lr", "steps"]):
        return find_lr(config, start_lr, end_lr, steps, None if plot is None else Path(plot))


@_checked_arguments
def resume(run: Run | str | Path, epochs: int | None = None, quiet: bool = False,
           callbacks: Sequence[Callback] = (), report: bool | None = None, device: str | None = None,
           precision: str | None = None, data: str | Path | None = None) -> Run:
    """Continue an interrupted run from its last.pt, optionally to more epochs; ``report``
    False skips its pictures and report.html; ``device`` and ``precision`` move it to another
    machine (a run trained on a GPU continues on a CPU); ``data`` is the run's data where it is
    now, if it moved (its classes must be the run's)."""
    from .training.setup import RESUME_CHANGES, resumed_config
    from .training.setup import train as run_training

    path = Path(_as_given(run))
    with _errors_naming(["resume", *RESUME_CHANGES],
                        lambda option: "run" if option == "resume" else _keyword(option)):
        config = resumed_config(path, {"epochs": epochs, "report": report, "device": device,
                                       "precision": precision, "data.spec": None if data is None else str(data)})
        return run_training(config, callbacks=callbacks, resume=path, quiet=quiet)


@_checked_arguments
def evaluate(run: Run | str | Path, data=None, split: str | None = None, *, batch_size: int | None = None,
             tta: str | None = None, options: dict | None = None, report: bool = True, device: str = "auto",
             quiet: bool = True) -> dict:
    """Metrics of the run's best checkpoint: on its own data's ``split`` (default val), or on
    other ``data`` (its test split, else all of it; results in RUN/evaluations/NAME/). ``data``
    is a source spec, or arrays ``(x, y)`` as Keras' ``model.evaluate(x, y)`` takes them: labels
    are indices of the run's classes, or one-hot rows. ``tta`` ("flip", "shift", "flip-shift"
    or "10crop") averages several views of each image; ``options`` change the source's options
    (``{"roi_crop": False}``); ``report`` False writes no pictures and leaves report.html as it
    was."""
    from .evaluation.evaluate import evaluate_run

    if data is not None and not isinstance(data, str | Path):
        from .data.readers.arrays import arrays_spec

        run = run if isinstance(run, Run) else load_run(run, whole=False)  # read once: its classes, then the rest
        data = arrays_spec(data, classes=run.classes, splits=("test",))
    return evaluate_run(run, None if data is None else str(data), split, batch_size=batch_size, device=device,
                        quiet=quiet, tta=tta, options=options, report=report)


@_checked_arguments
def load_model(run: Run | str | Path, which: str = "best") -> torch.nn.Module:
    """The run's trained model (``which``: "best", or "last": the latest state saved) as a plain
    nn.Module in evaluation mode on the CPU, to fine-tune, inspect or run yourself. Its
    ``classes`` and ``preprocessing`` (decode size, crop, mean and std, and ``standardize``:
    pixel values 0-255 in (N, C, H, W) -> the model's input) say what it expects; ``predict``
    applies them for you. ``descriptions`` says what a class is where its name does not."""
    from .evaluation.artifacts import load_artifacts

    if which not in ("best", "last"):
        raise CnnlabError(f"which: 'best' or 'last'; got {which!r}")
    artifacts = load_artifacts(run, which)
    model = artifacts.model.eval()
    model.classes = list(artifacts.classes)
    model.descriptions = dict(artifacts.run.descriptions)
    model.preprocessing = artifacts.preprocessing
    return model


@_checked_arguments
def predict(run: Run | str | Path, inputs, top_k: int = 5, tta: str | None = None,
            device: str = "auto", boxes: str | Path | None = None) -> PredictionResult:
    """Top-k classes, and every class's probability, of image files, folders or globs (a path or
    a list of them), or of images in memory: a PIL image, an array of pixels as ``train(data=)``
    takes them ((N, H, W[, C]) or one (H, W[, C]), uint8 0..255 or floats in [0, 1]; a torch
    tensor too), or a list of those. Each is resized to the run's input as a file would be.
    ``tta`` ("flip", "shift", "flip-shift" or "10crop") averages several views. ``boxes``, for
    files: a GTSRB annotation CSV (GT-final_test.csv, Kaggle's Test.csv) whose rows crop each
    image to its sign, as a run trained with ``roi_crop`` read its images."""
    from .evaluation.predict import predict_files, predict_images

    path = _as_given(run)
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    if isinstance(inputs, list | tuple) and inputs and all(isinstance(i, str | Path) for i in inputs):
        return predict_files(path, [str(i) for i in inputs], top_k, tta=tta, device=device,
                             boxes=None if boxes is None else Path(boxes))
    if boxes is not None:
        raise CnnlabError.about("boxes", ": crops image files by their names; crop images in memory before "
                                "predicting them (pixels[y1:y2 + 1, x1:x2 + 1])")
    return predict_images(path, inputs, top_k, tta=tta, device=device)


__all__ = ["Dataset", "Run", "TrainConfig", "create_model", "evaluate", "list_models", "load_dataset",
           "load_model", "load_run", "lr_find", "predict", "resume", "train"]

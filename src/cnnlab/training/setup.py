"""From a TrainConfig to a finished run: check every option, read and decode the data, build
the parts, create the run directory, fit (loop.py), evaluate the best checkpoint.

Every option is checked before any image is decoded or any folder created: a typo costs a
second, never an epoch, and never leaves a half-made run directory behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import reports, runs
from ..checkpoint import load_checkpoint
from ..config import (
    NORMALIZATIONS,
    DataConfig,
    TrainConfig,
    normalization_text,
    numbers_text,
    read_yaml,
)
from ..data import (
    Augment,
    Dataset,
    Preprocessing,
    SourceData,
    canonical_spec,
    data_is_gone,
    load_dataset,
    read_source,
)
from ..data.augment import centre_crop
from ..data.cache import readable_size
from ..data.dataset import check_seed, check_split_options, check_subset, choose_splits
from ..data.loader import BatchLoader, random_stream, scaled_size
from ..data.preprocessing import (
    check_normalize,
    derive,
    given_statistics,
    resolve_sizes,
    values_text,
)
from ..data.sources import SOURCES, options_taken, source_name
from ..errors import (
    CnnlabError,
    CnnlabWarning,
    ConfigError,
    DataError,
    TrainingDiverged,
    callers_stacklevel,
    listed,
)
from ..evaluation.evaluate import evaluate_and_record
from ..evaluation.losses import Loss
from ..models import MODELS, create_model, place_model, summarize
from ..models.fusion import fold_batchnorm
from ..models.layers import PatchWhitening, fit_whitening, whitening_biases
from ..models.towers import split_towers
from ..models.weights import (
    InputNormalization,
    input_normalization,
    load_weights,
    matching_weights,
    weights_for,
)
from ..runtime import Runtime, device_memory, resolve_device
from .callbacks import Callback, check_callbacks, trained_base_text
from .loop import Trainer
from .optim import build_optimizer, param_groups, state_tensors_per_weight
from .rng import seed_everything
from .schedules import LRSchedule


@dataclass(frozen=True)
class Plan:
    """A config with every option checked and what follows from it worked out."""

    config: TrainConfig
    runtime: Runtime
    image_size: tuple[int, int]
    input_size: tuple[int, int]
    augment: Augment
    source: SourceData
    channels: int
    monitors: dict[str, str]
    """The metric each monitoring option follows (val_ names fall back to the training ones
    when the data has no validation split)."""
    notes: tuple[str, ...] = ()
    split_ids: dict | None = None
    """A resumed run's recorded split (split.json): it trains on the images it started with."""
    pretrained_inputs: InputNormalization | None = None
    """How the pretrained weights' inputs were standardised, where they say."""
    input_notes: tuple[str, ...] = ()
    """What the log says of the inputs' standardisation, where weights or a mean and std are given."""
    layer_notes: tuple[str, ...] = ()
    """What the log says of the layers that train, where only some of the base's do."""

    def split_sizes(self) -> dict[str, int]:
        """The images of each split the run will use, from the listing (before unreadable
        files are found, which can make them a little smaller)."""
        data = self.config.data
        splits = choose_splits(self.source.splits, data.val_split, self.config.seed, data.subset, self.split_ids,
                               data.spec)
        return {name: len(part) for name, part in splits.items()}

    def preprocessing(self, dataset: Dataset) -> Preprocessing:
        """A new run's preprocessing of ``dataset`` (a resumed run keeps its checkpoint's)."""
        data = self.config.data
        statistics = None
        if data.normalize == "weights":
            statistics = self.pretrained_inputs.mean, self.pretrained_inputs.std
        elif data.normalize == "given":
            statistics = given_statistics(data.mean, data.std, self.channels, data.spec)
        return derive(dataset, self.image_size, self.input_size, data.normalize, data.options, statistics)


RESUME_CHANGES = ("epochs", "report", "device", "precision", "data.spec")
"""What a resumed run may change: its length, its report, the machine it continues on (a run
trained on a lent GPU continues on a CPU) and where its data is now (its classes are checked)."""


def resumed_config(run: str | Path, changes: dict[str, Any] | None = None,
                   source: str | None = "resume()") -> TrainConfig:
    """The config a resumed run trains: its own config.yaml with ``changes`` (keys of
    RESUME_CHANGES; None leaves a key as it was). ``source`` names who gave them, for errors."""
    path = Path(run)
    if not (path / runs.CONFIG).is_file():
        raise CnnlabError.about("resume", f" {path}: not a cnnlab run directory (no {runs.CONFIG})")
    changes = {key: value for key, value in (changes or {}).items() if value is not None}
    config = TrainConfig.from_yaml(path / runs.CONFIG)
    return config.with_overrides(changes, source=source) if changes else config


def with_data(config: TrainConfig, spec: object) -> TrainConfig:
    """``config`` (a recipe) made to read ``spec`` in place of its own data, before the options
    given with it are set. Its source options are for its source: another source keeps those it
    takes, and a warning names the others (a GTSRB recipe's ``roi_crop`` on a folder of GTSRB's
    class folders, as Kaggle's Train/ is). Options given with ``spec`` are checked as ever."""
    if not isinstance(spec, str):
        return config
    own, other = source_name(config.data.spec), source_name(spec)
    if own == other or other not in SOURCES:  # an unknown source is refused where it is read
        return config
    kept, left = options_taken(other, config.data.options)
    if left:
        warnings.warn(CnnlabWarning.about("data", f" {spec}: the {other} source has no option {', '.join(left)}; the "
                                          f"recipe sets {'it' if len(left) == 1 else 'them'} for {own} data, and "
                                          "training goes without"), stacklevel=callers_stacklevel())
    return replace(config, data=replace(config.data, options=kept))


def logged_metrics(num_classes: int, validation: bool) -> list[str]:
    """The names an epoch's logs hold, so monitored names can be checked before training."""
    names = ["loss", "accuracy", *(["top5_accuracy"] if num_classes > 5 else []), "mse"]
    return names + ([f"val_{n}" for n in names] if validation else []) + ["lr"]


def plan(config: TrainConfig, resume: str | Path | None = None, training: bool = True) -> Plan:
    """Check every option of ``config``; read the data source's listing (no decoding). The
    plan's config names its data as the source reads it (``canonical_spec``), and its weights
    as the file they are read from (``runs.weights_file``). ``resume``: the run directory that
    ``config`` continues, checked too (its data still there, its classes unchanged, more epochs
    than it has trained). ``training`` False: the caller trains no run (the range test sets the
    lr itself and writes no checkpoint), so a schedule that would do nothing is not worth a
    warning, nor is the room for checkpoints checked."""
    resuming = resume is not None
    # the run's own data gone; a new place given for it that is not there either is the source's error
    if (resuming and data_is_gone(config.data.spec)
            and canonical_spec(config.data.spec) == TrainConfig.from_yaml(Path(resume) / runs.CONFIG).data.spec):
        raise DataError.about("resume", lambda name: f" {resume}: its data, {config.data.spec}, is not there any "
                              f"more; give {name('data')}=SPEC where it is now")
    config = replace(config, data=replace(config.data, spec=canonical_spec(config.data.spec)))
    if config.model.weights and not resuming:  # the run records the file it read
        config = replace(config, model=replace(config.model, weights=runs.weights_file(
            config.model.weights, config.model.name)))
    for option, value in (("epochs", config.epochs), ("batch_size", config.batch_size)):
        if value < 1:
            raise ConfigError.about(option, f": must be at least 1; got {value}")
    if config.name and (config.name in (".", "..") or "/" in config.name or "\\" in config.name):
        raise ConfigError.about("name", lambda name: f" {config.name}: a run's name is one folder name, without '/' "
                                f"(the folder holding runs is {name('out')})")
    if config.early_stopping.patience is not None and config.early_stopping.patience < 0:
        raise ConfigError.about("early_stopping.patience", f": must be 0 or more; got {config.early_stopping.patience}")
    if config.accumulate < 1:
        raise ConfigError.about("accumulate", f": must be at least 1; got {config.accumulate}")
    if config.clip_grad_norm is not None and config.clip_grad_norm <= 0:
        raise ConfigError.about("clip_grad_norm", f": must be positive; got {config.clip_grad_norm}")
    minutes = config.checkpoint.within_epoch_minutes
    if minutes is not None and not minutes > 0:
        raise ConfigError.about("checkpoint.within_epoch_minutes", f": must be positive, or null (at epoch ends only); got {minutes}")
    if config.ema is not None and not 0 < config.ema < 1:
        raise ConfigError.about("ema", f": the decay must be between 0 and 1, e.g. 0.999; got {config.ema}")
    if config.early_stopping.start_from_epoch < 0:
        raise ConfigError.about("early_stopping.start_from_epoch", f": must be 0 or more; got {config.early_stopping.start_from_epoch}")
    if config.model.base_lr_scale <= 0:
        raise ConfigError.about("model.base_lr_scale", f": must be positive; got {config.model.base_lr_scale}")
    info = MODELS.get(config.model.name)
    image_size, input_size = resolve_sizes(config.data.image_size, config.data.crop, info.input_size[:2])
    normalize, pretrained_inputs, normalize_notes = resolve_normalize(config, resuming)
    config = replace(config, data=replace(config.data, normalize=normalize))
    augment = Augment.parse(config.data.augment)
    build_optimizer(config.optimizer, [torch.nn.Parameter(torch.zeros(1))], torch.device("cpu"))
    LRSchedule(config.schedule, config.optimizer.lr, 1, config.epochs)
    warmup = config.schedule.warmup_epochs
    if training and warmup > 0 and config.epochs <= warmup and config.schedule.name != "constant":
        # a recipe tried for a few epochs: the run ends before its schedule begins
        warnings.warn(CnnlabWarning.about("schedule.warmup_epochs", lambda name: (
            f" {warmup:g}: as long as the run ({name('epochs')} {config.epochs}), so the lr only rises to "
            f"{config.optimizer.lr:g} and the {config.schedule.name} schedule never lowers it; give more epochs or a "
            "shorter warmup")), stacklevel=callers_stacklevel())
    check_subset(config.data.subset)
    check_seed(config.seed)
    check_split_options(config.data.val_split, config.data.channels, prefix="data.")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError.about("tensorboard", ": needs the tensorboard package (pip install 'cnnlab[tensorboard]')")
    if config.towers is not None:
        if len(config.towers) != 2:
            raise ConfigError.about("towers", f": one device per tower, two in all; got {config.towers}")
        if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
            raise ConfigError.about("towers", ": splits one model over devices; not with several processes")
        for device in config.towers:
            resolve_device(device)
    runtime = Runtime.create(config.towers[0] if config.towers else config.device, config.precision)

    source = read_source(config.data.spec, config.data.options)
    if "train" not in source.splits:
        only = " and ".join(source.splits)
        raise DataError.about("data", lambda name: f" {config.data.spec}: holds only "
                              f"{'a ' if len(source.splits) == 1 else ''}{only} split{'s' if len(source.splits) > 1 else ''}, "
                              f"no training images; a test set on its own is for evaluation: evaluate RUN "
                              f"{name('data')}=SPEC")
    if len(source.classes) == 1:  # a loss of 0 from the first step, and 100% accuracy
        # a class's own folder given in place of the folder that holds them, most likely
        hint = " (give the folder that holds the class folders)" if config.data.spec.startswith("folder:") else ""
        raise DataError.about("data", f" {config.data.spec}: holds one class ({source.classes[0]}); a classifier needs "
                              f"two or more{hint}")
    channels = config.data.channels or source.channels
    if config.data.normalize == "imagenet" and channels != 3:
        raise ConfigError.about("data.normalize", lambda name: (
            f" imagenet: ImageNet's mean and std are for colour images; {config.data.spec} gives {channels} "
            f"channel{'s' if channels > 1 else ''} ({name('data.channels')} 3 reads them as colour)"))
    if config.data.normalize == "given":
        given_statistics(config.data.mean, config.data.std, channels, config.data.spec)
    augment.check(channels, input_size)
    loss = Loss(config.loss, len(source.classes), config.label_smoothing)
    if config.class_weight not in (None, "balanced"):
        read_class_weights(config.class_weight, source.classes)
    with torch.device("meta"):  # the model's options and input size, checked without memory
        model = create_model(config.model.name, loss.outputs, channels, input_size, **config.model.options)
        if config.towers:
            split_towers(model, ["meta", "meta"])
    check_fits_in_memory(model, config.model.name, runtime.device)
    if training:
        check_room_for_checkpoints(config, model, Path(resume) if resuming else Path(config.out), resuming)
    check_progressive_resizing(config, model, channels, input_size)
    if config.model.weights and not resuming:
        matching_weights(model, weights_for(model, config.model.weights), config.model.weights)
    if config.model.unfreeze_after is not None:
        if not getattr(model, "features_frozen", False):
            raise ConfigError.about("model.unfreeze_after", lambda name: f": nothing to unfreeze: {config.model.name} "
                                    f"trains with no frozen base (freeze one with {name('model.options.freeze_base')})")
        if config.model.unfreeze_after < 1:
            raise ConfigError.about("model.unfreeze_after", lambda name: f": must be 1 or more; got "
                                    f"{config.model.unfreeze_after} (without {name('model.options.freeze_base')} the "
                                    "base trains from the start)")
    layer_notes = check_trainable_base_layers(config, model)
    if config.model.whiten_bias_epochs is not None:
        if config.model.whiten_bias_epochs < 0:
            raise ConfigError.about("model.whiten_bias_epochs", f": must be 0 or more; got {config.model.whiten_bias_epochs}")
        if not whitening_biases(model):
            raise ConfigError.about("model.whiten_bias_epochs", f": {config.model.name} has no whitening layer")

    split_ids = check_resumable(Path(resume), config, source.classes) if resuming else None

    validation = "val" in source.splits or config.data.val_split > 0
    monitors, notes = resolve_monitors(config, len(source.classes), validation)
    return Plan(config, runtime, image_size, input_size, augment, source, channels, monitors, tuple(notes),
                split_ids, pretrained_inputs, tuple(normalize_notes), tuple(layer_notes))


def check_trainable_base_layers(config: TrainConfig, model: torch.nn.Module) -> list[str]:
    """What the log says of ``model.trainable_base_layers``, checked against ``model``."""
    count = config.model.trainable_base_layers
    if count is None:
        return []
    layers = len(model.base_layers())
    if not layers:
        raise ConfigError.about("model.trainable_base_layers", f": {config.model.name} has no convolutional base")
    if count < 1:
        raise ConfigError.about("model.trainable_base_layers", lambda name: (
            f": must be 1 or more; got {count} ({name('model.options.freeze_base')} freezes the whole base)"))
    if count > layers:
        raise ConfigError.about("model.trainable_base_layers", f" {count}: {config.model.name}'s convolutional base "
                                f"has {layers} layers; give 1 to {layers}")
    if model.features_frozen and config.model.unfreeze_after is None:
        raise ConfigError.about("model.trainable_base_layers", lambda name: (
            f": with {name('model.options.freeze_base')} and no {name('model.unfreeze_after')} the base never "
            f"trains; give {name('model.unfreeze_after')} EPOCHS too"))
    when = f"after epoch {config.model.unfreeze_after}" if model.features_frozen else "from the start"
    return [f"{trained_base_text(count, layers)} train {when}; the first {layers - count} stay as loaded "
            "(model.trainable_base_layers)"]


def model_to_train(config: TrainConfig, outputs: int, channels: int, input_size: tuple[int, int],
                   log: Callable[[str], None] = lambda message: None, pretrained: bool = True,
                   classes: Sequence[str] | None = None) -> torch.nn.Module:
    """The model a training starts from: built, with ``model.weights`` loaded where
    ``pretrained`` (a resumed run's come from its checkpoint; ``log`` hears of the load; a
    run's output layer is kept for its own ``classes`` only), and only the base's last
    ``trainable_base_layers`` trained where set."""
    model = create_model(config.model.name, outputs, channels, input_size, **config.model.options)
    if config.model.weights and pretrained:
        load_weights(model, config.model.weights, log, classes)
    if config.model.trainable_base_layers is not None and not model.features_frozen:
        model.freeze_features(False, config.model.trainable_base_layers)
    return model


def resolve_normalize(config: TrainConfig, resuming: bool) -> tuple[str, InputNormalization | None, list[str]]:
    """``data.normalize`` as the run records it, how the weights' inputs were standardised
    (read from the file that ``model.weights`` names by now), and the log's words on the
    choice. Unset, it follows published weights (ImageNet's files: their users standardise as
    they were trained, as timm's pretrained configs and Keras' ``preprocess_input`` do) and
    takes the training split's statistics otherwise, a cnnlab run's weights included: on the
    run-to-run fine-tuning measured (docs/results.md), the new data's own did as well or
    better. ``weights`` follows a run too."""
    normalize, weights = config.data.normalize, config.model.weights
    if normalize is not None:
        check_normalize(normalize)
    if config.data.mean is not None or config.data.std is not None or normalize == "given":
        check_given(config.data)
        return "given", None, [f"inputs: {normalization_text('given', config.data.mean, config.data.std)} "
                               "(data.normalize given)"]
    if normalize not in (None, "weights") or resuming:
        return normalize or "dataset", None, []
    pretrained = input_normalization(weights) if weights else None
    if pretrained is None and normalize == "weights":
        missing = f"weights {weights} do not say how their inputs were standardised" if weights else \
            "standardises as pretrained weights were trained, and none are given"
        raise ConfigError.about("data.normalize", lambda name: (
            f" weights: {missing} (cnnlab runs and the published torchvision and Keras ImageNet files say); give "
            f"{name('data.normalize')} dataset, per_image or equalized"))
    if pretrained is None or (normalize is None and not pretrained.published):
        if not weights:
            return "dataset", None, []
        said, other = (("are a cnnlab run's", "; weights would standardise as the run did") if pretrained else
                       ("do not say how their inputs were standardised", ""))
        return "dataset", None, [f"weights {weights}: they {said}; the training split's mean and std are used "
                                 f"(data.normalize dataset{other})"]
    if not pretrained.mean:
        return pretrained.mode, pretrained, [f"weights {weights}: inputs normalised as theirs were "
                                             f"(data.normalize {pretrained.mode})"]
    return pretrained.mode, pretrained, [f"weights {weights}: inputs standardised as theirs were, mean "
                                         f"({numbers_text(pretrained.mean, 4)}), std ({numbers_text(pretrained.std, 4)}) "
                                         f"on the 0-1 scale (data.normalize {pretrained.mode})"]


def check_given(data: DataConfig) -> None:
    """Refuse ``data.mean`` and ``data.std`` unless set together, each std positive, with
    ``data.normalize`` unset or ``given``."""
    given = {key: values for key, values in (("data.mean", data.mean), ("data.std", data.std)) if values is not None}
    if not given:
        raise ConfigError.about("data.normalize", lambda name: f" given: standardises with {name('data.mean')} and "
                                f"{name('data.std')}, and neither is given")
    key, values = next(iter(given.items()))
    shown = values_text(values)
    if data.normalize not in (None, "given"):
        raise ConfigError.about(key, lambda name: (
            f" {shown}: {name('data.normalize')} {data.normalize} ({NORMALIZATIONS[data.normalize]}) does not take a "
            f"given mean and std; give {name('data.normalize')} given, or neither {name('data.mean')} nor "
            f"{name('data.std')}"))
    if len(given) == 1:
        missing = "data.std" if key == "data.mean" else "data.mean"
        raise ConfigError.about(key, lambda name: (
            f" {shown}: given without {name(missing)}; give both"
            + (f" (e.g. {name('data.mean')} 0.5 {name('data.std')} 0.25)" if key == "data.mean" else "")))
    for key, values in given.items():
        if not values:
            raise ConfigError.about(key, ": give one value for all channels, or one per channel")
    if min(data.std) <= 0:
        raise ConfigError.about("data.std", f" {values_text(data.std)}: each std must be positive")


def check_resumable(path: Path, config: TrainConfig, classes: list[str]) -> dict | None:
    """Refuse to continue the run at ``path`` to fewer epochs than it has trained, on classes
    that are not its own, or with a damaged file that its end reads (the Run it returns holds
    data.json's class descriptions; its report is made from the files the training does not
    write afresh: all but the history, metrics and machine record); its recorded split (None
    if it has none)."""
    run = runs.RunDirectory(path)
    if config.report:  # data.json among them
        reports.ReportSources.read(run, rewritten=(runs.HISTORY_JSON, runs.METRICS, runs.TRAINED_ON))
    else:
        run.read_json(runs.DATA)
    if run.exists(runs.LAST):  # its tensors left unread: the epoch is all that is looked at
        trained = load_checkpoint(run.file(runs.LAST), lazily=True).get("epoch")
        if isinstance(trained, int) and trained > config.epochs:
            raise ConfigError.about("epochs", f" {config.epochs}: the run has trained {trained} epochs already; "
                                    "give more to continue it")
    recorded = run.read_json(runs.CLASSES, None)
    if recorded is not None and recorded != classes:
        added, gone = [c for c in classes if c not in recorded], [c for c in recorded if c not in classes]
        changes = "; ".join([*(["added: " + listed(added, 5)] if added else []),
                             *(["gone: " + listed(gone, 5)] if gone else [])]) or "reordered"
        raise ConfigError.about("resume", f" {path}: the classes of {config.data.spec} are not the run's any more "
                                f"({changes}, against its {runs.CLASSES}); a run continues on the classes it started with")
    return run.read_json(runs.SPLIT)


def check_room_for_checkpoints(config: TrainConfig, model: torch.nn.Module, folder: Path, resuming: bool) -> None:
    """Refuse a run whose checkpoints cannot fit on the disk of ``folder``, where it writes them:
    its first epoch would be lost with the checkpoint that did not fit. last.pt holds the
    weights, the optimizer's state and any average of the weights, and is written anew beside
    the one before; best.pt holds the weights. ``model`` may be on the meta device."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    last = weights * (1 + state_tensors_per_weight(config.optimizer) + (config.ema is not None))
    need = last if resuming else 2 * last + weights
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise ConfigError.mentioning(lambda name: (
            f"{existing}: the run's checkpoints need about {readable_size(need)} on this disk (last.pt, with the "
            f"optimizer's state, about {readable_size(last)}{'' if resuming else ', twice while it is written anew, and best.pt'}"
            f"); it has {readable_size(free)} free: free some space"
            + ("" if resuming else f", or give {name('out')} on a larger disk")))


def check_fits_in_memory(model: torch.nn.Module, name: str, device: torch.device) -> None:
    """Refuse a model whose training state alone cannot fit: building it would fail in torch's
    allocator, or swap the machine to a halt."""
    count = sum(p.numel() for p in model.parameters())
    need, have = 16 * count, device_memory(device)  # 4 bytes each for weights, gradients, 2 moments
    if need > have:
        raise ConfigError(f"{name}: {count:,} parameters need about {need / 2**30:,.0f} GiB to train (fp32 "
                          f"weights, gradients and two optimizer moments); {device} has {have / 2**30:,.0f} GiB")


def check_progressive_resizing(config: TrainConfig, model: torch.nn.Module, channels: int,
                               input_size: tuple[int, int]) -> None:
    """Each phase's scale and length, that the phases leave the last epoch at full size, and
    that ``model`` (on the meta device) takes every phase's size: a model with dense layers
    after its convolutions takes its input size only."""
    phases = config.data.progressive_resizing
    for phase in phases:
        if not 0 < phase.scale <= 1:
            raise ConfigError.about("data.progressive_resizing", f": a scale must be above 0 and at most 1; got {phase.scale}")
        if (phase.epochs is None) == (phase.fraction is None):
            raise ConfigError.about("data.progressive_resizing", ": a phase lasts its epochs (e.g. {scale: 0.75, epochs: 5}) "
                                    "or its fraction of the run's epochs (e.g. {scale: 0.75, fraction: 0.3}), "
                                    f"{'not both' if phase.epochs is not None else 'and this one gives neither'}")
        if phase.epochs is not None and phase.epochs < 1:
            raise ConfigError.about("data.progressive_resizing", f": a phase lasts at least 1 epoch; got {phase.epochs}")
        if phase.fraction is not None and not 0 < phase.fraction < 1:
            raise ConfigError.about("data.progressive_resizing", ": a phase's fraction of the run's epochs must be above 0 "
                                    f"and below 1; got {phase.fraction}")
    in_fractions = [phase.fraction is not None for phase in phases]
    if any(in_fractions) and not all(in_fractions):
        raise ConfigError.about("data.progressive_resizing", ": give every phase in epochs or every phase in fractions of "
                                "the run, not some of each")
    if any(in_fractions) and (total := sum(phase.fraction for phase in phases)) >= 1:
        raise ConfigError.about("data.progressive_resizing", f": the phases' fractions add up to {total:g}; they must leave "
                                "part of the run at the full input size")
    if phases and config.resized_epochs >= config.epochs:
        raise ConfigError.about("data.progressive_resizing", f": its phases take {config.resized_epochs} epochs of the run's "
                                f"{config.epochs}; the last epoch at least must train at the full input size")
    for scale in sorted({phase.scale for phase in phases}):
        size = scaled_size(input_size, scale)
        try:
            model(torch.empty(2, channels, *size, device="meta"))
        except RuntimeError:
            raise ConfigError.about(
                "data.progressive_resizing", f": {config.model.name} cannot train on {size[0]}x{size[1]} images "
                f"(scale {scale} of {input_size[0]}x{input_size[1]}); progressive resizing needs a model that "
                "pools globally (airbench, resnet9) and a scale that leaves its feature maps at least 1 pixel") from None


def resolve_monitors(config: TrainConfig, num_classes: int, validation: bool) -> tuple[dict[str, str], list[str]]:
    """The metric each monitoring option follows; a val_ name falls back to the training
    metric where there is no validation split. An unknown name is an error listing the valid."""
    names = logged_metrics(num_classes, validation)
    monitors, notes = {}, []
    wanted = {"checkpoint": ("checkpoint.monitor", config.checkpoint.monitor)}
    if config.early_stopping.patience is not None:
        wanted["early_stopping"] = ("early_stopping.monitor", config.early_stopping.monitor)
    if config.schedule.name == "plateau":
        wanted["schedule"] = ("schedule.monitor", config.schedule.monitor)
    for option, (key, name) in wanted.items():
        if name.startswith("val_") and not validation and name[4:] in names:
            notes.append(f"{key}: no validation split, monitoring '{name[4:]}' instead")
            name = name[4:]
        if name not in names:
            raise ConfigError.about(key, f": '{name}' is not a logged metric; choose from: {', '.join(names)}")
        monitors[option] = name
    return monitors, notes


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), resume: str | Path | None = None,
          quiet: bool = False, notes: Sequence[str] = ()) -> runs.Run:
    """Train ``config`` (or continue the run directory ``resume``) and return the Run.

    When resuming, ``config`` should be the run's own config.yaml, optionally with more epochs;
    everything else (model, optimizer, schedule, callbacks, random states) comes from last.pt.
    ``notes`` go to the run's log with its own, once every option has been checked.
    """
    check_callbacks(callbacks)
    with contextlib.ExitStack() as locks:
        return _train(config, callbacks, resume, quiet, locks, notes)


def _train(config: TrainConfig, callbacks: Sequence[Callback], resume: str | Path | None, quiet: bool,
           locks: contextlib.ExitStack, given_notes: Sequence[str] = ()) -> runs.Run:
    """train()'s work; the run directory it trains is locked in ``locks`` until train() ends."""
    steps = plan(config, resume)
    config, runtime = steps.config, steps.runtime
    state, restart = None, False
    if resume is not None:
        run = runs.RunDirectory(Path(resume), quiet=quiet, main_process=runtime.is_main)
        locks.enter_context(run.training_lock(resuming=True))
        if runtime.is_main:
            run.remove_stale_temporaries()
        # read under the lock: a training that held it until now may have saved since the plan
        if run.exists(runs.LAST):
            state = load_checkpoint(run.file(runs.LAST))
        else:  # stopped before its first epoch ended: nothing to continue, so start it again
            restart = True

    seed_everything(config.seed)
    data = config.data
    # decoded (or downloaded) once per machine: its first process, while the others wait and
    # then read the cache it made
    for decoding in (True, False):
        if (runtime.local_rank == 0) == decoding:
            dataset = load_dataset(data.spec, steps.image_size, steps.channels, data.val_split,
                                   config.seed, data.subset, steps.split_ids,
                                   progress=not quiet and runtime.is_main, options=data.options,
                                   source=steps.source)
        if decoding:
            runtime.barrier()
    # the split made may differ from what the listing promised (a validation split too small to
    # hold a sample is left out), so the monitored names follow the data as split
    monitors, notes = resolve_monitors(config, dataset.num_classes, "val" in dataset.splits)
    loss = Loss(config.loss, dataset.num_classes, config.label_smoothing,
                class_weights=class_weights(config.class_weight, dataset))
    weight_notes: list[str] = []
    grouped = model_to_train(config, loss.outputs, dataset.channels, steps.input_size, weight_notes.append,
                             pretrained=state is None, classes=dataset.classes)
    if config.towers:
        model = split_towers(grouped, config.towers)
    else:
        model = grouped = place_model(grouped, config.model.name, runtime.device, runtime.precision,
                                      training=True)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config.optimizer, config.model.base_lr_scale),
                                runtime.device)
    steps_per_epoch = math.ceil(math.ceil(len(dataset.splits["train"]) / config.batch_size) / config.accumulate)
    schedule = LRSchedule(config.schedule, config.optimizer.lr, steps_per_epoch, config.epochs,
                          monitors.get("schedule"))
    if resume is None:
        # only once every option has been checked, so a bad one leaves no folder behind; only
        # the first process makes it, the others are told where it is
        path = None
        if runtime.is_main:
            path = runs.RunDirectory.create(config.out, config.name or runs.run_name(config)).path
        run = runs.RunDirectory(Path(runtime.broadcast(str(path))), quiet=quiet, main_process=runtime.is_main)
        locks.enter_context(run.training_lock(resuming=False))
        run.write_text(runs.CONFIG, config.to_yaml())  # first, so a run stopped at once can resume
    for note in [*given_notes, *notes, *steps.input_notes, *steps.layer_notes, *weight_notes]:
        run.log(note)
    if state is not None:
        preprocessing = Preprocessing.from_dict(state["preprocessing"])
    else:
        preprocessing = steps.preprocessing(dataset)

    if state is None and not config.model.weights:
        fit_to_training_images(model, dataset, preprocessing, config.seed)
    trainer = Trainer(config, dataset, model, loss, optimizer, schedule, steps.augment, run, runtime,
                      preprocessing, callbacks, monitors)
    if restart:
        run.log(f"{run.path}: no epoch had finished, so the run starts again from the beginning")
    if state is not None:
        try:
            trainer.restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            # load_state_dict's first line only announces the list of mismatches that follows
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
            detail = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
            raise ConfigError(f"{run.file(runs.LAST)}: does not fit the run's {runs.CONFIG} (edited since?) or is "
                              f"damaged; it cannot be resumed ({type(exc).__name__}: {detail[:200]})") from None
        within = trainer.within_epoch
        run.log(f"resuming {run.path} after epoch {trainer.epoch} of {config.epochs}" if within is None else
                f"resuming {run.path} in epoch {trainer.epoch + 1} of {config.epochs}, after batch {within['batch']} "
                f"of {len(trainer.train_loader)}")
    else:
        write_run_files(run, config, dataset, grouped, steps.input_size)
    run.write_text(runs.CONFIG, config.to_yaml())
    machine = runtime.describe()
    run.log(f"run {run.path}: {config.model.name} on {config.data.spec} "
            f"({', '.join(f'{k} {len(v)}' for k, v in dataset.splits.items())}), {machine}")
    run.record_machine(trainer.epoch + 1, machine)

    try:
        trainer.fit()
    except KeyboardInterrupt:
        run.log(f"interrupted in epoch {trainer.epoch + 1}; continue with: cnnlab train --resume {run.path}")
        raise
    except TrainingDiverged as exc:  # the command prints it; the log keeps why the run ended
        run.log(str(exc), console=False)
        raise
    report = final_evaluation(trainer, machine)
    runtime.close()
    run.log(f"run directory: {run.path}")
    if report is not None:
        run.log(f"report: {report}")
    return runs.load_run(run.path)


WHITENING_PIXELS = 5_000 * 32 * 32
"""Pixels of training images a whitening layer is fitted to (5,000 CIFAR-size images, fewer
larger ones): the covariance of a few dozen patch dimensions is settled long before that."""


def fit_to_training_images(model: torch.nn.Module, dataset: Dataset, preprocessing: Preprocessing,
                           seed: int) -> None:
    """Fit the layers that are set from data, not trained (PatchWhitening), to a random sample
    of the training images as the model sees them (centre crop, standardised). Every process
    draws the same sample, so every process fits the same filters."""
    if not any(isinstance(module, PatchWhitening) for module in model.modules()):
        return
    split = dataset.splits["train"]
    loader = BatchLoader(split, 1, preprocessing)
    count = max(1, WHITENING_PIXELS // (loader.input_size[0] * loader.input_size[1]))
    sample = torch.randperm(len(split.labels), generator=random_stream(seed, "whitening"))[:count]
    images = preprocessing.standardize(centre_crop(loader.pixels(sample.sort().values.numpy()), loader.input_size))
    fit_whitening(model, images)


def read_class_weights(setting: str | dict, classes: list[str]) -> dict[str, float]:
    """A mapping of class -> weight, or a YAML or JSON file of one (classes left out weigh 1).
    A class is its name, or, as Keras' ``class_weight`` keys it, a number that is no class's
    name: its index."""
    weights = {}
    unknown = []
    given = "" if isinstance(setting, dict) else f" {setting}"
    for key, weight in (setting if isinstance(setting, dict) else read_yaml(setting)).items():
        if str(key) in classes:
            name = str(key)
        elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(classes):
            name = classes[key]
        else:
            unknown.append(str(key))
            continue
        if name in weights:
            raise ConfigError.about("class_weight", f"{given}: names {name} twice (by name and by index)")
        weights[name] = weight
    if unknown:
        numbers = f" (a number is a class index, 0 to {len(classes) - 1} here)" if any(
            key.lstrip("-").isdigit() for key in unknown) else ""
        raise ConfigError.about("class_weight", f"{given}: not classes of this data: {listed(unknown, 10)}{numbers}")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < math.inf:
            raise ConfigError.about("class_weight", f"{given}: {name}: expected a weight of at least 0, got {weight!r}")
    if len(weights) == len(classes) and not any(weights.values()):
        raise ConfigError.about("class_weight", f"{given}: every class weighs 0, so nothing would be learned")
    return {name: float(weight) for name, weight in weights.items()}


def class_weights(setting: str | dict | None, dataset: Dataset) -> torch.Tensor | None:
    """Per-class weights of the training loss: ``balanced`` as scikit-learn computes it
    (samples / (classes x the class's count)), or given (a mapping, or a file of one); None:
    unweighted."""
    if setting is None:
        return None
    if setting == "balanced":
        counts = torch.bincount(torch.from_numpy(dataset.splits["train"].labels), minlength=dataset.num_classes)
        return counts.sum() / (dataset.num_classes * counts.clamp_min(1).double())
    given = read_class_weights(setting, dataset.classes)
    return torch.tensor([given.get(name, 1.0) for name in dataset.classes], dtype=torch.float64)


def write_run_files(run: runs.RunDirectory, config: TrainConfig, dataset: Dataset,
                    model: torch.nn.Module, input_size: tuple[int, int]) -> None:
    run.write_json(runs.CLASSES, dataset.classes)
    run.write_json(runs.SPLIT, dataset.split_ids())
    summary = summarize(model, (*input_size, dataset.channels), config.model.name)
    run.write_text(runs.SUMMARY, summary.table() + "\n")
    run.write_json(runs.SUMMARY_JSON, summary.to_dict())
    run.write_json(runs.DATA, {
        "spec": dataset.spec, "classes": dataset.classes, "image_size": list(dataset.image_size),
        "channels": dataset.channels,
        "counts": {name: len(split) for name, split in dataset.splits.items()},
        "unreadable": dataset.unreadable, "notes": dataset.notes, "cache": dataset.cache,
        "descriptions": dataset.descriptions,
    })
    if dataset.cache:
        state = "read from" if dataset.cache["hit"] else "decoded once into"
        run.log(f"images {state} the cache {dataset.cache['file']}")
    for path, reason in dataset.unreadable.items():
        run.log(f"skipped unreadable image {path}: {reason}")


def final_evaluation(trainer: Trainer, machine: str) -> Path | None:
    """Evaluate the best checkpoint on validation and test (the same path as ``cnnlab
    evaluate``) with ``machine`` (the trainer's runtime described); write the pictures and
    report.html."""
    run, dataset = trainer.run, trainer.dataset
    best = load_checkpoint(run.file(runs.BEST))
    trainer.model.load_state_dict(best["state_dict"])
    model = fold_batchnorm(trainer.model)  # once, for every split
    run.write_json(runs.METRICS, {"checkpoint": runs.BEST, "epoch": best["epoch"]})
    for split in ("val", "test"):
        if split not in dataset.splits:
            continue
        metrics = evaluate_and_record(run, model, trainer.loss, trainer.preprocessing,
                                      dataset.classes, dataset.splits[split], split, trainer.runtime,
                                      machine, trainer.config.batch_size * 2, best["epoch"], dataset.spec,
                                      pictures=trainer.config.report)
        summary = f"{split}: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"
        if "top5_accuracy" in metrics:
            summary += f", top-5 {metrics['top5_accuracy']:.4f}"
        run.log(f"best epoch {best['epoch']} on {summary}")
    if not run.main_process or not trainer.config.report:
        return None
    reports.run_pictures(run, trainer.history, best["epoch"], dataset, trainer.config.data.augment,
                         trainer.train_loader.input_size)
    return reports.write_report(run)

"""Run configuration: dataclasses that CLI flags, recipe YAML files and the Python API all
resolve into, and that are saved as config.yaml in every run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, shown


@dataclass
class ResizePhase:
    """A phase of progressive resizing: training images scaled to ``scale`` of the model's
    input side, for ``epochs`` epochs or for ``fraction`` of the run's epochs (one of the two,
    the same for every phase; a fraction stays in proportion when ``--epochs`` shortens a
    recipe, as its schedule does)."""

    scale: float = 1.0
    epochs: int | None = None
    fraction: float | None = None


NORMALIZATIONS = {
    "dataset": "pixels/255 standardised with the training split's mean and std",
    "per_image": "each image standardised by its own mean and std",
    "equalized": "each image's histogram equalised per channel (as OpenCV's equalizeHist), then standardised "
                 "by its own mean and std",
    "imagenet": "pixels/255 standardised with ImageNet's mean and std, as torchvision's pretrained models take them",
    "weights": "pixels/255 standardised with the mean and std the pretrained weights were trained with",
    "given": "pixels/255 standardised with the mean and std given (data.mean, data.std)",
}
"""What ``data.normalize`` may be, as the report, the exported model and --help describe it."""


def normalization_text(normalize: str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> str:
    """What ``data.normalize`` does to a run's inputs, as its report and exported model say it:
    ``given`` with the values given."""
    shown = [numbers_text(values) for values in (mean, std)]
    if normalize == "given" and all(shown):
        return f"pixels/255 standardised with the mean ({shown[0]}) and std ({shown[1]}) given"
    return NORMALIZATIONS.get(normalize, NORMALIZATIONS["dataset"])


def numbers_text(values: Sequence[float] | None, digits: int = 6) -> str | None:
    """``0.5, 0.25``, to ``digits`` significant digits; None where ``values`` is not a list of
    numbers (a damaged config.yaml)."""
    if not isinstance(values, list | tuple) or not values or not all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        return None
    return ", ".join(f"{value:.{digits}g}" for value in values)


AUGMENTATIONS = ("hflip[:alternate], pad_crop[:PIXELS], random_resized_crop[:MIN_SCALE], pca_lighting[:STD], "
                 "rotate[:DEGREES], scale[:FRACTION], translate[:FRACTION], brightness[:FRACTION], "
                 "contrast[:FRACTION], gamma[:FRACTION], trivial_augment, random_erasing[:P], mixup[:ALPHA], "
                 "cutmix[:ALPHA]")
"""What ``data.augment`` may list, as --help and the error naming an unknown one write it."""


@dataclass
class DataConfig:
    spec: str = "digits"
    """Data source, e.g. ``digits``, ``mnist:/data/mnist``, ``folder:/data/faces``."""
    val_split: float = 0.1
    """Fraction of each class held out for validation (when the source has no val split)."""
    image_size: list[int] | None = None
    """[height, width] the images are decoded at; default: the model's input (``crop``)."""
    crop: list[int] | None = None
    """[height, width] model input cut from the decoded images: random crops in training, the
    centre (or ten crops with --tta) when evaluating. The paper: image_size [256, 256], crop
    [227, 227]. Default: the whole image."""
    channels: int | None = None
    """1 or 3; default: the source's own (folders: 3)."""
    augment: list[str] = field(default_factory=list)
    """Batch augmentations, e.g. ``[hflip, pad_crop:4]``."""
    progressive_resizing: list[ResizePhase] = field(default_factory=list)
    """Progressive resizing (Howard, fast.ai, 2018): the first epochs train on the augmented
    images scaled down, e.g. ``[{scale: 0.75, epochs: 6}]`` (24x24 from 32x32 for 6 epochs)
    or ``[{scale: 0.5, fraction: 0.33}]`` (a third of the run), each phase after the one
    before, the full input for the epochs after the last; an epoch then costs about the
    square of the scale. Only for models that pool globally."""
    normalize: str | None = None
    """``dataset``: the training split's per-channel mean and std; ``per_image``: each image
    by its own mean and std (evens out dark and bright photos); ``equalized``: each image's
    histogram equalised per channel first (also spreads washed-out and murky ones);
    ``imagenet``: ImageNet's mean and std (torchvision's pretrained models, fastai's
    ``imagenet_stats``); ``weights``: as the pretrained weights' inputs were (a cnnlab run's
    normalisation; Keras' ImageNet files' ``preprocess_input``); ``given``: ``mean`` and ``std``
    below. None: ``given`` where they are set, else as the published ImageNet files given as
    weights were trained (``imagenet`` or ``weights``), else ``dataset``."""
    mean: list[float] | None = None
    """Per-channel mean to subtract from pixels on the 0-1 scale, one value for all channels or
    one per channel (timm's ``--mean``, fastai's ``Normalize.from_stats``), with ``std``; e.g.
    mean [0] and std [1] give Keras' ``Rescaling(1/255)`` inputs."""
    std: list[float] | None = None
    """Per-channel std to divide by after ``mean`` (0-1 scale), each positive."""
    subset: int | None = None
    """Train on at most this many training samples (stratified), for quick runs; validation and
    test shrink in proportion."""
    options: dict[str, Any] = field(default_factory=dict)
    """Source options, e.g. ``{label_mode: coarse}`` (cifar100), ``{roi_crop: true}`` (gtsrb),
    ``{categories: 45}`` (caltech256)."""


@dataclass
class ModelConfig:
    name: str = "lenet5"
    options: dict[str, Any] = field(default_factory=dict)
    """Builder keyword arguments, e.g. ``{groups: 1, init: paper}`` for alexnet."""
    weights: str | None = None
    """A state dict or a run's checkpoint to start from."""
    unfreeze_after: int | None = None
    """Epochs after which a frozen convolutional base (freeze_base) starts training too."""
    trainable_base_layers: int | None = None
    """Only the last N weighted layers of the convolutional base (each convolution with its
    BatchNorm) train, from the start or once ``unfreeze_after`` unfreezes the base; those
    before stay as loaded (Keras' guide's ``fine_tune_at``, torchvision's
    ``trainable_backbone_layers``). None: the whole base."""
    base_lr_scale: float = 1.0
    """Learning rate of the convolutional base relative to the head (e.g. 0.1 for fine-tuning)."""
    whiten_bias_epochs: int | None = None
    """Epochs during which a whitening layer's bias trains; after them it stays as it is
    (airbench trains it for 3). None: it trains throughout."""


@dataclass
class OptimizerConfig:
    name: str = "adam"
    """sgd, adam, adamw, rmsprop or muon."""
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-7
    """Keras' default epsilon (torch's is 1e-8), so Keras recipes behave the same."""
    muon_momentum: float = 0.95
    """muon: the Nesterov momentum of the orthogonalised updates (``momentum`` is the SGD
    fallback's)."""
    ns_steps: int = 5
    """muon: Newton-Schulz iterations per update."""
    muon_renormalise: bool = False
    """muon: before each update, scale every Muon weight back to Frobenius norm sqrt(out
    channels) instead of decaying it, so each step moves it by the same fraction (the variant
    of Jordan's airbench94_muon, 2024). Only for layers followed by a normalisation, whose
    output does not depend on the weight's norm; ``weight_decay`` then applies to the
    fallback's parameters only."""
    fallback: str = "adamw"
    """muon: the optimizer of the parameters Muon does not take (the first and last layer,
    biases, BatchNorm): ``adamw`` or ``sgd``."""
    fallback_lr: float = 3e-4
    """muon: the fallback's learning rate (``lr`` is Muon's); the schedule scales both."""


@dataclass
class ScheduleConfig:
    name: str = "constant"
    """constant, exponential, step, multistep, cosine, linear, onecycle or plateau."""
    decay_steps: int = 1000
    decay_rate: float = 0.96
    staircase: bool = False
    step_size: int = 30
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    factor: float = 0.1
    patience: int = 5
    min_delta: float = 1e-4
    monitor: str = "val_loss"
    cooldown: int = 0
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    """Linear warm-up from 0 in front of the schedule, in epochs (fractions allowed)."""
    pct_start: float = 0.3
    """onecycle: the share of the steps spent rising to the peak lr (Smith & Topin, 2019)."""
    div_factor: float = 25.0
    """onecycle: the first lr is the peak over this."""
    final_div_factor: float = 1e4
    """onecycle: the last lr is the first over this."""


@dataclass
class EarlyStoppingConfig:
    patience: int | None = None
    """Epochs without improvement before stopping; None turns early stopping off."""
    monitor: str = "val_loss"
    mode: str = "auto"
    min_delta: float = 0.0
    restore_best_weights: bool = True
    start_from_epoch: int = 0
    """Epochs left unmonitored first, as Keras' start_from_epoch; the epochs of progressive
    resizing are never monitored (their validation is at a size they did not train at)."""


@dataclass
class CheckpointConfig:
    monitor: str = "val_accuracy"
    mode: str = "auto"
    within_epoch_minutes: float | None = 10.0
    """last.pt is also written after the step that ends this many minutes of an epoch since the
    last write (null: at epoch ends only), so a run killed outright loses at most that much of
    its epoch. One process only; Ctrl-C and SIGTERM save their step whatever this says."""


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    loss: str = "sparse_ce"
    """sparse_ce, categorical_ce or binary_ce."""
    label_smoothing: float = 0.0
    class_weight: str | dict[str, float] | None = None
    """``balanced`` (n_samples / (n_classes x count of the class), as scikit-learn's), a mapping
    of classes (names, or indices as Keras keys them) to weights, or a YAML or JSON file of one:
    each training sample's loss is multiplied by its class's weight (Keras' class_weight).
    Validation losses stay unweighted."""
    clip_grad_norm: float | None = None
    """Scale the gradients down when their global norm is above this."""
    accumulate: int = 1
    """Optimizer step every N batches, on the gradient of all N (a batch N times larger)."""
    ema: float | None = None
    """Decay of an exponential moving average of the weights (e.g. 0.999); evaluation, best.pt
    and the final metrics then use the averaged weights."""
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    precision: str = "auto"
    """auto, bf16 or fp32; auto picks bf16 where the hardware runs it natively."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N (under torchrun, auto is each process's own GPU)."""
    towers: list[str] | None = None
    """The AlexNet paper's model parallelism: one device per tower of a grouped network, e.g.
    ``[cuda:0, cuda:1]`` (docs/distributed.md)."""
    sync_bn: bool = False
    """Distributed runs: BatchNorm statistics over the whole batch of every process
    (SyncBatchNorm) instead of each process's share."""
    out: str = "runs"
    name: str | None = None
    """Run directory name; default ``<date-time>-<model>-<data>``."""
    tensorboard: bool = False
    report: bool = True
    """Draw the pictures and report.html at the end (metrics.json and the predictions are
    always written); off for quick sweeps."""

    def resize_phases(self) -> list[tuple[float, int]]:
        """Progressive resizing's phases as (scale, epochs). Phases in fractions end where
        their running total of the run's epochs rounds to, before the last epoch: in a short
        run a phase may shrink to nothing and is left out, so a one-epoch trial of a recipe
        trains at the full size."""
        phases = self.data.progressive_resizing
        if not any(phase.fraction is not None for phase in phases):
            return [(phase.scale, phase.epochs) for phase in phases]
        ends = [min(round(covered * self.epochs), self.epochs - 1)
                for covered in itertools.accumulate(phase.fraction or 0.0 for phase in phases)]
        lengths = [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]
        return [(phase.scale, length) for phase, length in zip(phases, lengths, strict=True) if length > 0]

    @property
    def resized_epochs(self) -> int:
        """The epochs progressive resizing trains below the full input size."""
        return sum(epochs for _, epochs in self.resize_phases())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        return _build(cls, data, source, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(read_yaml(path), source=str(path))

    def with_overrides(self, overrides: dict[str, Any], source: str | None = "option",
                       spell: Callable[[str], str] = str) -> TrainConfig:
        """A copy with dotted keys (``optimizer.lr``) set to new values. ``spell`` writes a
        dotted key as the caller takes it, for the messages that refuse an unknown key or a
        value of the wrong type; ``source`` begins them (None: values whose key names them,
        as a flag does)."""
        merged = self.to_dict()
        for dotted, value in overrides.items():
            node = merged
            *parents, leaf = dotted.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"{_at(source)}unknown key '{spell(dotted)}'{did_you_mean(dotted, spell)}")
                node = node[part]
            if leaf not in node and not (parents and parents[-1] == "options"):
                raise ConfigError(f"{_at(source)}unknown key '{spell(dotted)}'{did_you_mean(dotted, spell)}; "
                                  f"{_valid_keys(node)}")
            node[leaf] = value
        try:
            return TrainConfig.from_dict(merged, source)
        except ConfigError as exc:
            exc.respell(spell)
            raise


RECIPES = Path(__file__).parent / "recipes"
"""The recipes that ship with cnnlab: each tutorial experiment as cnnlab recommends it, and
as the tutorial did it (tutorial/)."""


def bundled_recipes() -> dict[str, Path]:
    """Name (``gtsrb-resnet9``, ``tutorial/gtsrb-alexnet-bn``) -> file."""
    return {p.relative_to(RECIPES).with_suffix("").as_posix(): p for p in sorted(RECIPES.rglob("*.yaml"))}


RECOMMENDED = {"folder": "faces-resnet9", "gtsrb": "gtsrb-resnet9", "cifar10": "cifar10-airbench",
               "mnist": "mnist-resnet9"}
"""The recipe cnnlab recommends for each source that docs/results.md measured recipes on."""


def recipes_for(source: str, model: str | None = None) -> list[str]:
    """The bundled recipes (not the tutorials' own) for data of ``source`` (``folder``,
    ``gtsrb``, ...), and for ``model`` if given."""
    found = []
    for name, path in bundled_recipes().items():
        if not name.startswith("tutorial/"):
            config = TrainConfig.from_yaml(path)
            if config.data.spec.partition(":")[0] == source and model in (None, config.model.name):
                found.append(name)
    return found


def find_recipe(path: str | Path) -> Path:
    """``path`` itself (``~`` expanded: only a shell does it), or the bundled recipe of that
    name (with or without .yaml)."""
    path = Path(path).expanduser()
    if path.exists():
        return path
    name = path.as_posix().removesuffix(".yaml").removeprefix("recipes/")
    return bundled_recipes().get(name, path)


class KeyGivenTwice(yaml.YAMLError):
    """A mapping of a YAML file that names one key twice, at ``line``."""

    def __init__(self, key: Any, line: int):
        self.what = f"{key} is given twice (YAML would keep the last)"
        super().__init__(f"line {line}: {self.what}")


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load's loader, refusing a key given twice in one mapping: YAML keeps the last
    without a word, and a recipe edited by appending a line trains with a value its author
    did not see. Keys a merge (``<<: *base``) brings in may still be given again."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):  # an unhashable one is refused by the mapping itself
                if key in seen:
                    raise KeyGivenTwice(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = find_recipe(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader: no objects
    except KeyGivenTwice as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file, nor a bundled recipe (see: cnnlab recipes)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    if not within_values(data, MAX_YAML_VALUES):
        raise ConfigError(f"{path}: more than {MAX_YAML_VALUES:,} values once its aliases (*name) are "
                          "expanded, or an alias inside the value it names; not a config")
    return data


MAX_YAML_VALUES = 1_000_000
"""A config is copied value by value: YAML aliases can make a file of a few lines stand for
billions of values (or for a value inside itself), which no config holds."""


def within_values(data: Any, limit: int) -> bool:
    """Whether ``data`` holds at most ``limit`` values, each alias counted as often as it is
    used; stops counting at the limit."""
    count, pending = 0, [data]
    while pending:
        value = pending.pop()
        count += 1
        if count > limit:
            return False
        if isinstance(value, dict):
            pending += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value
    return True


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set: expected KEY=VALUE, got '{text}'")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw else None  # a SafeLoader: no objects
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply") from None
    except KeyGivenTwice as exc:
        raise ConfigError(f"--set {key}: {exc.what}") from None  # one line: no line number
    except yaml.YAMLError:
        value = raw
    if not within_values(value, MAX_YAML_VALUES):
        raise ConfigError(f"--set {key}: more than {MAX_YAML_VALUES:,} values once its aliases are expanded")
    return key.strip(), value


MAX_INT = 2**31 - 1
"""Whole-number options beyond this (epochs, sizes, seeds) are mistakes, not settings."""


OTHER_NAMES = {"learning_rate": "lr", "validation_split": "val_split", "optimiser": "optimizer"}
"""Keras' names (and a British spelling) of fields cnnlab names otherwise."""


def config_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every key of the config tree, dotted (``optimizer.lr``), in the dataclasses' order."""
    cls = cls or TrainConfig
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys += config_keys(hint, f"{prefix}{name}.")
    return keys


def did_you_mean(dotted: str, spell: Callable[[str], str] = str) -> str:
    """" (did you mean 'optimizer.lr'?)" for a key that is probably another: the same name
    elsewhere in the tree (``learning_rate`` at the top), a name beside it that one starts
    (``data.val``, ``data.augmentation``), or a near spelling (``imagesize``); "" when none is.
    The guesses are written by ``spell``, as the caller takes keys."""
    parent, _, leaf = dotted.rpartition(".")
    leaf = OTHER_NAMES.get(leaf, leaf)
    keys = config_keys()
    leaf_of = {key: key.rpartition(".")[2] for key in keys}
    close = difflib.get_close_matches(leaf, set(leaf_of.values()), n=1, cutoff=0.75)
    meant = ([key for key in keys if leaf_of[key] == leaf]
             or [key for key in keys if key.rpartition(".")[0] == parent
                 and (leaf_of[key].startswith(leaf) or leaf.startswith(leaf_of[key]))]
             or [key for key in keys if close and leaf_of[key] == close[0]])
    if not meant:
        return ""
    return f" (did you mean {' or '.join(repr(spell(key)) for key in meant[:2])}?)"


def _valid_keys(node: dict[str, Any]) -> str:
    return "valid keys: " + ", ".join(node)


def _at(source: str | None) -> str:
    """Where a value came from, as a message begins (None: the option's own name says it)."""
    return f"{source}: " if source else ""


def _build(cls: type, data: Any, source: str | None, prefix: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(data, dict):
        if not prefix:
            raise ConfigError(f"{_at(source)}must be a mapping")
        section = prefix.rstrip(".")
        # a section written as its name alone, as Keras names an optimizer or a schedule
        example = f" ({section}: {{name: {data}}})" if isinstance(data, str) and "name" in names else ""
        raise ConfigError(f"{_at(source)}{section} must be a mapping{example}")
    hints = typing.get_type_hints(cls)
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ConfigError(
            f"{_at(source)}unknown key '{prefix}{unknown[0]}'{did_you_mean(f'{prefix}{unknown[0]}')}; valid keys"
            f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
        )
    values = {key: _coerce(hints[key], value, source, prefix + key) for key, value in data.items()}
    return cls(**values)


KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", type(None): "None"}
"""How a message names the value a field of each type takes (and an API argument: api.py)."""


def checked_value(hint: Any, value: Any, key: str, source: str | None = None) -> Any:
    """``value`` as a config field of type ``hint`` takes it (a whole number for an int, a
    number or its text for a float, true or false for a bool), or a ConfigError naming ``key``
    (after ``source``, where the value came from)."""
    return _coerce(hint, value, source, key)


def _coerce(hint: Any, value: Any, source: str | None, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        # text or a mapping (class_weight): the mapping where a mapping is given
        mappings = [arg for arg in members if typing.get_origin(arg) is dict]
        chosen = mappings[0] if isinstance(value, dict) and mappings else next(a for a in members if a not in mappings)
        return _coerce(chosen, value, source, key)
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError.about(key, f": expected a list, got {shown(value)}", before=_at(source))
        return [_coerce(args[0], item, source, key) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError.about(key, f": expected a mapping, got {shown(value)}", before=_at(source))
        return dict(value)
    if hint is Any:
        return value
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # a number computed with numpy (np.int64(3)) is that number; numpy is not imported here
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError.about(key, f": expected {KIND_WORDS[bool]}, got {shown(value)}", before=_at(source))
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise ConfigError.about(key, f": {value} is too large (at most {MAX_INT:,})", before=_at(source))
            return value
        raise ConfigError.about(key, f": expected {KIND_WORDS[int]}, got {shown(value)}", before=_at(source))
    if hint is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e300 else math.inf
        elif isinstance(value, str):  # YAML reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError.about(key, f": expected {KIND_WORDS[float]}, got {shown(value)}", before=_at(source))
        if not math.isfinite(number):
            raise ConfigError.about(key, f": expected a finite number, got {shown(value)}", before=_at(source))
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError.about(key, f": expected {KIND_WORDS[str]}, got {shown(value)}", before=_at(source))
    raise TypeError(f"config field {key} has an unsupported type {hint}")

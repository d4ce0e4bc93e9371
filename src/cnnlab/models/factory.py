"""The model zoo's registry and factory: every model is a builder registered by name with its
metadata (default input, classes, parameter count, source)."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CnnlabError
from ..registry import Registry

Builder = Callable[..., nn.Module]

SHARED_OPTIONS: dict[str, object] = {"freeze_base": False}
"""Options every model takes, applied here after its builder: ``freeze_base`` freezes the
convolutional base (its weights and BatchNorm statistics), as Keras' ``base.trainable =
False`` and fastai's ``learn.freeze()`` do for fine-tuning; ``model.unfreeze_after`` trains it
again later."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Builder
    input_size: tuple[int, int, int]
    """Default input as height, width, channels."""
    num_classes: int
    """Class count the parameter count below is given at."""
    params: int
    """Total parameters counted the Keras way at the default input and classes."""
    source: str
    description: str
    nchw_training_on_cpu: bool = False
    """Trains faster in NCHW than channels_last in fp32 on a CPU (measured: docs/benchmarks.md);
    its forward pass alone may still be faster channels_last."""

    @property
    def option_defaults(self) -> dict[str, object]:
        """The builder's options (its parameters beyond the sizes) and their default values."""
        skip = {"num_classes", "in_channels", "input_size"}
        own = {name: parameter.default for name, parameter in inspect.signature(self.builder).parameters.items()
               if name not in skip}
        return {**own, **SHARED_OPTIONS}

    @property
    def options(self) -> list[str]:
        return list(self.option_defaults)


MODELS: Registry[ModelInfo] = Registry("model", entry_points="cnnlab.models")


def register_model(
    name: str, *, input_size: tuple[int, int, int], num_classes: int, params: int, source: str,
    nchw_training_on_cpu: bool = False,
) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        doc = (builder.__doc__ or "").strip().splitlines()
        MODELS.add(name, ModelInfo(name, builder, input_size, num_classes, params, source,
                                   doc[0] if doc else "", nchw_training_on_cpu))
        return builder

    return decorate


# an option's value must be of its default's kind; each builder then checks the range itself
OPTION_KINDS: dict[type, tuple[str, Callable[[object], bool]]] = {
    bool: ("true or false", lambda value: isinstance(value, bool)),
    int: ("a whole number", lambda value: isinstance(value, int) and not isinstance(value, bool)),
    float: ("a number", lambda value: isinstance(value, (int, float)) and not isinstance(value, bool)),
    str: ("a name", lambda value: isinstance(value, str)),
    tuple: ("a list", lambda value: isinstance(value, (list, tuple))),
}


def list_models(pattern: str = "*") -> list[str]:
    """The names of the registered models that match ``pattern`` (shell-style, as
    ``timm.list_models("vgg*")``; case-insensitive), sorted."""
    return [name for name in MODELS.names() if fnmatch.fnmatch(name.lower(), pattern.lower())]


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    **options,
) -> nn.Module:
    """Build a registered model; unspecified sizes take the model's defaults."""
    info = MODELS.get(name)
    defaults = info.option_defaults
    unknown = [key for key in options if key not in defaults]
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise CnnlabError(f"model {name} has no option '{unknown[0]}'; its options: {valid}")
    for key, value in options.items():
        kind = OPTION_KINDS.get(type(defaults[key]))
        if kind and not kind[1](value):
            raise CnnlabError(f"model {name}: option '{key}' must be {kind[0]}; got {value!r}")
    for option, count in (("num_classes", num_classes), ("in_channels", in_channels)):
        if count is not None and count < 1:
            raise CnnlabError.about(option, f": must be at least 1; got {count}")
    height, width, channels = info.input_size
    freeze_base = options.pop("freeze_base", False)
    model = info.builder(
        num_classes=info.num_classes if num_classes is None else num_classes,
        in_channels=channels if in_channels is None else in_channels,
        input_size=tuple((height, width) if input_size is None else input_size),
        **options,
    )
    if freeze_base:
        if not hasattr(model, "freeze_features") or not list(model.features.parameters()):
            raise CnnlabError(f"model {name}: option 'freeze_base': it has no convolutional base to freeze")
        model.freeze_features()
    return model


def place_model(model: nn.Module, name: str, device: torch.device, precision: str,
                training: bool) -> nn.Module:
    """``model`` on ``device`` in the memory layout its convolutions run fastest in there:
    channels_last (oneDNN's and cuDNN's preferred layout), but NCHW for training in fp32 on a
    CPU for the models registered ``nchw_training_on_cpu``. Batches come channels_last from the
    data pipeline, and a channels_last input would take the convolutions back to that layout,
    so those models turn their input to NCHW on the way in."""
    if training and device.type == "cpu" and precision == "fp32" and MODELS.get(name).nchw_training_on_cpu:
        model = model.to(device, memory_format=torch.contiguous_format)
        model.register_forward_pre_hook(_nchw_input)
        return model
    return model.to(device, memory_format=torch.channels_last)


def _nchw_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])

"""The model zoo's registry and factory: every model is a builder registered by name with its
metadata (default input, classes, parameter count, source)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import CnnlabError
from ..registry import Registry

Builder = Callable[..., nn.Module]


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

    @property
    def options(self) -> list[str]:
        skip = {"num_classes", "in_channels", "input_size"}
        return [p for p in inspect.signature(self.builder).parameters if p not in skip]


MODELS: Registry[ModelInfo] = Registry("model", entry_points="cnnlab.models")


def register_model(
    name: str, *, input_size: tuple[int, int, int], num_classes: int, params: int, source: str
) -> Callable[[Builder], Builder]:
    def decorate(builder: Builder) -> Builder:
        doc = (builder.__doc__ or "").strip().splitlines()
        MODELS.add(name, ModelInfo(name, builder, input_size, num_classes, params, source,
                                   doc[0] if doc else ""))
        return builder

    return decorate


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: tuple[int, int] | None = None,
    **options,
) -> nn.Module:
    """Build a registered model; unspecified sizes take the model's defaults."""
    info = MODELS.get(name)
    unknown = [key for key in options if key not in info.options]
    if unknown:
        valid = ", ".join(info.options) or "none"
        raise CnnlabError(f"model {name} has no option '{unknown[0]}'; its options: {valid}")
    height, width, channels = info.input_size
    return info.builder(
        num_classes=num_classes or info.num_classes,
        in_channels=in_channels or channels,
        input_size=tuple(input_size or (height, width)),
        **options,
    )

"""One class for every model in the zoo: a feature table, a flatten, a classifier table and a
head. The model files hold only tables and registered builders."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CnnlabError
from .layers import Dense, Layer, LayoutKeepingFlatten, build_layers, output_size, smallest_input


class ConvNet(nn.Module):
    """``features`` (convolutions and pooling) -> flatten -> ``classifier`` (dense layers)
    -> head with one logit per class. Submodule names follow torchvision (``features.N``,
    ``classifier.N``), so torchvision's VGG state dicts load by name."""

    def __init__(
        self,
        features: list[Layer],
        classifier: list[Layer],
        num_classes: int,
        in_channels: int,
        input_size: tuple[int, int],
        name: str = "convnet",
    ):
        super().__init__()
        height, width = output_size(features, input_size)
        if height < 1 or width < 1:
            side = smallest_input(features)
            raise CnnlabError(f"{name} needs inputs of at least {side}x{side}; got {input_size[0]}x{input_size[1]}")
        self.name = name
        self.input_size = tuple(input_size)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features_frozen = False

        self.features, channels = build_layers(features, in_channels, spatial=True)
        self.flatten = LayoutKeepingFlatten()
        self.feature_width = channels * height * width
        self.classifier, _ = build_layers([*classifier, Dense(num_classes, logits=True)], self.feature_width,
                                          spatial=False)

    @property
    def head(self) -> nn.Linear:
        return self.classifier[-1]

    def head_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes that may differ from a weights file's and then start afresh: the
        dense layers (another class count, another classifier, or features flattened at
        another input size)."""
        return ("classifier.",)

    def output_prefix(self) -> str:
        """The state-dict prefix of the output layer: all another class count changes."""
        return f"classifier.{len(self.classifier) - 1}."

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))

    def base_layers(self) -> list[list[nn.Module]]:
        """The convolutional base's weighted layers in order: each convolution with the modules
        after it that hold weights or statistics (its BatchNorm), up to the next convolution."""
        layers: list[list[nn.Module]] = []
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                layers.append([module])
            elif layers and (list(module.parameters(recurse=False)) or list(module.buffers(recurse=False))):
                layers[-1].append(module)
        return layers

    def freeze_features(self, frozen: bool = True, trainable_layers: int | None = None) -> None:
        """Freeze the convolutional base (Keras' ``base.trainable = False``), or train it: all
        of it, or only its last ``trainable_layers`` weighted layers (Keras' guide's
        ``fine_tune_at``, torchvision's ``trainable_backbone_layers``), those before staying
        frozen. Frozen layers keep their BatchNorm statistics too."""
        layers = self.base_layers()
        trained = 0 if frozen else len(layers) if trainable_layers is None else trainable_layers
        for index, modules in enumerate(layers):
            for module in modules:
                for param in module.parameters(recurse=False):
                    param.requires_grad_(index >= len(layers) - trained)
        self.features_frozen = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> ConvNet:
        super().train(mode)
        for module in self.features.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                # a frozen BatchNorm keeps its running statistics
                params = list(module.parameters(recurse=False))
                module.train(mode and (not params or any(p.requires_grad for p in params)))
        return self

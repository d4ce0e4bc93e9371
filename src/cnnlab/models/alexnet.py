"""AlexNet: the paper's network (Krizhevsky, Sutskever, Hinton, NIPS 2012) and the three Keras
versions the GTSRB, Caltech-256 and MNIST tutorials copy.

The paper split every layer across two GPUs. ``groups=2`` reproduces that connectivity on one
device: conv2, conv4 and conv5 are grouped convolutions whose group g sees only the maps made
by tower g, while conv1, conv3 and the dense layers see both towers (conv3 is where the GPUs
talk). ``towers()`` names which channels of each layer belong to which tower.
"""

from __future__ import annotations

from torch import nn

from ..errors import CnnlabError
from .convnet import ConvNet
from .factory import register_model
from .layers import BN, LRN, AvgPool, Conv, Dense, Dropout, MaxPool, ReLU


def paper_features(groups: int) -> list:
    return [
        Conv(96, 11, stride=4), ReLU(), LRN(), MaxPool(3, 2),
        Conv(256, 5, padding=2, groups=groups), ReLU(), LRN(), MaxPool(3, 2),
        Conv(384, 3, padding=1), ReLU(),
        Conv(384, 3, padding=1, groups=groups), ReLU(),
        Conv(256, 3, padding=1, groups=groups), ReLU(), MaxPool(3, 2),
    ]


PAPER_CLASSIFIER = [Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5)]

# One tower of the paper, as the Caltech-256 tutorial built it.
HALF_FEATURES = [
    Conv(48, 11, stride=4), ReLU(), MaxPool(3, 2), BN(),
    Conv(128, 5, padding=2, bias=False), MaxPool(3, 2), ReLU(), BN(),
    Conv(192, 3, padding="same"), ReLU(),
    Conv(192, 3, padding="same"), ReLU(),
    Conv(128, 3, padding="same"), ReLU(), MaxPool(3, 2),
]
HALF_CLASSIFIER = [Dense(2048), ReLU(), Dropout(0.25), Dense(2048), ReLU(), Dropout(0.25)]

# The most copied Keras version: BatchNorm and dropout after every layer, no LRN. The dropout
# rates are options (the table keeps its rows at rate 0, so state-dict names never change).
def bn_features(dropout: float) -> list:
    return [
        Conv(96, 11, stride=4), ReLU(), BN(), MaxPool(3, 2), Dropout(dropout),
        Conv(256, 5, padding="same"), ReLU(), BN(), MaxPool(3, 2), Dropout(dropout),
        Conv(384, 3, padding="same"), ReLU(), BN(), Dropout(dropout),
        Conv(384, 3, padding="same"), ReLU(), BN(), Dropout(dropout),
        Conv(256, 3, padding="same"), ReLU(), BN(), MaxPool(3, 2), Dropout(dropout),
    ]


def bn_classifier(dropout: float) -> list:
    return [Dense(4096), ReLU(), BN(), Dropout(dropout), Dense(4096), ReLU(), BN(), Dropout(dropout)]


# AlexNet shrunk for 28x28 digits; BatchNorm over channels (the tutorial's axis=1 normalised
# over image rows).
MNIST_FEATURES = [
    Conv(64, 11, padding="same"), ReLU(), AvgPool(2), BN(),
    Conv(192, 5, padding="same"), ReLU(), AvgPool(2), BN(),
    Conv(384, 3, padding="same"), ReLU(), BN(),
    Conv(384, 3, padding="same"), ReLU(), BN(),
    Conv(256, 3, padding="same"), ReLU(), AvgPool(2), BN(),
]
MNIST_CLASSIFIER = [Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5)]

INITS = ("default", "paper", "torch")


def init_kaiming(model: ConvNet) -> None:
    """He et al. (2015): variance 2/fan_in keeps the signal's scale through ReLU layers, which
    an 8-layer network without BatchNorm needs to start learning at all."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


def init_paper(model: ConvNet) -> None:
    """Weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and fc7 (to give ReLUs positive
    inputs early), 0 elsewhere."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    dense = [m for m in model.classifier if isinstance(m, nn.Linear)]
    ones = {id(convs[1]), id(convs[3]), id(convs[4]), id(dense[0]), id(dense[1])}
    for module in convs + dense:
        nn.init.normal_(module.weight, 0.0, 0.01)
        nn.init.constant_(module.bias, 1.0 if id(module) in ones else 0.0)


def towers(model: ConvNet) -> list[dict[str, slice]]:
    """For each of the paper's two GPUs, the output channels of every grouped conv it holds."""
    grouped = {name: m for name, m in model.features.named_children()
               if isinstance(m, nn.Conv2d) and m.groups > 1}
    if not grouped:
        return [{name: slice(0, m.out_channels)
                 for name, m in model.features.named_children() if isinstance(m, nn.Conv2d)}]
    count = next(iter(grouped.values())).groups
    return [{name: slice(g * m.out_channels // count, (g + 1) * m.out_channels // count)
             for name, m in grouped.items()} for g in range(count)]


@register_model("alexnet", input_size=(227, 227, 3), num_classes=1000, params=60_965_224,
                source="Krizhevsky, Sutskever, Hinton, NIPS 2012")
def alexnet(num_classes, in_channels, input_size, groups: int = 2, init: str = "default"):
    """The paper's AlexNet: LRN, overlapping pooling, two towers (groups=2) in conv2/4/5."""
    if init not in INITS:
        raise CnnlabError(f"alexnet: init must be one of {', '.join(INITS)}; got '{init}'")
    if groups not in (1, 2):
        raise CnnlabError(f"alexnet: groups must be 1 or 2; got {groups}")
    model = ConvNet(paper_features(groups), PAPER_CLASSIFIER, num_classes, in_channels,
                    input_size, name="alexnet")
    if init == "paper":
        init_paper(model)
    elif init == "default":
        init_kaiming(model)
    return model


@register_model("alexnet-half", input_size=(227, 227, 3), num_classes=45, params=14_674_221,
                source="Caltech-256 Keras tutorial (one tower of the paper)")
def alexnet_half(num_classes, in_channels, input_size):
    """One tower of the paper with BatchNorm: 48..192 filters, dense 2048, dropout 0.25."""
    return ConvNet(HALF_FEATURES, HALF_CLASSIFIER, num_classes, in_channels, input_size,
                   name="alexnet-half")


@register_model("alexnet-bn", input_size=(227, 227, 3), num_classes=10, params=58_360_586,
                source="the most copied Keras AlexNet (GTSRB tutorial)")
def alexnet_bn(num_classes, in_channels, input_size, conv_dropout: float = 0.5,
               dense_dropout: float = 0.5):
    """AlexNet with BatchNorm and dropout 0.5 after every layer, no LRN."""
    for name, rate in (("conv_dropout", conv_dropout), ("dense_dropout", dense_dropout)):
        if not 0.0 <= rate < 1.0:
            raise CnnlabError(f"alexnet-bn: {name} must be in [0, 1); got {rate}")
    return ConvNet(bn_features(conv_dropout), bn_classifier(dense_dropout), num_classes,
                   in_channels, input_size, name="alexnet-bn")


@register_model("alexnet-mnist", input_size=(28, 28, 1), num_classes=10, params=29_460_298,
                source="AlexNet-on-MNIST Keras tutorial (BatchNorm axis fixed)")
def alexnet_mnist(num_classes, in_channels, input_size):
    """AlexNet shrunk for 28x28 digits: same-padded convs, average pooling, BatchNorm."""
    return ConvNet(MNIST_FEATURES, MNIST_CLASSIFIER, num_classes, in_channels, input_size,
                   name="alexnet-mnist")

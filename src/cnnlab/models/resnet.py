"""ResNet-9: cnnlab's recommended compact network, next to the tutorials' nets.

The network of David Page's "How to Train Your ResNet" (Myrtle.ai, 2018), the DAWNBench
CIFAR-10 winner: a stem, three stages that double the channels and halve the map (max-pool
after the convolution, then BatchNorm and ReLU), a residual block of two convolutions after
the first and last stage, and global max pooling, so any input size works. ``width`` is the
stem's channel count (stages: 2x, 4x, 8x); the compute grows with its square, so 32 costs a
quarter of Page's 64. ``stem_stride=2`` halves large inputs (flowers at 128x128) before the
first stage.
"""

from __future__ import annotations

from ..errors import CnnlabError
from .convnet import ConvNet
from .factory import register_model
from .layers import TORCH_BN, Conv, GlobalPool, MaxPool, ReLU, Residual


def conv_bn(filters: int, stride: int = 1) -> list:
    return [Conv(filters, 3, stride=stride, padding=1, bias=False), TORCH_BN, ReLU()]


def stage(filters: int) -> list:
    """conv 3x3, max-pool 2, BatchNorm, ReLU: the pool before the normalisation saves 3/4 of
    its work at the same result."""
    return [Conv(filters, 3, padding=1, bias=False), MaxPool(2), TORCH_BN, ReLU()]


def resnet9_features(width: int, stem_stride: int) -> list:
    return [
        *conv_bn(width, stem_stride),                                    # stem
        *stage(2 * width), Residual((*conv_bn(2 * width), *conv_bn(2 * width))),
        *stage(4 * width),
        *stage(8 * width), Residual((*conv_bn(8 * width), *conv_bn(8 * width))),
        GlobalPool("max"),
    ]


@register_model("resnet9", input_size=(32, 32, 3), num_classes=10, params=6_577_610,
                source="Page, How to Train Your ResNet (Myrtle.ai 2018), DAWNBench CIFAR-10")
def resnet9(num_classes, in_channels, input_size, width: int = 64, stem_stride: int = 1):
    """Compact residual net: stem, 3 stages (2x, 4x, 8x width) with 2 residual blocks, global max pool."""
    if width < 1 or stem_stride not in (1, 2):
        raise CnnlabError(f"resnet9: width must be positive and stem_stride 1 or 2; got {width}, {stem_stride}")
    return ConvNet(resnet9_features(width, stem_stride), [], num_classes, in_channels,
                   input_size, name="resnet9")

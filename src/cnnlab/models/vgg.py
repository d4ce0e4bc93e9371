"""VGG-16 from scratch, with BatchNorm, and as a transfer-learning base (Simonyan & Zisserman, 2014).

Layer indices match torchvision's ``vgg16`` and ``vgg16_bn``, so their ImageNet state dicts
load into ``features`` by name.
"""

from __future__ import annotations

from .convnet import ConvNet
from .factory import register_model
from .layers import TORCH_BN, Conv, Dense, Dropout, MaxPool, ReLU

VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def vgg_features(batch_norm: bool) -> list:
    layers: list = []
    for block in VGG16_BLOCKS:
        for filters in block:
            layers += [Conv(filters, 3, padding=1), *([TORCH_BN] if batch_norm else []), ReLU()]
        layers.append(MaxPool(2))
    return layers


SCRATCH_CLASSIFIER = [Dense(4096), ReLU(), Dropout(0.5), Dense(4096), ReLU(), Dropout(0.5)]
TRANSFER_CLASSIFIER = [Dense(256), ReLU(), Dropout(0.4)]


# nchw_training_on_cpu: the fp32 training step ran 1.43x faster in NCHW than channels_last on an
# AVX2 CPU, 1.25x with BatchNorm (the forward pass alone 0.79x, so evaluation stays channels_last)
@register_model("vgg16", input_size=(224, 224, 3), num_classes=17, params=134_330_193,
                source="Simonyan & Zisserman 2014; celebrity-faces tutorial", nchw_training_on_cpu=True)
def vgg16(num_classes, in_channels, input_size):
    """VGG-16 from scratch: 13 3x3 convs in five blocks, dense 4096, dense 4096."""
    return ConvNet(vgg_features(False), SCRATCH_CLASSIFIER, num_classes, in_channels,
                   input_size, name="vgg16")


@register_model("vgg16-bn", input_size=(224, 224, 3), num_classes=17, params=134_347_089,
                source="Simonyan & Zisserman 2014, with BatchNorm after every conv", nchw_training_on_cpu=True)
def vgg16_bn(num_classes, in_channels, input_size):
    """VGG-16 with BatchNorm after every convolution, from scratch."""
    return ConvNet(vgg_features(True), SCRATCH_CLASSIFIER, num_classes, in_channels,
                   input_size, name="vgg16-bn")


@register_model("vgg16-transfer", input_size=(224, 224, 3), num_classes=17, params=21_141_841,
                source="celebrity-faces tutorial (ImageNet VGG-16 base + small head)")
def vgg16_transfer(num_classes, in_channels, input_size):
    """VGG-16 convolutional base, dense 256, dropout 0.4 (freeze the base with freeze_base)."""
    return ConvNet(vgg_features(False), TRANSFER_CLASSIFIER, num_classes, in_channels,
                   input_size, name="vgg16-transfer")

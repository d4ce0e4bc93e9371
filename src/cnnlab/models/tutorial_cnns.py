"""The small CNNs of the CIFAR-100 and celebrity-faces tutorials."""

from __future__ import annotations

from .convnet import ConvNet
from .factory import register_model
from .layers import AvgPool, Conv, Dense, Dropout, MaxPool, ReLU

SIMPLE_CNN_FEATURES = [
    Conv(32, 3), ReLU(), Conv(64, 3), ReLU(), MaxPool(2),
    Conv(128, 3), ReLU(), Conv(256, 3), ReLU(), Conv(512, 3), ReLU(), MaxPool(2),
    Conv(1024, 3), ReLU(), MaxPool(2),
]
SIMPLE_CNN_CLASSIFIER = [Dense(500), ReLU(), Dropout(0.5)]

# The tutorial's Rescaling(1/255) layer is left out: cnnlab normalises every input already.
SMALL_CNN_FEATURES = [
    Conv(16, 3), ReLU(), AvgPool(2),
    Conv(32, 3), ReLU(), AvgPool(2), Dropout(0.5),
    Conv(64, 3), ReLU(), AvgPool(2), Dropout(0.5),
    Conv(128, 3), ReLU(), Dropout(0.5),
]
SMALL_CNN_CLASSIFIER = [Dense(128), ReLU()]


@register_model("simple-cnn", input_size=(32, 32, 3), num_classes=100, params=6_850_792,
                source="CIFAR-100 Keras tutorial")
def simple_cnn(num_classes, in_channels, input_size):
    """Six valid 3x3 convs (32..1024) with three max-pools, dense 500, dropout 0.5."""
    return ConvNet(SIMPLE_CNN_FEATURES, SIMPLE_CNN_CLASSIFIER, num_classes, in_channels,
                   input_size, name="simple-cnn")


@register_model("small-cnn", input_size=(224, 224, 3), num_classes=17, params=9_536_945,
                source="celebrity-faces Keras tutorial")
def small_cnn(num_classes, in_channels, input_size):
    """Four 3x3 convs (16..128) with average pooling and dropout 0.5, dense 128."""
    return ConvNet(SMALL_CNN_FEATURES, SMALL_CNN_CLASSIFIER, num_classes, in_channels,
                   input_size, name="small-cnn")

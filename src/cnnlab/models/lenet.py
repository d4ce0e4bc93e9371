"""LeNet-5 and the plain fully connected baseline (LeCun et al., 1998; the CIFAR-100 tutorial's fully connected baseline)."""

from __future__ import annotations

from .convnet import ConvNet
from .factory import register_model
from .layers import Conv, Dense, Dropout, MaxPool, ReLU

# LeNet-5 with the modern ReLU and max-pooling; conv1 pads 2 so 28x28 digits get the paper's
# 32x32 arithmetic.
LENET5_FEATURES = [
    Conv(6, 5, padding=2), ReLU(), MaxPool(2),
    Conv(16, 5), ReLU(), MaxPool(2),
]
LENET5_CLASSIFIER = [Dense(120), ReLU(), Dense(84), ReLU()]

MLP_CLASSIFIER = [Dense(512), ReLU(), Dropout(0.2), Dense(512), ReLU(), Dropout(0.2)]


@register_model("lenet5", input_size=(28, 28, 1), num_classes=10, params=61_706,
                source="LeCun et al. 1998, with ReLU and max-pooling")
def lenet5(num_classes, in_channels, input_size):
    """LeNet-5: conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, fc classes."""
    return ConvNet(LENET5_FEATURES, LENET5_CLASSIFIER, num_classes, in_channels, input_size,
                   name="lenet5")


@register_model("mlp", input_size=(28, 28, 1), num_classes=10, params=669_706,
                source="the plain fully connected baseline of the CIFAR-100 tutorial")
def mlp(num_classes, in_channels, input_size):
    """Fully connected baseline: flatten, dense 512, dense 512 (ReLU, dropout 0.2), classes."""
    return ConvNet([], MLP_CLASSIFIER, num_classes, in_channels, input_size, name="mlp")

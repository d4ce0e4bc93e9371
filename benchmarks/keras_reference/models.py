"""The tutorials' models written the tutorials' way: Keras 3 Sequential on TensorFlow-CPU (or
the backend KERAS_BACKEND names; AlexNet's LRN needs TensorFlow).

Built from the layer tables of docs/models.md, with the tutorials' bugs fixed where a
bug would change the work done (BatchNormalization over channels, no ReLU on logits), so that
both sides of the benchmark train the same network. Runs only in the environment made by
`make bench-env`; cnnlab never imports it.
"""

from __future__ import annotations

import keras
from keras import layers


def conv(filters, size, **kwargs):
    return layers.Conv2D(filters, size, activation="relu", **kwargs)


def lrn():
    # The paper's LRN as the tutorials write it, in TensorFlow (so AlexNet needs that backend):
    # TensorFlow takes the radius (n // 2 = 2) and does not divide alpha by n.
    import tensorflow as tf

    return layers.Lambda(lambda x: tf.nn.local_response_normalization(
        x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75))


def alexnet_bn(classes):
    return [
        conv(96, 11, strides=4), layers.BatchNormalization(), layers.MaxPooling2D(3, 2), layers.Dropout(0.5),
        conv(256, 5, padding="same"), layers.BatchNormalization(), layers.MaxPooling2D(3, 2), layers.Dropout(0.5),
        conv(384, 3, padding="same"), layers.BatchNormalization(), layers.Dropout(0.5),
        conv(384, 3, padding="same"), layers.BatchNormalization(), layers.Dropout(0.5),
        conv(256, 3, padding="same"), layers.BatchNormalization(), layers.MaxPooling2D(3, 2), layers.Dropout(0.5),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"), layers.BatchNormalization(), layers.Dropout(0.5),
        layers.Dense(4096, activation="relu"), layers.BatchNormalization(), layers.Dropout(0.5),
        layers.Dense(classes),
    ]


def alexnet_half(classes):
    return [
        conv(48, 11, strides=4), layers.MaxPooling2D(3, 2), layers.BatchNormalization(),
        layers.Conv2D(128, 5, padding="same", use_bias=False), layers.MaxPooling2D(3, 2), layers.ReLU(),
        layers.BatchNormalization(),
        conv(192, 3, padding="same"), conv(192, 3, padding="same"),
        conv(128, 3, padding="same"), layers.MaxPooling2D(3, 2),
        layers.Flatten(),
        layers.Dense(2048, activation="relu"), layers.Dropout(0.25),
        layers.Dense(2048, activation="relu"), layers.Dropout(0.25),
        layers.Dense(classes),
    ]


def alexnet_mnist(classes):
    return [
        conv(64, 11, padding="same"), layers.AveragePooling2D(2), layers.BatchNormalization(),
        conv(192, 5, padding="same"), layers.AveragePooling2D(2), layers.BatchNormalization(),
        conv(384, 3, padding="same"), layers.BatchNormalization(),
        conv(384, 3, padding="same"), layers.BatchNormalization(),
        conv(256, 3, padding="same"), layers.AveragePooling2D(2), layers.BatchNormalization(),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"), layers.Dropout(0.5),
        layers.Dense(4096, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes),
    ]


def simple_cnn(classes):
    return [
        conv(32, 3), conv(64, 3), layers.MaxPooling2D(2),
        conv(128, 3), conv(256, 3), conv(512, 3), layers.MaxPooling2D(2),
        conv(1024, 3), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(500, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes),
    ]


def small_cnn(classes):
    return [
        layers.Rescaling(1 / 255),
        conv(16, 3), layers.AveragePooling2D(2),
        conv(32, 3), layers.AveragePooling2D(2), layers.Dropout(0.5),
        conv(64, 3), layers.AveragePooling2D(2), layers.Dropout(0.5),
        conv(128, 3), layers.Dropout(0.5),
        layers.Flatten(), layers.Dense(128, activation="relu"),
        layers.Dense(classes),
    ]


def alexnet(classes):
    return [
        conv(96, 11, strides=4), lrn(), layers.MaxPooling2D(3, 2),
        conv(256, 5, padding="same", groups=2), lrn(), layers.MaxPooling2D(3, 2),
        conv(384, 3, padding="same"),
        conv(384, 3, padding="same", groups=2),
        conv(256, 3, padding="same", groups=2), layers.MaxPooling2D(3, 2),
        layers.Flatten(),
        layers.Dense(4096, activation="relu"), layers.Dropout(0.5),
        layers.Dense(4096, activation="relu"), layers.Dropout(0.5),
        layers.Dense(classes),
    ]


def vgg16(classes):
    stack = []
    for width, depth in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        stack += [conv(width, 3, padding="same") for _ in range(depth)]
        stack.append(layers.MaxPooling2D(2))
    return stack + [layers.Flatten(), layers.Dense(4096, activation="relu"),
                    layers.Dense(4096, activation="relu"), layers.Dense(classes)]


BUILDERS = {"alexnet-bn": alexnet_bn, "alexnet-half": alexnet_half, "alexnet-mnist": alexnet_mnist,
            "simple-cnn": simple_cnn, "small-cnn": small_cnn, "alexnet": alexnet, "vgg16": vgg16}


def build(name: str, height: int, width: int, channels: int, classes: int) -> keras.Model:
    """The model as a tutorial user builds it; the softmax stays in float32 under a mixed
    policy, as Keras' mixed-precision guide asks."""
    stack = [keras.Input((height, width, channels)), *BUILDERS[name](classes),
             layers.Activation("softmax", dtype="float32")]
    return keras.Sequential(stack, name=name)

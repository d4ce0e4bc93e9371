"""Build a reference model with random weights, save them the Keras 3 ways (``.weights.h5``,
the whole model as ``.keras``, and as the legacy ``.h5`` of tf.keras 2's tutorials) and its
outputs on a fixed random input, for cnnlab's test that reads Keras weight files
(tests/test_weights_formats.py). Runs in the environment of `make bench-env`.

    .venv-bench/bin/python benchmarks/keras_reference/save_weights.py simple-cnn 32 32 3 10 OUT_DIR [adapted]

``adapted``: the model starts as the Keras examples' do, with random flips and a Normalization
layer adapted to the input (0-255 pixels, the channels' levels apart), saved whole only.
"""

import sys
from pathlib import Path

import keras
import numpy as np
from models import build


def main() -> None:
    name, height, width, channels, classes, out = sys.argv[1:7]
    out = Path(out)
    keras.utils.set_random_seed(0)
    model = build(name, int(height), int(width), int(channels), int(classes))
    for layer in model.layers:  # BatchNorm statistics away from their defaults, so they are tested
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma + 0.1, beta + 0.2, mean + 0.3, variance + 0.4])
    x = np.random.default_rng(0).normal(size=(2, int(height), int(width), int(channels))).astype("float32")
    if sys.argv[7:] == ["adapted"]:
        x = np.random.default_rng(0).uniform(0, 255, size=(16, *x.shape[1:])) * np.linspace(1, 0.5, x.shape[-1])
        x = x.astype("float32")
        normalization = keras.layers.Normalization()
        normalization.adapt(x)
        model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.RandomFlip("horizontal"), normalization,
                                  *model.layers])
    model.save_weights(out / "model.weights.h5")
    model.save(out / "model.keras")
    try:
        model.save(out / "model.h5")
    except TypeError:  # the legacy format cannot save AlexNet's LRN, a Lambda layer
        (out / "model.h5").unlink(missing_ok=True)
    np.savez(out / "reference.npz", x=x, y=np.asarray(model(x, training=False)))


if __name__ == "__main__":
    main()

"""Train a tutorial's net in Keras on an image folder as the tutorial does (the folder read by
``image_dataset_from_directory`` with a 10% validation split of seed 123, Adam, sparse
cross-entropy) and save it whole (``model.keras``): a Keras user's model, for the check that
cnnlab evaluates it as Keras does (docs/results.md). Prints, and writes to ``keras.json``,
Keras' own accuracy on the validation split and on every image of the folder (with the
validation split's files, for cnnlab to predict). Runs in the environment of `make bench-env`.

    .venv-bench/bin/python benchmarks/keras_reference/fit_folder.py small-cnn FOLDER SIZE EPOCHS OUT_DIR
"""

import json
import sys
from pathlib import Path

import keras
from models import build


def main() -> None:
    name, folder, size, epochs, out = sys.argv[1:6]
    size, out = int(size), Path(out)
    keras.utils.set_random_seed(0)
    train, val = keras.utils.image_dataset_from_directory(folder, validation_split=0.1, subset="both", seed=123,
                                                          image_size=(size, size), batch_size=32)
    everything = keras.utils.image_dataset_from_directory(folder, image_size=(size, size), batch_size=32,
                                                          shuffle=False)
    model = build(name, size, size, 3, len(train.class_names))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=int(epochs), verbose=2)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    results = {"classes": train.class_names, "val_files": list(val.file_paths),
               "val_accuracy": model.evaluate(val, verbose=0, return_dict=True)["accuracy"],
               "all_accuracy": model.evaluate(everything, verbose=0, return_dict=True)["accuracy"]}
    (out / "keras.json").write_text(json.dumps(results))
    print(json.dumps({k: v for k, v in results.items() if k.endswith("accuracy")}))


if __name__ == "__main__":
    main()

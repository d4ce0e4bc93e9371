"""Trains the Keras reference models on request, for benchmarks/throughput.py.

Runs in `make bench-env`'s environment and speaks one JSON object per line: requests on stdin,
replies on stdout (everything else TensorFlow prints goes to stderr).

    {"op": "info"}                   -> versions, threads and the model names it can build
    {"op": "prepare", "key": K, "model": NAME, "input": [H, W, C], "classes": N,
     "policy": "float32" | "mixed_bfloat16", "batch": B, "steps": S, "loop": "fit" (default) | "train_on_batch"}
    {"op": "measure", "key": K}      -> {"images_per_second": ...}
    {"op": "measure", "key": K, "loop": "train_on_batch"}

Each model trains the way the tutorials train: compile with SGD and sparse categorical
cross-entropy, then ``fit`` on NumPy arrays in memory, one epoch of S batches per measurement.
The loop "train_on_batch" trains on the same S batches one ``train_on_batch`` call each, outside
``fit``'s loop, which TensorFlow paces in some windows on some machines (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from models import BUILDERS, build  # noqa: E402


class Reference:
    def __init__(self, model: str, input: list[int], classes: int, policy: str, batch: int, steps: int):
        keras.mixed_precision.set_global_policy(policy)
        try:
            self.model = build(model, *input, classes)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        rng = np.random.default_rng(0)
        count = batch * steps
        self.images = rng.integers(0, 256, (count, *input), dtype=np.uint8).astype(np.float32) / 255
        self.labels = rng.integers(0, classes, count)
        self.batch = batch

    def epoch(self, loop: str = "fit") -> float:
        if loop not in ("fit", "train_on_batch"):
            raise ValueError(f"unknown loop {loop!r}")
        started = time.perf_counter()
        if loop == "fit":
            self.model.fit(self.images, self.labels, batch_size=self.batch, epochs=1, verbose=0)
        else:
            for start in range(0, len(self.images), self.batch):
                self.model.train_on_batch(self.images[start:start + self.batch], self.labels[start:start + self.batch])
        return len(self.images) / (time.perf_counter() - started)


def info() -> dict:
    """Versions and threads. The backend is the tutorials' TensorFlow unless KERAS_BACKEND names
    another (JAX, say, where TensorFlow cannot be installed)."""
    backend = keras.backend.backend()
    found = {"backend": backend, "backend_version": importlib.import_module(backend).__version__,
             "keras": keras.__version__, "models": sorted(BUILDERS)}
    if backend == "tensorflow":
        import tensorflow as tf

        found["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads() or "default"
        found["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    return found


def main() -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    references: dict[str, Reference] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "info":
                reply = info()
            elif request["op"] == "prepare":
                fields = {k: request[k] for k in ("model", "input", "classes", "policy", "batch", "steps")}
                reference = references[request["key"]] = Reference(**fields)
                reference.epoch(request.get("loop", "fit"))  # warm-up: tracing the loop's graph, first allocations
                reply = {"params": reference.model.count_params()}
            elif request["op"] == "measure":
                reply = {"images_per_second": references[request["key"]].epoch(request.get("loop", "fit"))}
            elif request["op"] == "release":
                references.pop(request["key"], None)
                keras.backend.clear_session()
                reply = {}
            else:
                reply = {"error": f"unknown op {request['op']!r}"}
        except Exception as error:  # reported to the benchmark, which goes on without this mode
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()

"""Training throughput of cnnlab's own training step (Trainer.train_epoch) on synthetic
in-memory data, per model and precision, alternating the modes so drift hits both alike.

    python benchmarks/throughput.py --models lenet5 simple-cnn alexnet-bn --repeats 3

Prints img/s (median of the repeats, warm-up excluded) and the ratio against fp32.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import Augment, Dataset, Split
from cnnlab.models import MODELS, create_model
from cnnlab.runs import RunDirectory
from cnnlab.training.device import configure_threads, native_bf16
from cnnlab.training.losses import Loss
from cnnlab.training.optim import build_optimizer
from cnnlab.training.schedules import LRSchedule
from cnnlab.training.trainer import Trainer

BATCH = {"alexnet-bn": 64, "alexnet": 64, "alexnet-half": 64, "alexnet-mnist": 64,
         "simple-cnn": 128, "small-cnn": 32, "vgg16": 16, "vgg16-bn": 16, "vgg16-transfer": 16,
         "lenet5": 128, "mlp": 128}


def make_trainer(name: str, precision: str, steps: int, run: RunDirectory) -> Trainer:
    info = MODELS.get(name)
    height, width, channels = info.input_size
    batch = BATCH.get(name, 64)
    count = batch * steps
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    dataset = Dataset("synthetic", [str(i) for i in range(10)],
                      {"train": Split(images, labels, [str(i) for i in range(count)])},
                      (height, width), channels)
    config = TrainConfig().with_overrides({"model.name": name, "batch_size": batch,
                                           "optimizer.name": "sgd", "optimizer.lr": 0.001})
    device = torch.device("cpu")
    model = create_model(name, 10, channels, (height, width)).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config.optimizer, model.parameters(), device)
    schedule = LRSchedule(config.schedule, 0.001, steps, 1)
    preprocessing = {"mean": [0.5] * channels, "std": [0.25] * channels, "crop": [height, width],
                     "image_size": [height, width], "channels": channels, "pca": None}
    return Trainer(config, dataset, model, Loss("sparse_ce", 10), optimizer, schedule, Augment(),
                   run, device, precision, preprocessing)


def measure(trainer: Trainer) -> float:
    count = len(trainer.dataset.splits["train"])
    started = time.perf_counter()
    trainer.train_epoch(0)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "alexnet-mnist", "simple-cnn", "alexnet-bn"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=6, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure_threads()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"native bf16: {native_bf16(torch.device('cpu'))}, LD_PRELOAD={'tcmalloc' if 'tcmalloc' in __import__('os').environ.get('LD_PRELOAD', '') else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDirectory(tmp, quiet=True)
        for name in args.models:
            trainers = {p: make_trainer(name, p, args.steps, run) for p in args.precisions}
            for trainer in trainers.values():
                measure(trainer)  # warm-up
            rates: dict[str, list[float]] = {p: [] for p in args.precisions}
            for _ in range(args.repeats):
                for precision, trainer in trainers.items():
                    rates[precision].append(measure(trainer))
            medians = {p: statistics.median(r) for p, r in rates.items()}
            reference = medians[args.precisions[0]]
            cells = "  ".join(f"{p} {m:8.1f} img/s ({m / reference:.2f}x)" for p, m in medians.items())
            print(f"{name:<15} batch {BATCH.get(name, 64):>4}  {cells}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Wall time and epochs until a run reaches a test accuracy, data pipeline included.

    python benchmarks/time_to_accuracy.py --data mnist:../shared/datasets/mnist --target 0.993 \
        --model lenet5 --epochs 12 --set schedule.name=cosine --set data.augment=[pad_crop:2]

The test split (validation where there is none) is evaluated after every epoch from
--evaluate-from on (its time is counted); the run stops at the first epoch at or above the
target, or after --epochs. Prints the time to target (or the best
accuracy reached) and the training and data pipeline rates measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from throughput import exit_on_refused_input

from cnnlab import api, launcher
from cnnlab.config import TrainConfig, parse_override
from cnnlab.data.inspect import batch_rate
from cnnlab.evaluation import TTA_HELP, TTA_MODES
from cnnlab.evaluation.inference import predict_logits
from cnnlab.runtime import cpu_text
from cnnlab.training.callbacks import Callback


class StopAtTarget(Callback):
    def __init__(self, target: float, started: float, tta: str | None = None, first: int = 1):
        self.target, self.started, self.tta, self.first = target, started, tta, first
        self.reached: tuple[int, float] | None = None
        self.accuracies: list[float] = []

    def on_train_begin(self, trainer):
        self.setup_seconds = time.perf_counter() - self.started
        self.loader = trainer.train_loader
        # the official test split; data without one (digits) is measured on validation
        self.split = "test" if "test" in trainer.dataset.splits else "val"

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 < self.first:
            return
        split = trainer.dataset.splits[self.split]
        logits = predict_logits(trainer.eval_model, trainer.eval_loader(self.split), trainer.runtime, self.tta)
        accuracy = float((logits.argmax(1) == torch.from_numpy(split.labels)).float().mean())
        self.accuracies.append(accuracy)
        if accuracy >= self.target and self.reached is None:
            self.reached = (epoch + 1, time.perf_counter() - self.started)
            trainer.stop_training = True


def main() -> None:
    # as the cnnlab command runs: with tcmalloc preloaded where it is installed
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--target", type=float, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--config", help="recipe YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tta", choices=TTA_MODES, help=f"of the test split: {TTA_HELP}")
    parser.add_argument("--evaluate-from", type=int, default=1, metavar="EPOCH",
                        help="test from this epoch on (a cosine schedule's earlier epochs cannot reach the target)")
    parser.add_argument("--out", default="runs/time-to-accuracy")
    args = parser.parse_args()

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    overrides = {"model.name": args.model, "data.spec": args.data, "epochs": args.epochs,
                 "out": args.out, **dict(parse_override(item) for item in args.set)}
    config = config.with_overrides(overrides)
    started = time.perf_counter()
    stopper = StopAtTarget(args.target, started, args.tta, args.evaluate_from)
    run = api.train(config, callbacks=[stopper], quiet=True)
    total = time.perf_counter() - started
    print(f"CPU {cpu_text()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    rates = [row["images_per_second"] for row in run.history]
    print(f"{args.model} on {args.data}: {stopper.split} accuracy per epoch, from epoch {args.evaluate_from}: "
          + ", ".join(f"{a:.4f}" for a in stopper.accuracies))
    if stopper.reached:
        print(f"reached {args.target:.4f} after {stopper.reached[0]} epochs in {stopper.reached[1]:.1f} s")
    else:
        print(f"did not reach {args.target:.4f} in {len(run.history)} epochs "
              f"(best {max(stopper.accuracies, default=float('nan')):.4f}); {total:.1f} s")
    pipeline = batch_rate(stopper.loader, 50 * config.batch_size)
    print(f"set-up (data loading, model, run folder) {stopper.setup_seconds:.1f} s; training {sum(rates) / len(rates):,.0f} img/s "
          f"(data pipeline included); the training batches alone {pipeline:,.0f} img/s; run: {run.path}")


if __name__ == "__main__":
    exit_on_refused_input(main)

"""Keras-style callbacks. Each one's state goes into last.pt so a resumed run continues
exactly where it stopped. A callback receives the Trainer (loop.py), which imports this module,
so the type is not named here."""

from __future__ import annotations

import copy
from typing import Any

import torch

from .. import runs
from ..checkpoint import load_checkpoint
from ..errors import ConfigError
from .monitor import Monitor

Trainer = Any


class Callback:
    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def on_batch_begin(self, trainer: Trainer, step: int) -> None:
        """Before optimizer step ``step`` (counted over the run) starts its first batch."""

    def on_batch_end(self, trainer: Trainer, step: int, loss) -> None:
        """After optimizer step ``step``; ``loss`` is the last batch's loss as a tensor on the
        device (reading its value waits for the device: do it every few steps, not every one)."""

    def before_restore(self, trainer: Trainer, epochs_done: int) -> None:
        """Put the model in the shape it had after ``epochs_done`` epochs, before resuming."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def check_callbacks(callbacks: object) -> None:
    """Refuse what is not a list of Callbacks before a run is made: an object without the hooks
    failed at the first one, after the run's folder was made."""
    def kind(value: object) -> str:
        name = type(value).__name__
        return ("an " if name[0].lower() in "aeiou" else "a ") + name

    if not isinstance(callbacks, list | tuple):
        raise ConfigError.about("callbacks", f": a list of Callbacks; got {kind(callbacks)}")
    for index, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise ConfigError.about("callbacks", f"[{index}]: {kind(callback)}, not a cnnlab Callback (subclass "
                                    "cnnlab.training.callbacks.Callback and override the hooks you need)")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs, counting
    from epoch ``start_from_epoch`` (0-based; the epochs before it are not monitored). With
    ``restore_best_weights`` the model ends with the best epoch's weights, whether or not
    patience ran out."""

    def __init__(self, monitor: str, patience: int, mode: str = "auto", min_delta: float = 0.0,
                 restore_best_weights: bool = True, start_from_epoch: int = 0):
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch < self.start_from_epoch:
            return
        if self.monitor.update(self.monitor.value(logs), epoch):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(trainer.model.state_dict())
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            trainer.run.log(f"early stopping: {self.monitor.name} has not improved for "
                            f"{self.patience} epochs (best {self.monitor.best:.4f} at epoch "
                            f"{self.monitor.best_epoch + 1})")

    def on_train_end(self, trainer):
        if self.restore_best_weights and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)
            trainer.run.log(f"restored the weights of epoch {self.monitor.best_epoch + 1} "
                            f"(best {self.monitor.name} {self.monitor.best:.4f})")

    def state_dict(self):
        return {"monitor": self.monitor.state_dict(), "wait": self.wait,
                "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self.monitor.load_state_dict(state["monitor"])
        self.wait = state["wait"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(Callback):
    """best.pt whenever ``monitor`` improves. The trainer holds the write until last.pt (which
    knows the improvement) is written, so a kill between the two leaves a last.pt that can mend
    best.pt on resume, never a best.pt from an epoch last.pt does not know."""

    def __init__(self, monitor: str, mode: str = "auto"):
        self.monitor = Monitor(monitor, mode)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor.update(self.monitor.value(logs), epoch):
            trainer.run.save_checkpoint(runs.BEST, trainer.model_checkpoint(epoch, logs))

    def mend(self, trainer) -> bool:
        """After a resume: write best.pt again when the last finished epoch was the best one
        but the run was stopped before best.pt followed last.pt (at an epoch's end: within
        one, the model holds weights no epoch ended with)."""
        finished = trainer.epoch - 1
        if finished < 0 or self.monitor.best_epoch != finished or trainer.within_epoch is not None:
            return False
        saved = trainer.run.file(runs.BEST)
        if saved.is_file() and load_checkpoint(saved).get("epoch") == trainer.epoch:
            return False
        trainer.run.save_checkpoint(runs.BEST, trainer.model_checkpoint(finished, trainer.history[-1]))
        return True

    def state_dict(self):
        return {"monitor": self.monitor.state_dict()}

    def load_state_dict(self, state):
        self.monitor.load_state_dict(state["monitor"])


def trained_base_text(count: int, layers: int) -> str:
    """The layers ``model.trainable_base_layers`` trains, as the log says them."""
    return f"the last {count} of the convolutional base's {layers} layers"


class UnfreezeBase(Callback):
    """Fine-tuning: train only the head while the base is frozen, then from epoch
    ``after + 1`` on train the base too (at the optimizer group's ``lr_scale``)."""

    def __init__(self, after: int):
        self.after = after

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.after:
            trainer.unfreeze_base()
            count = trainer.config.model.trainable_base_layers
            part = "the convolutional base" if count is None else \
                trained_base_text(count, len(trainer.model.base_layers()))
            trainer.run.log(f"unfroze {part} after epoch {epoch + 1}")

    def before_restore(self, trainer, epochs_done):
        if epochs_done >= self.after:
            trainer.unfreeze_base()


class FixWhiteningBias(Callback):
    """airbench's warm-up of the whitening layer's bias (Jordan, 2024): it trains for the first
    ``epochs`` epochs and then stays as it is. From then on nothing below the first trained
    convolution needs a gradient, so its backward pass skips the input gradient."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_begin(self, trainer):
        if trainer.epoch >= self.epochs:  # 0 epochs, or a run resumed after them
            trainer.fix_whitening_bias()

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epochs:
            trainer.fix_whitening_bias()
            trainer.run.log(f"the whitening bias stays as it is from epoch {epoch + 2} on")


class TensorBoard(Callback):
    """Scalars for TensorBoard (the tensorboard package; only the main process writes)."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.writer = None

    def on_epoch_end(self, trainer, epoch, logs):
        if not trainer.run.main_process:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            self.writer = SummaryWriter(str(self.log_dir))
        for key, value in logs.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch + 1)
        self.writer.flush()

    def on_train_end(self, trainer):
        if self.writer is not None:
            self.writer.close()

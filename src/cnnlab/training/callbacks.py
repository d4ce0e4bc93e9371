"""Keras-style callbacks. Each one's state goes into last.pt so a resumed run continues
exactly where it stopped."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from .monitor import Monitor

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def before_restore(self, trainer: Trainer, epochs_done: int) -> None:
        """Put the model in the shape it had after ``epochs_done`` epochs, before resuming."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs. With
    ``restore_best_weights`` the model ends with the best epoch's weights, whether or not
    patience ran out."""

    def __init__(self, monitor: str, patience: int, mode: str = "auto", min_delta: float = 0.0,
                 restore_best_weights: bool = True):
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer, epoch, logs):
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
    """Save best.pt whenever ``monitor`` improves (last.pt is written by the trainer)."""

    def __init__(self, monitor: str, mode: str = "auto"):
        self.monitor = Monitor(monitor, mode)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor.update(self.monitor.value(logs), epoch):
            trainer.run.save_checkpoint("best.pt", trainer.model_checkpoint(epoch, logs))

    def state_dict(self):
        return {"monitor": self.monitor.state_dict()}

    def load_state_dict(self, state):
        self.monitor.load_state_dict(state["monitor"])


class UnfreezeBase(Callback):
    """Fine-tuning: train only the head while the base is frozen, then from epoch
    ``after + 1`` on train the base too (at the optimizer group's ``lr_scale``)."""

    def __init__(self, after: int):
        self.after = after

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.after:
            trainer.model.freeze_features(False)
            trainer.run.log(f"unfroze the convolutional base after epoch {epoch + 1}")

    def before_restore(self, trainer, epochs_done):
        if epochs_done >= self.after:
            trainer.model.freeze_features(False)


class TensorBoard(Callback):
    """Scalars for TensorBoard, when the tensorboard package is installed."""

    def __init__(self, log_dir):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, trainer, epoch, logs):
        for key, value in logs.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch + 1)
        self.writer.flush()

    def on_train_end(self, trainer):
        self.writer.close()

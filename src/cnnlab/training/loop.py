"""The training loop: epochs of steps over prepared parts (set up by setup.py), callbacks, and
the state that lets a stopped run continue exactly."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence

import torch

from .. import runs
from ..config import TrainConfig
from ..data import Augment, BatchLoader, Dataset, Preprocessing, Split
from ..data.augment import mix_batch
from ..data.loader import random_stream
from ..errors import TrainingDiverged
from ..evaluation.evaluate import running_metrics
from ..evaluation.inference import predict_logits
from ..evaluation.losses import Loss
from ..evaluation.metrics import RunningMetrics
from ..io import interruptions_held
from ..models.fusion import fold_batchnorm, foldable_pairs
from ..models.layers import fix_whitening_biases
from ..models.weights import CHECKPOINT_FORMAT, model_spec
from ..runtime import Runtime
from .callbacks import (
    Callback,
    EarlyStopping,
    FixWhiteningBias,
    ModelCheckpoint,
    TensorBoard,
    UnfreezeBase,
)
from .rng import rng_state, set_rng_state
from .schedules import LRSchedule

PROGRESS_SECONDS = 0.5
"""How often the running metrics come back from the device to the progress bar."""
SAMPLE_LOSS, SAMPLE_IMAGES = "sample_loss", 32
"""The epoch's record of ``_training_sample_loss`` (broadcast with it and checked, never logged),
and the images it takes: a few are enough, as overflowing weights overflow every output, and a
whole batch would cost CIFAR-10's airbench a second an epoch."""


class Trainer:
    """Fits one model on one dataset, writing everything through ``run``."""

    def __init__(self, config: TrainConfig, dataset: Dataset, model: torch.nn.Module,
                 loss: Loss, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                 augment: Augment, run: runs.RunDirectory, runtime: Runtime,
                 preprocessing: Preprocessing, callbacks: Sequence[Callback] = (),
                 monitors: dict[str, str] | None = None):
        self.config = config
        self.dataset = dataset
        self.model = model
        self.loss = loss
        self.run = run
        self.runtime = runtime
        self.preprocessing = preprocessing
        self.train_loader = BatchLoader(dataset.splits["train"], config.batch_size, preprocessing,
                                        training=True, augment=augment, seed=config.seed,
                                        rank=runtime.rank, world_size=runtime.world_size,
                                        device=runtime.device,
                                        resizing=config.resize_phases())
        self.optimizer = optimizer
        self.schedule = schedule
        self.scaler = torch.amp.GradScaler("cuda") if runtime.precision == "fp16" else None
        if runtime.distributed and config.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.network = self._wrap()
        self.ema = None
        if config.ema is not None:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        self.monitors = monitors or {}
        self.builtin = self._builtin_callbacks()
        self.user_callbacks = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.step = 0
        self.stop_training = False
        self.whitening_bias_fixed = False
        self.within_epoch: dict | None = None
        """Where in epoch ``epoch`` the state was saved: the batches done and the seconds spent
        (``within_metrics``: the running metrics then); None at an epoch's start."""
        self.within_metrics = RunningMetrics(loss.num_classes)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights evaluation and best.pt use: the moving average with --ema, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def _wrap(self) -> torch.nn.Module:
        """The model as the training step calls it: itself, or in a distributed run wrapped in
        DistributedDataParallel (which averages gradients over the processes). Checkpoints
        always hold the unwrapped model."""
        if not self.runtime.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def unfreeze_base(self) -> None:
        """Train the convolutional base too. DDP syncs the parameters that needed gradients
        when it wrapped the model, so a distributed model is wrapped again."""
        self.model.freeze_features(False, self.config.model.trainable_base_layers)
        if self.whitening_bias_fixed:  # its warm-up is over: it stays as it is
            fix_whitening_biases(self.model)
        self.network = self._wrap()

    def fix_whitening_bias(self) -> None:
        """Stop training the whitening layers' biases; a distributed model is wrapped again,
        as in unfreeze_base."""
        fix_whitening_biases(self.model)
        self.whitening_bias_fixed = True
        self.network = self._wrap()

    def eval_loader(self, split: str) -> BatchLoader:
        return BatchLoader(self.dataset.splits[split], self.config.batch_size * 2, self.preprocessing,
                           rank=self.runtime.rank, world_size=self.runtime.world_size,
                           device=self.runtime.device)

    def _builtin_callbacks(self) -> list[Callback]:
        cfg = self.config
        callbacks: list[Callback] = [ModelCheckpoint(self.monitors.get("checkpoint", cfg.checkpoint.monitor),
                                                     cfg.checkpoint.mode)]
        if cfg.early_stopping.patience is not None:
            es = cfg.early_stopping
            callbacks.append(EarlyStopping(self.monitors.get("early_stopping", es.monitor), es.patience,
                                           es.mode, es.min_delta, es.restore_best_weights,
                                           start_from_epoch=max(es.start_from_epoch, cfg.resized_epochs)))
        if cfg.model.unfreeze_after is not None:  # a frozen base: plan() checked it
            callbacks.append(UnfreezeBase(cfg.model.unfreeze_after))
        if cfg.model.whiten_bias_epochs is not None:
            callbacks.append(FixWhiteningBias(cfg.model.whiten_bias_epochs))
        if cfg.tensorboard:
            callbacks.append(TensorBoard(self.run.file(runs.TENSORBOARD)))
        return callbacks

    @property
    def callbacks(self) -> list[Callback]:
        return self.builtin + self.user_callbacks

    @property
    def checkpointer(self) -> ModelCheckpoint:
        return self.builtin[0]

    # checkpoints
    def model_checkpoint(self, epoch: int, logs: dict[str, float]) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model_spec(self.model, self.config.model.name, self.config.model.options),
            "classes": self.dataset.classes,
            "preprocessing": self.preprocessing.to_dict(),
            "loss": self.loss.spec(),
            "epoch": epoch + 1,
            "metrics": logs,
            "state_dict": self.eval_model.state_dict(),
        }

    def training_state(self, epoch: int, logs: dict[str, float]) -> dict:
        return {
            **self.model_checkpoint(epoch, logs),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.builtin],
            "rng": rng_state(),
            "history": self.history,
            "step": self.step,
            **({"scaler": self.scaler.state_dict()} if self.scaler else {}),
            **({"ema": self.ema.state_dict(), "model_state_dict": self.model.state_dict()} if self.ema else {}),
            "user_callbacks": [cb.state_dict() for cb in self.user_callbacks],
        }

    def within_epoch_state(self, batch: int, metrics: RunningMetrics, seconds: float) -> dict:
        """training_state after ``batch`` batches of epoch ``self.epoch``: its ``epoch`` stays
        the number of epochs finished."""
        self.within_epoch, self.within_metrics = {"epoch": self.epoch, "batch": batch, "seconds": seconds}, metrics
        return {**self.training_state(self.epoch - 1, self.history[-1] if self.history else {}),
                "within_epoch": {**self.within_epoch, "metrics": metrics.state_dict()}}

    def restore(self, state: dict) -> None:
        for callback in self.builtin:
            callback.before_restore(self, state["epoch"])
        self.model.load_state_dict(state["model_state_dict"] if self.ema else state["state_dict"])
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for callback, callback_state in zip(self.builtin, state["callbacks"], strict=True):
            callback.load_state_dict(callback_state)
        set_rng_state(state["rng"])
        if self.scaler and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        saved = state.get("user_callbacks", [])
        if len(saved) == len(self.user_callbacks):
            for callback, callback_state in zip(self.user_callbacks, saved, strict=True):
                callback.load_state_dict(callback_state)
        elif saved:
            self.run.log(f"{runs.LAST} holds the state of {len(saved)} callbacks, this run has "
                         f"{len(self.user_callbacks)}: theirs start fresh")
        self.history = list(state["history"])
        self.epoch = state["epoch"]
        self.step = state["step"]
        within = state.get("within_epoch")
        if within is not None:
            batch, seconds = within["batch"], within["seconds"]
            if within["epoch"] != self.epoch or not isinstance(batch, int) or not 0 < batch <= len(self.train_loader):
                raise ValueError(f"within_epoch: batch {batch!r} of epoch {within['epoch']!r} is not in epoch "
                                 f"{self.epoch + 1} of this data")
            if not isinstance(seconds, int | float) or not seconds >= 0:
                raise ValueError(f"within_epoch: {seconds!r} seconds")
            self.within_metrics.load_state_dict(within["metrics"], self.device)
            within = {"epoch": self.epoch, "batch": batch, "seconds": seconds}
        self.within_epoch = within
        if self.checkpointer.mend(self):
            self.run.log(f"{runs.BEST} was written again from {runs.LAST}: the run had stopped "
                         "between the two")

    # the loop
    def fit(self) -> list[dict[str, float]]:
        for callback in self.callbacks:
            callback.on_train_begin(self)
        training_size = None
        while self.epoch < self.config.epochs and not self.stop_training:
            epoch = self.epoch
            size = self.train_loader.training_size(epoch)
            if self.train_loader.resizing and size != training_size:
                self.run.log(f"Epoch {epoch + 1}: training images at {size[0]}x{size[1]} (progressive resizing)")
            training_size = size
            # processes must stop at the same step, which a signal to each cannot promise
            with (contextlib.nullcontext([]) if self.runtime.distributed
                  else interruptions_held(self.stopping_notice)) as interrupted:
                train_logs = self.train_epoch(epoch, interrupted)
                if train_logs is None:  # stopped and saved: the signal is delivered as the block ends
                    continue
                self.end_epoch(epoch, train_logs)
            for callback in self.user_callbacks:
                callback.on_epoch_end(self, epoch, self.history[-1])
            self.stop_training = self.runtime.broadcast(self.stop_training)
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def stopping_notice(self) -> None:
        self.run.log("stopping after this step, to save where the epoch is (Ctrl-C again stops at once)")

    def end_epoch(self, epoch: int, train_logs: dict[str, float]) -> None:
        """Validation, the epoch's line in the history and log, and its checkpoints."""
        seconds = train_logs.pop("seconds")
        logs = {"epoch": epoch + 1, **train_logs}
        if "val" in self.dataset.splits:
            # folded as the final evaluation folds it: in bf16 folding changes the rounding,
            # and the best epoch's logged figures must be the ones metrics.json reports. The
            # fold copies the model, so it is skipped where nothing folds (the tutorials' order)
            model = fold_batchnorm(self.eval_model) if foldable_pairs(self.eval_model) else self.eval_model
            logits = predict_logits(model, self.eval_loader("val"), self.runtime)
            labels = torch.from_numpy(self.dataset.splits["val"].labels)
            logs.update({f"val_{k}": v for k, v in running_metrics(logits, labels, self.loss).items()})
        else:
            logs[SAMPLE_LOSS] = self._training_sample_loss()
        first = self.optimizer.param_groups[0]  # its lr_scale may not be 1 (muon's fallback)
        logs.update(lr=first["lr"] / first.get("lr_scale", 1.0), seconds=seconds,
                    images_per_second=len(self.dataset.splits["train"]) / seconds)
        # every process decides on rank 0's numbers: early stopping, plateaus, best.pt
        logs = self.runtime.broadcast(logs)
        # the last updates can overflow every output, their own losses finite
        if "val_loss" in logs:
            self._check_finite(logs["val_loss"], epoch, "validation loss")
        else:
            self._check_finite(logs.pop(SAMPLE_LOSS), epoch, "loss of the first training images in evaluation mode")
        self.history.append(logs)
        self.run.write_history(self.history)
        self.run.log(epoch_line(epoch, self.config.epochs, logs))
        message = self.schedule.epoch_end(logs)
        if message:
            self.run.log(message)
        with self.run.holding(runs.BEST):  # best.pt only once last.pt knows its epoch
            for callback in self.builtin:
                callback.on_epoch_end(self, epoch, logs)
            self.epoch = epoch + 1
            self.within_epoch = None
            self.run.save_checkpoint(runs.LAST, self.training_state(epoch, logs))

    def _training_sample_loss(self) -> float:
        """The loss of the end-of-epoch weights on the first training images, in evaluation
        mode: without validation, the one look at what the epoch's last updates made of the
        outputs. The same images in every process."""
        train = self.dataset.splits["train"]
        first = slice(0, min(len(train), SAMPLE_IMAGES))
        sample = Split(train.gather(first), train.labels[first], train.ids[first])
        logits = predict_logits(self.eval_model, BatchLoader(sample, len(sample), self.preprocessing,
                                                             device=self.device), self.runtime)
        return running_metrics(logits, torch.from_numpy(sample.labels), self.loss)["loss"]

    def train_epoch(self, epoch: int, interrupted: Sequence[int] = ()) -> dict[str, float] | None:
        """The epoch's training metrics and seconds, from where ``within_epoch`` says it was
        saved; None where a signal came (``interrupted`` not empty) and the state after the
        step it came in was saved instead."""
        model, network, loss_fn, optimizer = self.model, self.network, self.loss, self.optimizer
        device, runtime, config = self.device, self.runtime, self.config
        model.train()
        metrics = RunningMetrics(loss_fn.num_classes)
        done, earlier_seconds = 0, 0.0
        if self.within_epoch is not None:
            done, earlier_seconds, metrics = self.within_epoch["batch"], self.within_epoch["seconds"], self.within_metrics
        loader = self.train_loader
        loader.set_epoch(epoch)
        augment, accumulate, batches = loader.augment, config.accumulate, len(loader)
        total = len(loader.labels)
        seen, started, last_refresh = 0, time.perf_counter(), 0.0
        # the running metrics of one process are not the epoch's when there are several
        minutes = None if runtime.distributed else config.checkpoint.within_epoch_minutes
        saving_every, last_save = None if minutes is None else minutes * 60, started
        with self.run.progress(batches, f"Epoch {epoch + 1}/{config.epochs}", done) as bar:
            for batch_index, (images, labels) in enumerate(loader.batches(done), start=done):
                first = batch_index - batch_index % accumulate
                closes = batch_index % accumulate == accumulate - 1 or batch_index == batches - 1
                if batch_index == first:  # a new optimizer step
                    lr = self.schedule.lr_at(self.step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    optimizer.zero_grad(set_to_none=True)
                    for callback in self.callbacks:
                        callback.on_batch_begin(self, self.step)
                if augment.mixes:
                    images, labels, partners, share = mix_batch(
                        images, labels, augment, random_stream(config.seed, "mix", epoch, batch_index))
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                with runtime.autocast():
                    logits = network(images)
                loss = loss_fn(logits, labels, weighted=True)
                if augment.mixes:
                    loss = share * loss + (1 - share) * loss_fn(logits, partners.to(device, non_blocking=True), weighted=True)
                # each batch's share of the step's samples (over every process and every batch
                # accumulated into it): the gradient of their mean, as one process, one batch
                step_samples = min((first + accumulate) * config.batch_size, total) - first * config.batch_size
                objective = loss * (len(labels) * runtime.world_size / step_samples)
                syncing = closes or not runtime.distributed
                with contextlib.nullcontext() if syncing else network.no_sync():
                    (self.scaler.scale(objective) if self.scaler else objective).backward()
                if closes:
                    self._optimizer_step()
                    for callback in self.callbacks:
                        callback.on_batch_end(self, self.step, loss.detach())
                with torch.no_grad():
                    metrics.update(loss, loss_fn.probabilities(logits), labels)
                seen += len(labels)
                bar.update(1)
                now = time.perf_counter()
                if now - last_refresh > PROGRESS_SECONDS:
                    # the only host sync: a few times a second, not every step
                    last_refresh = now
                    running = metrics.compute()
                    if not runtime.distributed:  # processes stop together, at the epoch's end
                        self._check_finite(running["loss"], epoch)
                    bar.set_postfix_str(f"{seen / (now - started):.0f} img/s - loss {running['loss']:.4f}"
                                        f" - accuracy {running['accuracy']:.4f}", refresh=False)
                if closes and (interrupted or (saving_every is not None and now - last_save >= saving_every)):
                    self._check_finite(metrics.compute()["loss"], epoch)  # a diverged state replaces no good one
                    seconds = earlier_seconds + now - started
                    self.run.save_checkpoint(runs.LAST, self.within_epoch_state(batch_index + 1, metrics, seconds))
                    last_save = time.perf_counter()
                    if interrupted:
                        self.run.log(f"stopped in epoch {epoch + 1} after batch {batch_index + 1} of {batches}, "
                                     f"which {runs.LAST} holds")
                        return None
        result = metrics.compute(runtime)
        self._check_finite(result["loss"], epoch)
        return {**result, "seconds": earlier_seconds + time.perf_counter() - started}

    def _optimizer_step(self) -> None:
        optimizer, scaler = self.optimizer, self.scaler
        if self.config.clip_grad_norm is not None:
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1

    def _check_finite(self, loss: float, epoch: int, what: str = "loss") -> None:
        if not math.isfinite(loss):
            where = f"epoch {epoch}" if self.within_epoch is None else \
                f"epoch {epoch + 1}, batch {self.within_epoch['batch']}"
            kept = (f"the last good checkpoint is {self.run.file(runs.LAST)} ({where})"
                    if epoch or self.within_epoch else "no epoch finished, so there is no checkpoint")
            raise TrainingDiverged.mentioning(lambda name: f"training diverged: the {what} became {loss} in epoch "
                                              f"{epoch + 1} (try a lower {name('optimizer.lr')}); {kept}")


def epoch_line(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs['seconds']:.1f}s",
             f"{logs['images_per_second']:.0f} img/s"]
    for key, value in logs.items():
        if key not in ("epoch", "seconds", "images_per_second", "lr"):
            parts.append(f"{key}: {value:.4f}")
    parts.append(f"lr: {logs['lr']:.3g}")
    return " - ".join(parts)

"""The training loop and the one function that turns a TrainConfig into a run directory."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import reports, runs
from ..config import TrainConfig
from ..data import Augment, BatchLoader, Dataset, load_dataset
from ..data.loader import mix_batch, pca_of
from ..errors import CnnlabError, ConfigError
from ..evaluation.evaluate import evaluate_split, predict_logits, predictions_csv, running_metrics
from ..evaluation.metrics import RunningMetrics
from ..models import MODELS, create_model, summarize
from ..models.weights import CHECKPOINT_FORMAT, load_weights, model_spec
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, TensorBoard, UnfreezeBase
from .checkpoint import load_checkpoint, rng_state, seed_everything, set_rng_state
from .device import autocast, configure_threads, resolve_device, resolve_precision
from .losses import Loss
from .optim import build_optimizer, param_groups
from .schedules import LRSchedule


class TrainingDiverged(CnnlabError):
    """The loss became NaN or infinite."""


class Trainer:
    """Fits one model on one dataset, writing everything through ``run``."""

    def __init__(self, config: TrainConfig, dataset: Dataset, model: torch.nn.Module,
                 loss: Loss, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                 augment: Augment, run: runs.RunDirectory, device: torch.device, precision: str,
                 preprocessing: dict, callbacks: Sequence[Callback] = ()):
        self.config = config
        self.dataset = dataset
        self.model = model
        self.loss = loss
        self.run = run
        self.device = device
        self.precision = precision
        self.preprocessing = preprocessing
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_loader = self.loader("train", config.batch_size, training=True, augment=augment,
                                        generator=self.generator)
        self.optimizer = optimizer
        self.schedule = schedule
        self.builtin = self._builtin_callbacks()
        self.user_callbacks = list(callbacks)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.step = 0
        self.stop_training = False

    def loader(self, split: str, batch_size: int, **kwargs) -> BatchLoader:
        return BatchLoader.with_preprocessing(self.dataset.splits[split], batch_size,
                                              self.preprocessing, **kwargs)

    def eval_loader(self, split: str) -> BatchLoader:
        return self.loader(split, self.config.batch_size * 2)

    def _monitor_name(self, name: str, option: str) -> str:
        if name.startswith("val_") and "val" not in self.dataset.splits:
            self.run.log(f"{option}: no validation split, monitoring '{name[4:]}' instead")
            return name[4:]
        return name

    def _builtin_callbacks(self) -> list[Callback]:
        cfg = self.config
        callbacks: list[Callback] = [
            ModelCheckpoint(self._monitor_name(cfg.checkpoint.monitor, "checkpoint.monitor"),
                            cfg.checkpoint.mode)]
        if cfg.early_stopping.patience is not None:
            es = cfg.early_stopping
            callbacks.append(EarlyStopping(
                self._monitor_name(es.monitor, "early_stopping.monitor"), es.patience, es.mode,
                es.min_delta, es.restore_best_weights))
        if cfg.model.unfreeze_after is not None:
            if not hasattr(self.model, "freeze_features"):
                raise ConfigError(f"model.unfreeze_after: {cfg.model.name} has no convolutional base")
            callbacks.append(UnfreezeBase(cfg.model.unfreeze_after))
        if cfg.tensorboard:
            try:
                callbacks.append(TensorBoard(self.run.file("tensorboard")))
            except ImportError:
                self.run.log("tensorboard: the tensorboard package is not installed; skipped")
        return callbacks

    @property
    def callbacks(self) -> list[Callback]:
        return self.builtin + self.user_callbacks

    # checkpoints
    def model_checkpoint(self, epoch: int, logs: dict[str, float]) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model_spec(self.model, self.config.model.name, self.config.model.options),
            "classes": self.dataset.classes,
            "preprocessing": self.preprocessing,
            "loss": self.loss.spec(),
            "epoch": epoch + 1,
            "metrics": logs,
            "state_dict": self.model.state_dict(),
        }

    def training_state(self, epoch: int, logs: dict[str, float]) -> dict:
        return {
            **self.model_checkpoint(epoch, logs),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.builtin],
            "rng": rng_state(self.generator),
            "history": self.history,
            "step": self.step,
        }

    def restore(self, state: dict) -> None:
        for callback in self.builtin:
            callback.before_restore(self, state["epoch"])
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        for callback, callback_state in zip(self.builtin, state["callbacks"], strict=True):
            callback.load_state_dict(callback_state)
        set_rng_state(state["rng"], self.generator)
        self.history = list(state["history"])
        self.epoch = state["epoch"]
        self.step = state["step"]

    # the loop
    def fit(self) -> list[dict[str, float]]:
        for callback in self.callbacks:
            callback.on_train_begin(self)
        while self.epoch < self.config.epochs and not self.stop_training:
            epoch = self.epoch
            started = time.perf_counter()
            train_logs = self.train_epoch(epoch)
            seconds = time.perf_counter() - started
            logs = {"epoch": epoch + 1, **train_logs}
            if "val" in self.dataset.splits:
                logits = predict_logits(self.model, self.eval_loader("val"), self.device, self.precision)
                labels = torch.from_numpy(self.dataset.splits["val"].labels)
                logs.update({f"val_{k}": v for k, v in running_metrics(logits, labels, self.loss).items()})
            logs.update(lr=self.optimizer.param_groups[0]["lr"], seconds=seconds,
                        images_per_second=len(self.dataset.splits["train"]) / seconds)
            self.history.append(logs)
            self.run.write_history(self.history)
            self.run.log(epoch_line(epoch, self.config.epochs, logs))
            message = self.schedule.epoch_end(logs)
            if message:
                self.run.log(message)
            for callback in self.builtin:
                callback.on_epoch_end(self, epoch, logs)
            self.epoch = epoch + 1
            self.run.save_checkpoint(runs.LAST, self.training_state(epoch, logs))
            for callback in self.user_callbacks:
                callback.on_epoch_end(self, epoch, logs)
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def train_epoch(self, epoch: int) -> dict[str, float]:
        model, loss_fn, optimizer = self.model, self.loss, self.optimizer
        model.train()
        metrics = RunningMetrics(loss_fn.num_classes)
        loader = self.train_loader
        seen, started, last_refresh = 0, time.perf_counter(), 0.0
        with self.run.progress(len(loader), f"Epoch {epoch + 1}/{self.config.epochs}") as bar:
            for images, labels in loader:
                lr = self.schedule.lr_at(self.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                if loader.augment.mixes:
                    images, labels, partners, share = mix_batch(images, labels, loader.augment,
                                                                self.generator)
                images = images.to(self.device, non_blocking=True)
                labels = labels.to(self.device, non_blocking=True)
                with autocast(self.device, self.precision):
                    logits = model(images)
                loss = loss_fn(logits, labels)
                if loader.augment.mixes:
                    partners = partners.to(self.device, non_blocking=True)
                    loss = share * loss + (1 - share) * loss_fn(logits, partners)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    metrics.update(loss, loss_fn.probabilities(logits), labels)
                self.step += 1
                seen += len(labels)
                bar.update(1)
                now = time.perf_counter()
                if now - last_refresh > 0.5 or bar.n == bar.total:
                    # the only host sync: a few times a second, not every step
                    last_refresh = now
                    running = metrics.compute()
                    self._check_finite(running["loss"], epoch)
                    bar.set_postfix_str(f"{seen / (now - started):.0f} img/s - loss {running['loss']:.4f}"
                                        f" - accuracy {running['accuracy']:.4f}", refresh=False)
        result = metrics.compute()
        self._check_finite(result["loss"], epoch)
        return result

    def _check_finite(self, loss: float, epoch: int) -> None:
        if not math.isfinite(loss):
            kept = (f"the last good checkpoint is {self.run.file(runs.LAST)} (epoch {epoch})"
                    if epoch else "no epoch finished, so there is no checkpoint")
            raise TrainingDiverged(f"training diverged: the loss became {loss} in epoch {epoch + 1} "
                                   f"(try a lower --lr); {kept}")


def epoch_line(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    parts = [f"Epoch {epoch + 1}/{epochs}", f"{logs['seconds']:.1f}s",
             f"{logs['images_per_second']:.0f} img/s"]
    for key, value in logs.items():
        if key not in ("epoch", "seconds", "images_per_second", "lr"):
            parts.append(f"{key}: {value:.4f}")
    parts.append(f"lr: {logs['lr']:.3g}")
    return " - ".join(parts)


def train(config: TrainConfig, callbacks: Sequence[Callback] = (), resume: str | Path | None = None,
          quiet: bool = False) -> runs.Run:
    """Train ``config`` (or continue the run directory ``resume``) and return the Run.

    When resuming, ``config`` should be the run's own config.yaml, optionally with more epochs;
    everything else (model, optimizer, schedule, callbacks, random states) comes from last.pt.
    """
    configure_threads()
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    info = MODELS.get(config.model.name)
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("--epochs and --batch-size: must be at least 1")
    input_size = tuple(config.data.crop or config.data.image_size or info.input_size[:2])
    image_size = tuple(config.data.image_size or input_size)
    for key, size in (("data.image_size", image_size), ("data.crop", input_size)):
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"{key}: expected [height, width]; got {list(size)}")
    if input_size[0] > image_size[0] or input_size[1] > image_size[1]:
        raise ConfigError(f"data.crop {list(input_size)} is larger than data.image_size {list(image_size)}")

    state, split_ids = None, None
    if resume is not None:
        run = runs.RunDirectory(Path(resume), quiet=quiet)
        state = load_checkpoint(run.file(runs.LAST))
        split_ids = json.loads(run.file(runs.SPLIT).read_text())

    seed_everything(config.seed)
    data = config.data
    dataset = load_dataset(data.spec, image_size, data.channels, data.val_split, config.seed,
                           data.subset, split_ids, progress=not quiet, options=data.options)
    loss = Loss(config.loss, dataset.num_classes, config.label_smoothing)
    model = create_model(config.model.name, loss.outputs, dataset.channels, input_size,
                         **config.model.options)
    model = model.to(device, memory_format=torch.channels_last)
    if config.model.base_lr_scale <= 0:
        raise ConfigError(f"model.base_lr_scale: must be positive; got {config.model.base_lr_scale}")
    optimizer = build_optimizer(config.optimizer, param_groups(model, config.model.base_lr_scale),
                                device)
    steps_per_epoch = math.ceil(len(dataset.splits["train"]) / config.batch_size)
    schedule = LRSchedule(config.schedule, config.optimizer.lr, steps_per_epoch, config.epochs)
    augment = Augment.parse(config.data.augment)
    weight_notes: list[str] = []
    if config.model.weights and state is None:
        load_weights(model, config.model.weights, weight_notes.append)
    if resume is None:
        # only once every option has been checked, so a bad one leaves no folder behind
        run = runs.RunDirectory.create(config.out, config.name or runs.run_name(config), quiet=quiet)
    for note in weight_notes:
        run.log(note)
    if state is not None:
        preprocessing = state["preprocessing"]
    else:
        mean, std = dataset.channel_stats()
        preprocessing = {"mean": mean, "std": std, "image_size": list(image_size),
                         "crop": list(input_size), "channels": dataset.channels,
                         "normalize": config.data.normalize,
                         "pca": pca_of(dataset.splits["train"]) if dataset.channels == 3 else None}

    trainer = Trainer(config, dataset, model, loss, optimizer, schedule, augment, run, device,
                      precision, preprocessing, callbacks)
    if state is not None:
        trainer.restore(state)
        run.log(f"resuming {run.path} after epoch {trainer.epoch} of {config.epochs}")
    else:
        write_run_files(run, config, dataset, model, input_size)
    run.write_text(runs.CONFIG, config.to_yaml())
    run.log(f"run {run.path}: {config.model.name} on {config.data.spec} "
            f"({', '.join(f'{k} {len(v)}' for k, v in dataset.splits.items())}), "
            f"{device.type} {precision}, {torch.get_num_threads()} threads")

    try:
        trainer.fit()
    except KeyboardInterrupt:
        run.log(f"interrupted in epoch {trainer.epoch + 1}; continue with: cnnlab train --resume {run.path}")
        raise

    report = final_evaluation(trainer)
    run.log(f"run directory: {run.path}")
    if report is not None:
        run.log(f"report: {report}")
    return runs.load_run(run.path)


def write_run_files(run: runs.RunDirectory, config: TrainConfig, dataset: Dataset,
                    model: torch.nn.Module, image_size: tuple[int, int]) -> None:
    run.write_json(runs.CLASSES, dataset.classes)
    run.write_json(runs.SPLIT, dataset.split_ids())
    summary = summarize(model, (*image_size, dataset.channels), config.model.name)
    run.write_text(runs.SUMMARY, summary.table() + "\n")
    run.write_json("summary.json", summary.to_dict())
    run.write_json("data.json", {
        "spec": dataset.spec, "classes": dataset.classes, "image_size": list(dataset.image_size),
        "channels": dataset.channels,
        "counts": {name: len(split) for name, split in dataset.splits.items()},
        "unreadable": dataset.unreadable, "notes": dataset.notes, "cache": dataset.cache,
    })
    if dataset.cache:
        state = "read from" if dataset.cache["hit"] else "decoded once into"
        run.log(f"images {state} the cache {dataset.cache['file']}")
    for path, reason in dataset.unreadable.items():
        run.log(f"skipped unreadable image {path}: {reason}")


def final_evaluation(trainer: Trainer) -> Path | None:
    """Evaluate the best checkpoint on validation and test; write metrics.json, predictions,
    the pictures and report.html."""
    run = trainer.run
    dataset = trainer.dataset
    best = load_checkpoint(run.file(runs.BEST))
    trainer.model.load_state_dict(best["state_dict"])
    results = {"checkpoint": runs.BEST, "epoch": best["epoch"]}
    for split in ("val", "test"):
        if split not in trainer.dataset.splits:
            continue
        part = dataset.splits[split]
        metrics, probs = evaluate_split(trainer.model, part, trainer.eval_loader(split), trainer.loss,
                                        dataset.classes, trainer.device, trainer.precision)
        results[split] = metrics
        run.write_text(f"predictions-{split}.csv", predictions_csv(part, probs, dataset.classes))
        if run.main_process:
            reports.split_pictures(run.path, split, part, probs, metrics, dataset.classes)
        summary = f"{split}: accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}"
        if "top5_accuracy" in metrics:
            summary += f", top-5 {metrics['top5_accuracy']:.4f}"
        run.log(f"best epoch {best['epoch']} on {summary}")
    run.write_json(runs.METRICS, results)
    if run.main_process:
        reports.run_pictures(run.path, trainer.history, best["epoch"], dataset.splits["train"],
                             dataset.classes)
        return reports.write_report(run.path)
    return None

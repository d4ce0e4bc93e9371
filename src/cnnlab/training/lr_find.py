"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
2017; fastai's lr_find): a few training steps while the learning rate rises exponentially,
the smoothed loss recorded at each, and a suggestion where the loss falls fastest."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import runs
from ..config import TrainConfig
from ..data import BatchLoader, load_dataset
from ..errors import ConfigError
from ..evaluation.losses import Loss
from ..io import write_atomic
from ..models import place_model
from ..reports import plots
from .optim import build_optimizer, param_groups
from .rng import seed_everything
from .setup import model_to_train, plan

SMOOTHING = 0.98
"""The exponential moving average of the loss (fastai's), debiased for its first steps."""
DIVERGED = 4.0
"""The test stops once the smoothed loss is this many times its lowest."""


@dataclass
class LRFinding:
    """What the range test found: the learning rates tried, the losses they gave, and two
    suggestions."""

    lrs: list[float]
    losses: list[float]
    """Smoothed training losses, one per step."""
    steepest: float
    """Where the smoothed loss falls fastest against log(lr): the suggestion."""
    minimum: float
    """A tenth of the lr of the lowest loss (the older rule of thumb)."""

    def __repr__(self) -> str:  # not every step's lr and loss
        tried = f"; {len(self.lrs)} steps from {self.lrs[0]:.1e} to {self.lrs[-1]:.1e}" if self.lrs else ""
        return f"LRFinding(steepest={self.steepest:.2e}, minimum={self.minimum:.2e}{tried})"


def find_lr(config: TrainConfig, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            plot: Path | None = None) -> LRFinding:
    """``steps`` training steps of ``config`` while the lr rises exponentially from ``start_lr``
    to ``end_lr`` (fewer where the loss blows up first), drawn in ``plot`` if given; nothing
    else is written."""
    if steps < 5:
        raise ConfigError.about("steps", f": must be at least 5; got {steps}")
    if not 0 < start_lr < end_lr:
        raise ConfigError.about("start_lr", lambda name: f" {start_lr}: must be above 0 and below {name('end_lr')} "
                                f"({end_lr})")
    if plot is not None:
        plot = runs.refuse_run_file(plot, "a picture", (".png",))
    checked = plan(config, training=False)
    config, runtime = checked.config, checked.runtime
    seed_everything(config.seed)
    data = config.data
    dataset = load_dataset(data.spec, checked.image_size, checked.channels, data.val_split, config.seed,
                           data.subset, options=data.options, source=checked.source)
    loss_fn = Loss(config.loss, dataset.num_classes, config.label_smoothing)
    # from the weights a training would start from: the lr that fine-tunes them differs from
    # one that trains afresh
    model = model_to_train(config, loss_fn.outputs, dataset.channels, checked.input_size, classes=dataset.classes)
    model = place_model(model, config.model.name, runtime.device, runtime.precision, training=True)
    optimizer = build_optimizer(config.optimizer, param_groups(model, config.optimizer, config.model.base_lr_scale), runtime.device)
    preprocessing = checked.preprocessing(dataset)
    loader = BatchLoader(dataset.splits["train"], config.batch_size, preprocessing, training=True,
                         augment=checked.augment, seed=config.seed, device=runtime.device)
    lrs, losses, average, best = [], [], 0.0, math.inf
    model.train()
    step, epoch = 0, 0
    while step < steps:
        loader.set_epoch(epoch)
        for images, labels in loader:
            lr = start_lr * (end_lr / start_lr) ** (step / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            with runtime.autocast():
                logits = model(images.to(runtime.device, non_blocking=True))
            loss = loss_fn(logits, labels.to(runtime.device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            average = SMOOTHING * average + (1 - SMOOTHING) * value
            smoothed = average / (1 - SMOOTHING ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            step += 1
            best = min(best, smoothed)
            if step >= steps or not math.isfinite(smoothed) or smoothed > DIVERGED * best:
                step = steps
                break
        epoch += 1
    finding = suggest(lrs, losses)
    if plot is not None:
        data_png = plots.lr_curve(finding.lrs, finding.losses, finding.steepest, finding.minimum)
        write_atomic(plot, lambda handle: handle.write(data_png))
    return finding


def suggest(lrs: list[float], losses: list[float]) -> LRFinding:
    """The steepest descent of the loss against log(lr) (over the stretch before it blows up),
    and a tenth of the lr of the lowest loss."""
    finite = [i for i, value in enumerate(losses) if math.isfinite(value)]
    if len(finite) < 3:
        raise ConfigError.mentioning(lambda name: f"the loss was not finite from the start; lower {name('start_lr')}")
    lrs_f = np.asarray([lrs[i] for i in finite])
    loss_f = np.asarray([losses[i] for i in finite])
    lowest = int(np.argmin(loss_f))
    slopes = np.gradient(loss_f[: max(lowest, 2) + 1], np.log(lrs_f[: max(lowest, 2) + 1]))
    return LRFinding(lrs_f.tolist(), loss_f.tolist(), float(lrs_f[int(np.argmin(slopes))]),
                     float(lrs_f[lowest] / 10))

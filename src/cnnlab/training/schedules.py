"""Learning-rate schedules, computed from the optimizer step so that a per-step schedule
(Keras' ExponentialDecay) and per-epoch ones share one code path; reduce-on-plateau scales on
top from the epoch's metrics."""

from __future__ import annotations

import math

from ..config import ScheduleConfig
from ..errors import ConfigError
from .monitor import Monitor

SCHEDULES = ("constant", "exponential", "step", "multistep", "cosine", "linear", "onecycle", "plateau")


class LRSchedule:
    def __init__(self, cfg: ScheduleConfig, base_lr: float, steps_per_epoch: int, epochs: int,
                 monitor: str | None = None):
        if cfg.name not in SCHEDULES:
            raise ConfigError.about("schedule.name", f": unknown schedule '{cfg.name}'; valid: {', '.join(SCHEDULES)}")
        if not cfg.warmup_epochs >= 0:
            raise ConfigError.about("schedule.warmup_epochs", f": must be 0 or more; got {cfg.warmup_epochs:g}")
        if cfg.name == "exponential" and cfg.decay_steps < 1:
            raise ConfigError.about("schedule.decay_steps", ": must be at least 1")
        if cfg.name == "step" and cfg.step_size < 1:
            raise ConfigError.about("schedule.step_size", ": must be at least 1 epoch")
        if cfg.name == "onecycle" and not (0 < cfg.pct_start < 1 and cfg.div_factor > 0 and cfg.final_div_factor > 0):
            raise ConfigError("schedule: onecycle needs 0 < pct_start < 1 and positive div_factor, final_div_factor")
        self.cfg = cfg
        self.base_lr = base_lr
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.total_steps = self.steps_per_epoch * epochs
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.plateau_scale = 1.0
        self.monitor = monitor or cfg.monitor
        self.plateau = Monitor(self.monitor, "auto", cfg.min_delta) if cfg.name == "plateau" else None
        self.wait = 0
        self.cooldown_left = 0

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step ``step`` (0-based, counted over the whole run)."""
        cfg = self.cfg
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        step -= self.warmup_steps
        epoch = step // self.steps_per_epoch
        if cfg.name == "exponential":
            power = step / cfg.decay_steps
            return self.base_lr * cfg.decay_rate ** (math.floor(power) if cfg.staircase else power)
        if cfg.name == "step":
            return self.base_lr * cfg.gamma ** (epoch // cfg.step_size)
        if cfg.name == "multistep":
            return self.base_lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        if cfg.name in ("cosine", "linear"):
            progress = min(step / max(self.total_steps - self.warmup_steps, 1), 1.0)
            fall = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.name == "cosine" else 1 - progress
            return cfg.min_lr + (self.base_lr - cfg.min_lr) * fall
        if cfg.name == "onecycle":
            # PyTorch's OneCycleLR (cosine annealing both ways): base_lr is the peak
            span = max(self.total_steps - self.warmup_steps, 2)
            peak = max(cfg.pct_start * span - 1, 1.0)  # the step at the top, as torch counts
            first, last = self.base_lr / cfg.div_factor, self.base_lr / cfg.div_factor / cfg.final_div_factor
            if step <= peak:
                return _cosine(first, self.base_lr, step / peak)
            return _cosine(self.base_lr, last, min((step - peak) / max(span - 1 - peak, 1.0), 1.0))
        if cfg.name == "plateau":
            return max(self.base_lr * self.plateau_scale, cfg.min_lr)
        return self.base_lr

    def epoch_end(self, logs: dict[str, float]) -> str | None:
        """Update reduce-on-plateau from the epoch's metrics; returns a message when it acts."""
        if self.plateau is None:
            return None
        if self.plateau.update(self.plateau.value(logs)):
            self.wait = 0
        elif self.cooldown_left > 0:
            self.cooldown_left -= 1
        else:
            self.wait += 1
            if self.wait >= self.cfg.patience:
                old = self.base_lr * self.plateau_scale
                self.plateau_scale *= self.cfg.factor
                self.wait, self.cooldown_left = 0, self.cfg.cooldown
                new = max(self.base_lr * self.plateau_scale, self.cfg.min_lr)
                return f"{self.monitor} has not improved for {self.cfg.patience} epochs: lr {old:.3g} -> {new:.3g}"
        return None

    def state_dict(self) -> dict:
        return {"plateau_scale": self.plateau_scale, "wait": self.wait,
                "cooldown_left": self.cooldown_left,
                "plateau": self.plateau.state_dict() if self.plateau else None}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_scale = state["plateau_scale"]
        self.wait = state["wait"]
        self.cooldown_left = state["cooldown_left"]
        if self.plateau is not None and state["plateau"] is not None:
            self.plateau.load_state_dict(state["plateau"])


def _cosine(start: float, end: float, progress: float) -> float:
    """From ``start`` at progress 0 to ``end`` at 1 along half a cosine."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * progress))

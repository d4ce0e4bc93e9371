"""Tracking the best value of a monitored metric, shared by early stopping, checkpointing and
reduce-on-plateau."""

from __future__ import annotations

import math

from ..errors import ConfigError


class Monitor:
    def __init__(self, name: str, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"monitor mode for {name}: must be auto, min or max; got '{mode}'")
        if mode == "auto":
            mode = "max" if "acc" in name or "auc" in name else "min"
        self.name = name
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = -1

    def value(self, logs: dict[str, float]) -> float:
        if self.name not in logs:
            raise ConfigError(f"monitor '{self.name}' is not a logged metric; "
                              f"available: {', '.join(sorted(logs))}")
        return logs[self.name]

    def is_better(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int = -1) -> bool:
        """Record ``value``; True when it improves on the best by more than min_delta."""
        if self.is_better(value):
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]

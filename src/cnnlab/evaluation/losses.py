"""Losses over logits. cnnlab encodes the labels for the chosen loss; a loss that does not fit
the labels is an error, never silently wrong numbers."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import ConfigError

LOSSES = ("sparse_ce", "categorical_ce", "binary_ce")


class Loss:
    """``sparse_ce``: integer labels. ``categorical_ce``: one-hot or soft label rows (integer
    labels are one-hot encoded). ``binary_ce``: two classes (one logit, sigmoid) or multi-label
    0/1 rows (one sigmoid per class)."""

    def __init__(self, name: str, num_classes: int, label_smoothing: float = 0.0,
                 multilabel: bool = False, class_weights: torch.Tensor | None = None):
        if name not in LOSSES:
            raise ConfigError.about("loss", f": unknown loss '{name}'; valid: {', '.join(LOSSES)}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError.about("label_smoothing", f": must be in [0, 1); got {label_smoothing}")
        if multilabel and name != "binary_ce":
            raise ConfigError.about("loss", f" {name}: multi-label targets need binary_ce")
        if name == "binary_ce" and not multilabel and num_classes != 2:
            raise ConfigError.about("loss", f" binary_ce: fits two classes or multi-label targets; this data has "
                                    f"{num_classes} classes with one label each: use sparse_ce or categorical_ce")
        self.name = name
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.multilabel = multilabel
        self.class_weights = class_weights
        """Per-class weights of the training loss (``weighted``), Keras' class_weight."""

    def spec(self) -> dict:
        """What a checkpoint stores to rebuild this loss."""
        return {"name": self.name, "label_smoothing": self.label_smoothing}

    @classmethod
    def from_spec(cls, spec: dict, num_classes: int) -> Loss:
        return cls(spec["name"], num_classes, spec["label_smoothing"])

    @property
    def outputs(self) -> int:
        """Logits the model's head must produce."""
        return 1 if self.name == "binary_ce" and not self.multilabel else self.num_classes

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        """The mean loss; ``weighted``: each sample's loss times its class's weight first."""
        per_sample = self.per_sample(logits, targets)
        if weighted and self.class_weights is not None:
            weights = self.class_weights.to(per_sample.device, per_sample.dtype)
            if targets.dim() == 1 and not targets.dtype.is_floating_point:
                per_sample = per_sample * weights[targets]
            elif not self.multilabel:
                per_sample = per_sample * (targets.float() @ weights)
        return per_sample.mean()

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.name == "sparse_ce":
            if targets.dtype.is_floating_point or targets.dim() != 1:
                raise ConfigError.about("loss", " sparse_ce: needs integer class labels; for one-hot or "
                                        "soft label rows use categorical_ce")
            return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing, reduction="none")
        if self.name == "categorical_ce":
            rows = self._rows(targets)
            if self.label_smoothing:
                rows = rows * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
            return torch.sum(-rows * F.log_softmax(logits, dim=1), dim=1)
        if self.multilabel:
            rows = self._rows(targets)
        else:
            if targets.dtype.is_floating_point or targets.dim() != 1:
                raise ConfigError.about("loss", " binary_ce: two-class data needs integer labels 0/1")
            rows = targets.float()[:, None]
        if self.label_smoothing:
            rows = rows * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, rows, reduction="none").mean(1)

    def _rows(self, targets: torch.Tensor) -> torch.Tensor:
        if targets.dim() == 1 and not targets.dtype.is_floating_point:
            return F.one_hot(targets, self.num_classes).float()
        if targets.dim() != 2 or targets.shape[1] != self.num_classes:
            raise ConfigError.about("loss", f" {self.name}: label rows must have {self.num_classes} "
                                    f"columns; got shape {tuple(targets.shape)}")
        return targets.float()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, classes) probabilities: softmax, or sigmoid for binary_ce."""
        logits = logits.float()
        if self.name != "binary_ce":
            return torch.softmax(logits, dim=1)
        positive = torch.sigmoid(logits)
        return positive if self.multilabel else torch.cat([1 - positive, positive], dim=1)

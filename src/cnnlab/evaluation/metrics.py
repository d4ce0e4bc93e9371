"""Metrics: running sums during training, kept on the device and read back only when asked
(no host sync per step), and the full per-class report at evaluation (scikit-learn, imported
only there: predicting needs none of it)."""

from __future__ import annotations

import warnings

import numpy as np
import torch


class RunningMetrics:
    """Loss, accuracy, top-5 accuracy (more than 5 classes) and MSE between the probabilities
    and one-hot labels, summed over batches as tensors on the device of the values."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.top_k = 5 if num_classes > 5 else 0
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sums: torch.Tensor | None = None

    def update(self, loss: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor) -> None:
        n = labels.shape[0]
        probs = probs.detach().float()
        one_hot = torch.nn.functional.one_hot(labels, self.num_classes).float()
        correct = (probs.argmax(1) == labels).sum()
        top_k = ((probs.topk(self.top_k, 1).indices == labels[:, None]).any(1).sum()
                 if self.top_k else correct)
        squared = ((probs - one_hot) ** 2).mean(1).sum()
        batch = torch.stack([loss.detach().float() * n, correct.float(), top_k.float(), squared])
        self.sums = batch.double() if self.sums is None else self.sums + batch.double()
        self.count += n

    def state_dict(self) -> dict:
        return {"count": self.count, "sums": self.sums}

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        count, sums = state["count"], state["sums"]
        if not isinstance(count, int) or count < 0 or not (
                (sums is None and count == 0) or (isinstance(sums, torch.Tensor) and sums.shape == (4,))):
            raise ValueError(f"running metrics of {count!r} samples summed as {type(sums).__name__}")
        self.count, self.sums = count, None if sums is None else sums.to(device, torch.float64)

    def compute(self, runtime=None) -> dict[str, float]:
        """The means so far: the one place the sums come back to the host. With a distributed
        ``runtime``, the means over every rank's samples (every rank must call it)."""
        sums, count = self.sums, self.count
        if runtime is not None and runtime.distributed:
            local = torch.zeros(5, dtype=torch.float64, device=runtime.device)
            if sums is not None:
                local[:4] = sums
            local[4] = count
            total = runtime.sum(local)
            sums, count = total[:4], int(total[4].item())
        if count == 0:
            return {}
        loss, correct, top_k, squared = (sums / count).tolist()
        result = {"loss": loss, "accuracy": correct}
        if self.top_k:
            result["top5_accuracy"] = top_k
        result["mse"] = squared
        return result


def top_classes(probs: np.ndarray, k: int) -> np.ndarray:
    """(N, k) the k most probable classes of each row, most probable first; of equal
    probabilities (a bf16 model's often are) the lower class first, as ``argmax``, and so the
    accuracy, takes it."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


def classification_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str],
                           averaged: list[int] | None = None) -> dict:
    """Per-class precision, recall, F1 and support with macro and weighted averages, the
    confusion matrix and one-vs-rest ROC AUC (micro and macro).

    Classes that are never predicted or absent from ``labels`` get 0 precision/recall where
    undefined (never a warning turned into a wrong number), and are left out of the macro AUC,
    which is undefined for them. The precision/recall/F1 averages are over every class, or over
    ``averaged`` (the classes of data that holds only some of a model's classes, which should
    not be marked down for the others).
    """
    from sklearn import metrics as skm

    num_classes = len(classes)
    predicted = probs.argmax(1)
    indices = list(range(num_classes))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]),
               "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predicted, labels=averaged if averaged is not None else indices, average=average,
            zero_division=0)
        averages[average] = {"precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(len(labels))}
    confusion = skm.confusion_matrix(labels, predicted, labels=indices)
    return {
        "per_class": per_class,
        "averages": averages,
        "confusion_matrix": confusion.tolist(),
        "roc_auc": roc_auc(probs, labels, num_classes),
        "calibration": calibration(probs, labels),
    }


def calibration(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """How far the top-1 probability is from the accuracy it promises: the expected calibration
    error over ``bins`` equal-width bins of that probability (Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017: 15 bins), and each bin's range, count, accuracy and
    mean confidence (None where empty) for the reliability diagram."""
    confidence = probs.max(1)
    right = probs.argmax(1) == labels
    # a probability of exactly 1 belongs to the last bin, not to one past it
    index = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    rights = np.bincount(index, weights=right, minlength=bins)
    confidences = np.bincount(index, weights=confidence, minlength=bins)
    table = [{"low": k / bins, "high": (k + 1) / bins, "count": int(counts[k]),
              "accuracy": float(rights[k] / counts[k]) if counts[k] else None,
              "confidence": float(confidences[k] / counts[k]) if counts[k] else None} for k in range(bins)]
    return {"ece": float(np.abs(rights - confidences).sum()) / max(len(labels), 1), "bins": table}


def roc_auc(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """One-vs-rest AUC per class with micro and macro averages; None where undefined."""
    from sklearn import metrics as skm

    one_hot = np.eye(num_classes, dtype=np.int64)[labels]
    per_class: list[float | None] = []
    for c in range(num_classes):
        positives = one_hot[:, c].sum()
        if positives == 0 or positives == len(labels):
            per_class.append(None)
            continue
        per_class.append(float(skm.roc_auc_score(one_hot[:, c], probs[:, c])))
    defined = [v for v in per_class if v is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        micro = (float(skm.roc_auc_score(one_hot.ravel(), probs.ravel()))
                 if 0 < one_hot.sum() < one_hot.size else None)
    return {"micro": micro, "macro": float(np.mean(defined)) if defined else None,
            "per_class": per_class}

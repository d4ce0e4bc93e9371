from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cnnlab.data import Split
from cnnlab.evaluation.evaluate import predictions_csv
from cnnlab.evaluation.metrics import (
    RunningMetrics,
    calibration,
    classification_metrics,
    top_classes,
)
from cnnlab.reports.html import reported_classes


def test_running_metrics_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0, 0, 0], [0.1, 0.6, 0.3, 0, 0, 0], [0.2, 0.5, 0.3, 0, 0, 0]])
    labels = torch.tensor([0, 2, 2])
    metrics = RunningMetrics(6)
    metrics.update(torch.tensor(0.5), probs[:2], labels[:2])
    metrics.update(torch.tensor(2.0), probs[2:], labels[2:])
    result = metrics.compute()
    assert result["loss"] == pytest.approx((0.5 * 2 + 2.0) / 3)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["top5_accuracy"] == pytest.approx(1.0)
    squared = [(0.09 + 0.04 + 0.01) / 6, (0.01 + 0.36 + 0.49) / 6, (0.04 + 0.25 + 0.49) / 6]
    assert result["mse"] == pytest.approx(sum(squared) / 3)
    small = RunningMetrics(3)
    small.update(torch.tensor(1.0), probs[:, :3], labels)
    assert "top5_accuracy" not in small.compute()


def test_calibration_by_hand():
    """Expected calibration error (Guo et al., "On Calibration of Modern Neural Networks",
    2017): the sample-weighted gap between accuracy and mean top-1 confidence over 15 bins of
    equal width; a network that says 95% and is right 75% of the time is over-confident."""
    probs = np.array([[0.95, 0.05]] * 4 + [[0.35, 0.65]] * 6)
    labels = np.array([0, 0, 0, 1] + [1, 1, 1, 0, 0, 0])
    result = calibration(probs, labels)
    assert result["ece"] == pytest.approx(0.4 * 0.2 + 0.6 * 0.15)
    assert len(result["bins"]) == 15 and sum(b["count"] for b in result["bins"]) == 10
    filled = [(b["count"], b["accuracy"], b["confidence"]) for b in result["bins"] if b["count"]]
    assert filled == [(6, pytest.approx(0.5), pytest.approx(0.65)), (4, pytest.approx(0.75), pytest.approx(0.95))]
    assert result["bins"][9]["low"] == pytest.approx(0.6) and result["bins"][9]["high"] == pytest.approx(2 / 3)
    assert all(b["accuracy"] is None and b["confidence"] is None for b in result["bins"] if not b["count"])
    certain = calibration(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))  # 1.0 is in the last bin
    assert certain["ece"] == 0 and certain["bins"][-1]["count"] == 2


def test_a_calibrated_model_has_a_small_calibration_error():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 20000)
    right = rng.random(20000) < confidence  # right exactly as often as it says
    probs = np.stack([confidence, 1 - confidence], 1)
    labels = np.where(right, 0, 1)
    assert calibration(probs, labels)["ece"] < 0.02
    assert calibration(np.stack([np.full(20000, 0.99), np.full(20000, 0.01)], 1), labels)["ece"] > 0.3


def test_classification_metrics_hold_the_calibration():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    result = classification_metrics(probs, np.array([0, 1, 1]), ["a", "b"])
    assert result["calibration"] == calibration(probs, np.array([0, 1, 1]))


def test_report_with_never_predicted_and_absent_classes():
    # classes: a, b, c, d; d never occurs; c occurs but is never predicted
    labels = np.array([0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0])
    probs = np.full((5, 4), 0.05)
    probs[np.arange(5), predicted] = 0.85
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = classification_metrics(probs, labels, ["a", "b", "c", "d"])
    per_class = report["per_class"]
    assert per_class["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["b"]["precision"] == pytest.approx(2 / 3) and per_class["b"]["recall"] == 1.0
    assert per_class["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per_class["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    f1_b = 2 * (2 / 3) / (2 / 3 + 1)
    assert report["averages"]["macro"]["f1"] == pytest.approx((0.5 + f1_b) / 4)
    assert report["averages"]["weighted"]["f1"] == pytest.approx((0.5 * 2 + f1_b * 2) / 5)
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    auc = report["roc_auc"]
    assert auc["per_class"][3] is None  # undefined for a class absent from the split
    assert auc["macro"] == pytest.approx(np.mean([a for a in auc["per_class"] if a is not None]))
    assert 0.0 <= auc["micro"] <= 1.0


def test_reported_classes_are_those_in_the_data_or_predicted():
    # a: in the data and predicted; b: predicted only; c: in the data, never predicted; d: neither
    labels = np.array([0, 0, 2])
    predicted = np.array([0, 1, 0])
    probs = np.full((3, 4), 0.05)
    probs[np.arange(3), predicted] = 0.85
    report = classification_metrics(probs, labels, ["a", "b", "c", "d"])
    assert reported_classes(report) == ["a", "b", "c"]


class ViewRecorder(torch.nn.Module):
    """Scores every image by its left half's pixel sum against its right half's, and keeps
    the views it was shown."""

    def __init__(self):
        super().__init__()
        self.views = []

    def forward(self, x):
        self.views.append(x.clone())
        half = x.shape[3] // 2
        return torch.stack([x[..., :half].sum((1, 2, 3)), x[..., half:].sum((1, 2, 3))], 1)


@pytest.mark.parametrize("tta, count, mirrored", [(None, 1, False), ("flip", 2, True), ("shift", 3, False),
                                                  ("flip-shift", 6, True)])
def test_test_time_views_of_each_mode(tta, count, mirrored):
    """shift: the image moved a pixel up-left and down-right, none mirrored, for data whose
    mirror image is another class (a mirrored sign)."""
    from cnnlab.data import BatchLoader, Preprocessing
    from cnnlab.data.dataset import Split
    from cnnlab.evaluation.inference import predict_logits
    from cnnlab.runtime import Runtime

    pixels = np.zeros((2, 6, 6, 1), np.uint8)
    pixels[:, :, :2] = 200  # bright on the left
    split = Split(pixels, np.zeros(2, np.int64), ["a", "b"])
    model = ViewRecorder()
    predict_logits(model, BatchLoader(split, 2, Preprocessing((0.5,), (0.25,))), Runtime.create("cpu", "fp32"), tta)
    assert len(model.views) == count
    left_brighter = [bool(view[..., :3].sum() > view[..., 3:].sum()) for view in model.views]
    assert (not all(left_brighter)) == mirrored


def test_top_classes_break_ties_as_accuracy_does():
    """A bf16 model's probabilities tie (grey gtsrb-resnet9, seed 0: classes 21 and 29 both at
    0.077935 for one validation image). metrics.json counted the image right (argmax takes the
    lower class), predictions-val.csv and predict named 29 first (an unstable sort): 2,109 right
    in one file of the same evaluation, 2,108 in the other."""
    probs = np.full((3, 43), 0.01, dtype=np.float32)
    probs[0, [21, 29]] = 0.3
    probs[1, [40, 2, 7]] = 0.2
    probs[2, 5] = 0.5
    order = top_classes(probs, 3)
    assert order[:, 0].tolist() == probs.argmax(1).tolist() == [21, 2, 5]
    assert order.tolist()[:2] == [[21, 29, 0], [2, 7, 40]]
    split = Split(np.zeros((3, 1, 1, 1), np.uint8), probs.argmax(1), ["a", "b", "c"])
    rows = predictions_csv(split, probs, [str(c) for c in range(43)]).splitlines()[1:]
    assert [row.split(",")[2:4] for row in rows] == [["21", "1"], ["2", "1"], ["5", "1"]]


@given(st.lists(st.lists(st.integers(0, 4), min_size=20, max_size=20), min_size=1, max_size=5),
       st.integers(1, 20))
def test_top_classes_are_the_k_largest_in_order_lowest_class_first_on_ties(rows, k):
    probs = np.asarray(rows, dtype=np.float32)
    order = top_classes(probs, k)
    assert order.shape == (len(rows), k)
    for row, chosen in zip(probs, order, strict=True):
        expected = sorted(range(20), key=lambda c: (-row[c], c))[:k]
        assert chosen.tolist() == expected

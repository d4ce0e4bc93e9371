"""Evaluating a model on a split: the one function behind validation during training, the
final metrics.json, and ``cnnlab evaluate``."""

from __future__ import annotations

import csv
import io

import numpy as np
import torch
from torch import nn

from ..data import BatchLoader, Split
from ..data.loader import ten_crops
from ..errors import CnnlabError
from ..training.device import autocast
from ..training.losses import Loss
from .metrics import RunningMetrics, classification_metrics

TTA_MODES = ("flip", "10crop")


@torch.no_grad()
def predict_logits(model: nn.Module, loader: BatchLoader, device: torch.device,
                   precision: str, tta: str | None = None) -> torch.Tensor:
    """Logits of every sample. With test-time augmentation, the log of the softmax averaged
    over several views, which every softmax loss and metric reads like logits: ``flip``, the
    image and its mirror image; ``10crop``, the four corner crops, the centre crop and their
    mirror images (the paper's test procedure)."""
    if tta is not None and tta not in TTA_MODES:
        raise CnnlabError(f"--tta: must be one of {', '.join(TTA_MODES)}; got '{tta}'")
    model.eval()
    outputs = []
    for images, _ in loader.uncropped() if tta == "10crop" else loader:
        with autocast(device, precision):
            if tta is None:
                outputs.append(model(images.to(device, non_blocking=True)).float().cpu())
                continue
            if tta == "10crop":
                views = [loader.standardize(v) for v in ten_crops(images, loader.crop)]
            else:
                views = [images, images.flip(3)]
            probs = torch.stack([torch.softmax(model(v.to(device, non_blocking=True)).float(), 1)
                                 for v in views]).mean(0)
            outputs.append(torch.log(probs.clamp_min(1e-12)).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def running_metrics(logits: torch.Tensor, labels: torch.Tensor, loss: Loss) -> dict[str, float]:
    metrics = RunningMetrics(loss.num_classes)
    metrics.update(loss(logits, labels), loss.probabilities(logits), labels)
    return metrics.compute()


def evaluate_split(model: nn.Module, split: Split, loader: BatchLoader, loss: Loss,
                   classes: list[str], device: torch.device, precision: str,
                   tta: str | None = None) -> tuple[dict, np.ndarray]:
    """Loss, accuracy, top-5, MSE, the per-class report, confusion matrix and ROC AUC, and the
    probabilities of every sample."""
    if tta and loss.name == "binary_ce":
        raise CnnlabError("--tta: averages softmax probabilities; this run uses binary_ce")
    logits = predict_logits(model, loader, device, precision, tta)
    labels = torch.from_numpy(split.labels)
    result = running_metrics(logits, labels, loss)
    probs = loss.probabilities(logits).numpy()
    result["samples"] = len(split)
    result.update(classification_metrics(probs, split.labels, classes))
    return result, probs


def predictions_csv(split: Split, probs: np.ndarray, classes: list[str], top_k: int = 5) -> str:
    top_k = min(top_k, len(classes))
    order = np.argsort(-probs, axis=1)[:, :top_k]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["id", "true", "predicted", "correct"]
    for k in range(1, top_k + 1):
        header += [f"top{k}", f"top{k}_probability"]
    writer.writerow(header)
    for i, sample_id in enumerate(split.ids):
        row = [sample_id, classes[split.labels[i]], classes[order[i, 0]],
               int(order[i, 0] == split.labels[i])]
        for c in order[i]:
            row += [classes[c], f"{probs[i, c]:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()


def evaluate_run(run_path, data: str | None = None, split: str = "val",
                 batch_size: int | None = None, device: str = "auto", quiet: bool = True,
                 tta: str | None = None) -> dict:
    """Evaluate a run's best checkpoint on one split; updates metrics.json and writes
    predictions-SPLIT.csv in the run directory. ``data`` defaults to the run's own data and
    split; another SPEC is split with the run's val_split and seed."""
    import json

    from .. import reports, runs
    from ..data import load_dataset
    from ..errors import DataError
    from ..training.device import configure_threads, resolve_device, resolve_precision

    configure_threads()
    run = runs.load_run(run_path)
    model, checkpoint = run.load_model()
    prep = checkpoint["preprocessing"]
    cfg = run.config
    same_data = data is None or data == cfg.data.spec
    split_ids = json.loads((run.path / runs.SPLIT).read_text()) if same_data else None
    if split_ids is not None and split not in split_ids:
        raise DataError(f"--split {split}: this run's data has no {split} split; "
                        f"available: {', '.join(split_ids)}")
    dataset = load_dataset(data or cfg.data.spec, prep["image_size"], prep["channels"],
                           cfg.data.val_split, cfg.seed, None,
                           {split: split_ids[split]} if split_ids else None, progress=not quiet,
                           options=cfg.data.options if same_data else None)
    if split not in dataset.splits:
        raise DataError(f"--split {split}: {dataset.spec} has no {split} split; "
                        f"available: {', '.join(dataset.splits)}")
    if dataset.classes != run.classes:
        raise DataError(f"--data {dataset.spec}: its {len(dataset.classes)} classes differ from the "
                        f"{len(run.classes)} the model was trained on")
    torch_device = resolve_device(device)
    precision = resolve_precision(cfg.precision, torch_device)
    model = model.to(torch_device, memory_format=torch.channels_last)
    loss = Loss.from_spec(checkpoint["loss"], len(run.classes))
    loader = BatchLoader.with_preprocessing(dataset.splits[split], batch_size or cfg.batch_size * 2, prep)
    metrics, probs = evaluate_split(model, dataset.splits[split], loader, loss, run.classes,
                                    torch_device, precision, tta)
    metrics["data"] = dataset.spec
    metrics["tta"] = tta
    runs_dir = runs.RunDirectory(run.path, quiet=quiet)
    runs_dir.write_text(f"predictions-{split}.csv", predictions_csv(dataset.splits[split], probs, run.classes))
    stored = dict(run.metrics)
    stored[split] = metrics
    runs_dir.write_json(runs.METRICS, stored)
    part = dataset.splits[split]
    reports.split_pictures(run.path, split, part, probs, metrics, run.classes)
    reports.write_report(run.path)
    return metrics

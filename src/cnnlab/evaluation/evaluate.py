"""Evaluating a model on a split, and recording the result: the one path behind the end of
training and ``cnnlab evaluate``."""

from __future__ import annotations

import csv
import io
import os
import time

import numpy as np
import torch
from torch import nn

from .. import reports, runs
from ..data import BatchLoader, Preprocessing, Split, concat_splits, load_dataset
from ..data.augment import centre_crop
from ..data.sources import canonical_spec, data_is_gone, options_taken, parse_spec, read_source
from ..errors import CnnlabError, ConfigError, DataError, listed
from ..runtime import Runtime
from .artifacts import inference_model, load_artifacts
from .gradcam import grad_cam
from .inference import check_finite_outputs, predict_logits, warn_of_mirrored_views
from .losses import Loss
from .metrics import RunningMetrics, classification_metrics, top_classes


def running_metrics(logits: torch.Tensor, labels: torch.Tensor, loss: Loss) -> dict[str, float]:
    metrics = RunningMetrics(loss.num_classes)
    metrics.update(loss(logits, labels), loss.probabilities(logits), labels)
    return metrics.compute()


def evaluate_split(model: nn.Module, split: Split, loader: BatchLoader, loss: Loss,
                   classes: list[str], runtime: Runtime, machine: str, tta: str | None = None,
                   averaged: list[int] | None = None) -> tuple[dict, np.ndarray]:
    """Loss, accuracy, top-5, MSE, the per-class report, confusion matrix and ROC AUC, and the
    probabilities of every sample (averages over the classes ``averaged``, default all); and the
    speed of the model's pass over the decoded images, with what it was measured on
    (``machine``: ``runtime`` described), as Keras' ``evaluate`` shows its time."""
    if tta and loss.name == "binary_ce":
        raise CnnlabError.about("tta", ": averages softmax probabilities; this run uses binary_ce")
    started = time.perf_counter()
    logits = predict_logits(model, loader, runtime, tta)
    seconds = time.perf_counter() - started
    check_finite_outputs(logits)
    labels = torch.from_numpy(split.labels)
    result = running_metrics(logits, labels, loss)
    probs = loss.probabilities(logits).numpy()
    result.update(samples=len(split), seconds=seconds, images_per_second=len(split) / seconds,
                  machine=machine)
    result.update(classification_metrics(probs, split.labels, classes, averaged))
    return result, probs


def predictions_csv(split: Split, probs: np.ndarray, classes: list[str], top_k: int = 5) -> str:
    top_k = min(top_k, len(classes))
    order = top_classes(probs, top_k)
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


def evaluate_and_record(directory: runs.RunDirectory, model: nn.Module, loss: Loss,
                        preprocessing: Preprocessing, classes: list[str], part: Split, split: str,
                        runtime: Runtime, machine: str, batch_size: int, epoch: int, data: str,
                        tta: str | None = None, label: str | None = None,
                        options: dict | None = None, pictures: bool = True) -> dict:
    """Evaluate ``model`` on ``part`` and write the result: into the run's own metrics.json,
    predictions and pictures (``label`` None), or into ``evaluations/<label>/``. ``model`` is
    the inference copy: its BatchNorms folded into the layers before them (models/fusion.py)."""
    loader = BatchLoader(part, batch_size, preprocessing, rank=runtime.rank, world_size=runtime.world_size,
                         device=runtime.device)
    # data of other origin may hold some of the classes only: average over those
    averaged = None if label is None else sorted(set(part.labels.tolist()))
    metrics, probs = evaluate_split(model, part, loader, loss, classes, runtime, machine, tta, averaged)
    metrics.update(data=data, split=split, tta=tta)
    folder = "" if label is None else runs.evaluation_folder(label)
    if label is None:
        stored = directory.read_json(runs.METRICS, {})
        stored.update({"checkpoint": runs.BEST, "epoch": epoch, split: metrics})
    else:
        stored = {"checkpoint": runs.BEST, "epoch": epoch, "data": data, "options": options or {},
                  "split": split, "tta": tta, "machine": metrics["machine"], split: metrics}
    directory.write_json(f"{folder}/{runs.METRICS}" if folder else runs.METRICS, stored)
    csv_name = runs.predictions_file(split)
    directory.write_text(f"{folder}/{csv_name}" if folder else csv_name, predictions_csv(part, probs, classes))
    if directory.main_process and pictures:
        reports.split_pictures(directory, split, part, probs, metrics, classes, folder,
                               explain=lambda chosen: explain(model, loader, chosen, probs))
    return metrics


def explain(model: nn.Module, loader: BatchLoader, chosen: np.ndarray,
            probs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's view (its centre crop, uint8) of the ``chosen`` samples and the Grad-CAM
    maps of their predicted classes."""
    crops = centre_crop(loader.pixels(chosen), loader.input_size)
    heatmaps = grad_cam(model, loader.preprocessing.standardize(crops),
                        torch.from_numpy(probs[chosen].argmax(1)))
    views = crops.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return views, heatmaps


def evaluate_run(run: runs.Run | str | os.PathLike, data: str | None = None, split: str | None = None,
                 batch_size: int | None = None, device: str = "auto", quiet: bool = True,
                 tta: str | None = None, options: dict | None = None, report: bool = True) -> dict:
    """Evaluate a run's best checkpoint, always with the run's own preprocessing.

    On the run's own data (``data`` None, its SPEC, or the place it moved to): the recorded
    ``split`` (default val, or test for a run trained without validation, as its own final
    evaluation did), written to the run's own metrics.json, predictions and pictures, which
    hold the same numbers. On other data: every image of its test split where it has one, else all of it
    (or the ``split`` asked for), with the run's source options where that source takes them
    (``options`` override them), classes matched by name. Those results, and any evaluation
    with test-time augmentation, go to their own folder ``evaluations/<name>/`` and their own
    section of report.html: the run's own results are never overwritten. ``report`` False
    writes the metrics and predictions only (no pictures, report.html left as it was).
    """
    if batch_size is not None and batch_size < 1:
        raise ConfigError.about("batch_size", f": must be at least 1; got {batch_size}")
    artifacts = load_artifacts(run)
    run, prep = artifacts.run, artifacts.preprocessing
    if report:
        reports.ReportSources.read(run.directory)
    warn_of_mirrored_views(tta, run.config.data.augment)
    model, runtime = inference_model(artifacts, device)
    cfg = run.config
    spec = canonical_spec(data or cfg.data.spec)
    recorded = run.directory.read_json(runs.SPLIT, {})
    own_options = {**cfg.data.options, **(options or {})}
    moved = moved_source(cfg.data.spec, spec, own_options, recorded)
    # the run's own images, with its source options or others (--set roi_crop=false): its
    # recorded splits, never every image with the training ones among them
    own = data is None or spec == canonical_spec(cfg.data.spec) or moved is not None
    if own:
        if data_is_gone(spec):
            raise DataError.mentioning(lambda name: f"{run.path}: its data, {spec}, is not there any more; give "
                                       f"{name('data')}=SPEC where it is now, or other data to evaluate on")
        # as the run's own final evaluation: validation, else the test split
        held_out = next((name for name in ("val", "test") if name in recorded), None)
        if split is None and held_out is None:
            raise DataError.mentioning(lambda name: f"{run.path}: this run's data has no val or test split to evaluate "
                                       f"on; give {name('split')}=train (its training images) or {name('data')}=SPEC "
                                       "(other data)")
        split = split or held_out
        if split not in recorded:
            raise DataError.about("split", f" {split}: this run's data has no {split} split; "
                                  f"available: {', '.join(recorded)}")
        used_options = own_options
        dataset = load_dataset(spec, prep.image_size, prep.channels, split_ids={split: recorded[split]},
                               progress=not quiet, options=used_options, source=moved)
        part = dataset.splits[split]
    else:
        used_options = {**options_taken(parse_spec(spec)[0], cfg.data.options)[0], **(options or {})}
        dataset = load_dataset(spec, prep.image_size, prep.channels, val_split=0.0,
                               progress=not quiet, options=used_options)
        if split is not None and split not in dataset.splits:
            raise DataError.about("split", f" {split}: {dataset.spec} has no {split} split; "
                                  f"available: {', '.join(dataset.splits)}")
        split = split or ("test" if "test" in dataset.splits else "all")
        part = (dataset.splits[split] if split != "all"
                else concat_splits(list(dataset.splits.values())))
    # by name, on the run's own data too: its folder may have gained classes since the run
    part = part.relabelled(class_mapping(dataset.classes, run.classes, part.labels, dataset.spec))
    # each data set, split, option change and TTA gets its own folder: no evaluation replaces another;
    # nor does the run's own split evaluated on another machine (other device, precision or CPU:
    # numbers a little different from those its training recorded)
    directory = runs.RunDirectory(run.path, quiet=quiet)
    machine = runtime.describe()
    recorded_machine = run.metrics.get(split, {}).get("machine") if own else None
    elsewhere = recorded_machine is not None and recorded_machine != machine
    label = None
    if not own or options or tta is not None or elsewhere:
        extras = [split if own else "", *(f"{k}-{v}" for k, v in sorted((options or {}).items())), tta or "",
                  f"{runtime.device.type}-{runtime.precision}" if elsewhere else ""]
        label = directory.evaluation_label(
            "-".join([runs.data_name(spec), *(runs.file_safe(e) for e in extras if e)]),
            {"data": dataset.spec, "split": split, "tta": tta, "options": used_options}
            | ({"machine": machine} if elsewhere else {}))
    metrics = evaluate_and_record(directory, model, artifacts.loss, prep, run.classes, part, split, runtime,
                                  machine, cfg.batch_size * 2 if batch_size is None else batch_size,
                                  artifacts.checkpoint["epoch"], dataset.spec, tta, label, used_options,
                                  pictures=report)
    if report:
        reports.write_report(directory)
    metrics["saved_to"] = str(run.path if label is None else run.path / runs.evaluation_folder(label))
    return metrics


def moved_source(recorded_spec: str, spec: str, options: dict, recorded: dict[str, list[str]]):
    """The source of ``spec`` where it is the run's data moved there (its recorded place gone,
    the same kind of source, every sample of the run's splits in it), else None: evaluated as
    the run's own data, not every image of it as other data (its training images included)."""
    if spec == recorded_spec or not data_is_gone(recorded_spec) or parse_spec(recorded_spec)[0] != parse_spec(spec)[0]:
        return None
    source = read_source(spec, options)
    ids = {sample_id for part in source.splits.values() for sample_id in part.ids}
    return source if recorded and all(i in ids for split in recorded.values() for i in split) else None


def class_mapping(names: list[str], known: list[str], labels: np.ndarray, spec: str) -> np.ndarray:
    """Label i of data whose classes are ``names`` -> the index of the same name in ``known``.
    Classes without samples may be anything; a class with samples must be known."""
    used = sorted(set(np.asarray(labels).tolist()))
    unknown = [names[i] for i in used if names[i] not in known]
    if unknown:
        verb = "is" if len(unknown) == 1 else "are"
        raise DataError.about("data", f" {spec}: {len(unknown)} of its classes {verb} not among the "
                              f"{len(known)} the model was trained on: {listed(unknown)}")
    index = {name: i for i, name in enumerate(known)}
    return np.asarray([index.get(name, -1) for name in names], dtype=np.int64)


"""What evaluate, predict and export need of a run, loaded in one place: its model (with the
best or last weights), preprocessing, loss and classes, checked against each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..data import Preprocessing
from ..errors import CnnlabError
from ..models.factory import place_model
from ..models.fusion import fold_batchnorm
from ..models.weights import model_from_checkpoint
from ..runs import Run, load_run
from ..runtime import Runtime
from .losses import Loss


@dataclass
class RunArtifacts:
    run: Run
    model: nn.Module
    """As trained, on the CPU (``inference_model`` prepares it to run)."""
    checkpoint: dict
    preprocessing: Preprocessing
    loss: Loss

    @property
    def classes(self) -> list[str]:
        return self.run.classes


def load_artifacts(run: Run | str | Path, which: str = "best") -> RunArtifacts:
    run = run if isinstance(run, Run) else load_run(run, whole=False)
    path = run.path / f"{which}.pt"
    checkpoint = run.checkpoint(which)
    model = model_from_checkpoint(checkpoint, path)
    try:
        preprocessing = Preprocessing.from_dict(checkpoint["preprocessing"])
        loss = Loss.from_spec(checkpoint["loss"], len(run.classes))
    except (KeyError, TypeError, ValueError) as exc:
        raise CnnlabError(f"{path}: its preprocessing or loss record is damaged ({exc})") from None
    if loss.outputs != model.num_classes or checkpoint.get("classes", run.classes) != run.classes:
        raise CnnlabError(f"{run.path}: classes.json names {len(run.classes)} classes but the "
                          f"model in {path.name} was trained on {model.num_classes} outputs"
                          f"{'' if checkpoint.get('classes') == run.classes else ' with other names'}")
    return RunArtifacts(run, model, checkpoint, preprocessing, loss)


def inference_model(artifacts: RunArtifacts, device: str) -> tuple[nn.Module, Runtime]:
    """The run's model as evaluate and predict run it: BatchNorm folded (models/fusion.py), on
    the device asked for, in the model's memory layout there; and that runtime."""
    runtime = Runtime.create(device, artifacts.run.config.precision)
    model = place_model(fold_batchnorm(artifacts.model), artifacts.run.config.model.name, runtime.device,
                        runtime.precision, training=False)
    return model, runtime

"""A model's outputs on every sample of a loader, with optional test-time augmentation; in a
distributed run each process computes its share and every process gets all of them."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..data import BatchLoader
from ..data.augment import Augment, shifted_views, ten_crops
from ..errors import CnnlabError, CnnlabWarning, TrainingDiverged, callers_stacklevel
from ..runtime import Runtime
from . import MIRRORING, TTA_MODES


def warn_of_mirrored_views(tta: str | None, augment: list[str]) -> None:
    """Mirrored test views for a run whose training (``augment``) never mirrored an image: a
    mirrored sign or digit is often another class (gtsrb-resnet9 on gtsrb-tune: 98.8% without
    test-time views, 91.4% with --tta flip, 99.0% with --tta shift)."""
    if tta in MIRRORING and not Augment.parse(augment).hflip:
        warnings.warn(CnnlabWarning.about("tta", lambda name: f" {tta}: this run was trained without mirror images (no "
                                          "hflip in data.augment), and a mirrored sign or digit is often another "
                                          f"class; {name('tta')}=shift keeps the views upright"), stacklevel=callers_stacklevel())


def check_finite_outputs(logits: torch.Tensor) -> None:
    """Refuse outputs that are not finite: weights that diverged in the last steps of a run
    without validation, which nothing looked at (scikit-learn's metrics then raised on NaN, and
    predictions read "nan%")."""
    finite = torch.isfinite(logits)
    bad = int((~(finite.flatten(1).all(dim=1) if finite.ndim > 1 else finite)).sum())
    if bad:
        raise TrainingDiverged(f"the model's outputs are not finite for {bad} of {len(logits)} images: its "
                               "weights diverged in training (train it again with a lower learning rate)")


@torch.no_grad()
def predict_logits(model: nn.Module, loader: BatchLoader, runtime: Runtime,
                   tta: str | None = None) -> torch.Tensor:
    """Logits of every sample, in order, on the CPU. With test-time augmentation, the log of
    the softmax averaged over several views, which every softmax loss and metric reads like
    logits: ``flip``, the image and its mirror image; ``flip-shift``, those and both moved a
    pixel up-left and down-right (six views); ``10crop``, the four corner crops, the centre
    crop and their mirror images (the paper's test procedure)."""
    if tta is not None and tta not in TTA_MODES:
        raise CnnlabError.about("tta", f": must be one of {', '.join(TTA_MODES)}; got '{tta}'")
    if tta == "10crop" and tuple(loader.preprocessing.image_size) == tuple(loader.input_size):
        height, width = loader.input_size
        warnings.warn(CnnlabWarning.about("tta", lambda name: f" 10crop: this run decodes its images at its input "
                                          f"size ({height}x{width}), so the ten crops are the image and its mirror "
                                          f"image five times each: the same as {name('tta')}=flip at five times the "
                                          f"cost (train with {name('data.image_size')} larger than "
                                          f"{name('data.crop')} to use it)"), stacklevel=callers_stacklevel())
    model.eval()
    device = runtime.device
    outputs = []
    for images, _ in loader.uncropped() if tta == "10crop" else loader:
        with runtime.autocast():
            if tta is None:
                outputs.append(model(images.to(device, non_blocking=True)).float())
                continue
            if tta == "10crop":
                views = [loader.preprocessing.standardize(v) for v in ten_crops(images, loader.input_size)]
            else:
                views = [images, *(shifted_views(images) if "shift" in tta else [])]
                views += [view.flip(3) for view in views] if tta in MIRRORING else []
            probs = torch.stack([torch.softmax(model(v.to(device, non_blocking=True)).float(), 1)
                                 for v in views]).mean(0)
            outputs.append(torch.log(probs.clamp_min(1e-12)))
    logits = torch.cat(outputs) if outputs else torch.empty(0, device=device)
    if loader.world_size > 1:
        logits = gather_in_order(runtime, logits, loader)
    return logits.cpu()


def gather_in_order(runtime: Runtime, logits: torch.Tensor, loader: BatchLoader) -> torch.Tensor:
    """Every rank's logits, put back in sample order: each batch was split between the ranks."""
    every = runtime.gather(logits)
    positions = [i for rank in range(loader.world_size) for i in loader.positions(rank)]
    ordered = torch.empty_like(every)
    ordered[torch.tensor(positions, device=every.device)] = every
    return ordered

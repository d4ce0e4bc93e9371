"""Inference-time folding: a BatchNorm that directly follows a convolution (or a dense layer)
is, in evaluation mode, a fixed per-channel scale and shift, which can be multiplied into that
layer's weights and bias once (Ioffe & Szegedy, 2015, section 3.1). The folded model computes
the same function with one pass over the activations fewer per pair; onnxruntime does the
same to exported models."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in evaluation mode with every (Conv2d, BatchNorm2d) and (Linear,
    BatchNorm1d) pair that follows each other in a Sequential folded into one layer; the
    BatchNorm becomes an Identity, so module names and indices stay as they were. ``model``
    itself is left untouched. Layers in any other order (the tutorials' conv, ReLU, BatchNorm)
    cannot be folded and stay as they are."""
    folded = copy.deepcopy(model).eval()
    for sequence, index in foldable_pairs(folded):
        layer, norm = sequence[index], sequence[index + 1]
        sequence[index] = _fuse(layer, norm)(layer, norm)
        sequence[index + 1] = nn.Identity()
    return folded


def foldable_pairs(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Where fold_batchnorm folds: each Sequential with the index of a layer whose BatchNorm
    follows it; empty where the model computes the same folded or not."""
    return [(sequence, index) for sequence in model.modules() if isinstance(sequence, nn.Sequential)
            for index in range(len(sequence) - 1) if _fuse(sequence[index], sequence[index + 1])]


def _fuse(layer: nn.Module, norm: nn.Module) -> Callable[[nn.Module, nn.Module], nn.Module] | None:
    if not (isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d) and norm.track_running_stats):
        return None
    if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
        return fuse_conv_bn_eval
    if isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
        return fuse_linear_bn_eval
    return None

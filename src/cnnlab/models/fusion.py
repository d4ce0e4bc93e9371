"""Inference-time folding: a BatchNorm that directly follows a convolution (or a dense layer)
is, in evaluation mode, a fixed per-channel scale and shift, which can be multiplied into that
layer's weights and bias once (Ioffe & Szegedy, 2015, section 3.1). The folded model computes
the same function with one pass over the activations fewer per pair; onnxruntime does the
same to exported models."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in evaluation mode with every (Conv2d, BatchNorm2d) and (Linear,
    BatchNorm1d) pair that follows each other in a Sequential folded into one layer; the
    BatchNorm becomes an Identity, so module names and indices stay as they were. ``model``
    itself is left untouched. Layers in any other order (the tutorials' conv, ReLU, BatchNorm)
    cannot be folded and stay as they are."""
    folded = copy.deepcopy(model).eval()
    for sequence in folded.modules():
        if not isinstance(sequence, nn.Sequential):
            continue
        for index in range(len(sequence) - 1):
            layer, norm = sequence[index], sequence[index + 1]
            if not (isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d) and norm.track_running_stats):
                continue
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence[index] = fuse_conv_bn_eval(layer, norm)
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d):
                sequence[index] = fuse_linear_bn_eval(layer, norm)
            else:
                continue
            sequence[index + 1] = nn.Identity()
    return folded

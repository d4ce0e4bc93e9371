"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017): where in an image the evidence for a class lies.
The last convolutional layer's maps are weighted by the mean gradient of the class's logit
over each map, summed, kept where positive and scaled up to the input."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def last_conv(model: nn.Module) -> nn.Conv2d | None:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def grad_cam(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray | None:
    """(N, H, W) maps in [0, 1] of the evidence for ``targets`` (class indices) in ``inputs`` (the
    model's standardised input); None for a model without convolutions."""
    layer = last_conv(model)
    if layer is None:
        return None
    maps: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda module, args, output: maps.append(output))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            # an input that needs a gradient gives every map one, a frozen base's too
            logits = model(inputs.detach().requires_grad_(True))
            activation = maps[0]
            targets = targets.view(-1, 1).to(logits.device)
            if logits.shape[1] == 1:  # one sigmoid logit: evidence for class 1 is its sign
                score = (logits.float() * (2 * targets - 1)).sum()
            else:
                score = logits.float().gather(1, targets).sum()
            gradient, = torch.autograd.grad(score, activation)
    finally:
        hook.remove()
        model.train(was_training)
    weights = gradient.float().mean((2, 3), keepdim=True)
    cam = F.relu((weights * activation.float()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=inputs.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).detach().cpu().numpy()

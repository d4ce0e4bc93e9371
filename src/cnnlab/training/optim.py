"""Optimizers, built from the config with Keras' defaults where a Keras recipe expects them."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..config import OptimizerConfig
from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def param_groups(model: torch.nn.Module, base_lr_scale: float = 1.0) -> list[dict]:
    """The convolutional base and the rest as two groups, frozen parameters included (they get
    no gradient, so no update, until they are unfrozen), so that unfreezing needs no new
    optimizer and a resumed run finds the same groups. ``lr_scale`` multiplies the schedule."""
    base = list(model.features.parameters()) if hasattr(model, "features") else []
    ids = {id(p) for p in base}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if base:
        groups.append({"params": base, "lr_scale": base_lr_scale})
    return groups


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter] | list[dict],
                    device: torch.device) -> torch.optim.Optimizer:
    if cfg.lr <= 0:
        raise ConfigError(f"--lr: must be positive; got {cfg.lr}")
    # the fused kernels do the whole update in one pass over the parameters
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay, **fused)
    if name in ("adam", "adamw"):
        kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                    weight_decay=cfg.weight_decay, **fused)
    if name == "rmsprop":
        # Keras' RMSprop: rho 0.9, no momentum
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=cfg.eps,
                                   weight_decay=cfg.weight_decay, foreach=True)
    raise ConfigError(f"--optimizer: unknown optimizer '{cfg.name}'; valid: {', '.join(OPTIMIZERS)}")

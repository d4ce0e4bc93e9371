"""Optimizers, built from the config with Keras' defaults where a Keras recipe expects them."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from ..config import OptimizerConfig
from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "muon")
FALLBACKS = ("adamw", "sgd")
READS = {"sgd": ("momentum", "nesterov"), "adam": ("betas", "eps"), "adamw": ("betas", "eps"), "rmsprop": ("eps",),
         "muon": ("muon_momentum", "ns_steps", "muon_renormalise", "fallback", "fallback_lr")}
"""The settings each optimizer reads besides lr and weight_decay; muon reads its fallback's too."""
STATE_PER_WEIGHT = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 1, "muon": 1}
"""Tensors each optimizer keeps per weight (and a checkpoint with it): SGD's momentum, Adam's
two moments, RMSprop's square average, Muon's momentum (the fewest each can keep)."""


def state_tensors_per_weight(cfg: OptimizerConfig) -> int:
    """STATE_PER_WEIGHT of ``cfg``'s optimizer; none for SGD without momentum."""
    name = cfg.name.lower()
    return 0 if name == "sgd" and not cfg.momentum else STATE_PER_WEIGHT.get(name, 0)


def unused_setting(cfg: OptimizerConfig) -> ConfigError | None:
    """The error for the first setting changed from its default that ``cfg``'s optimizer does
    not read (``--optimizer adam --momentum 0.5``), else None. A default written out, as
    recipes do, is no change."""
    name = cfg.name.lower()
    reads = READS[name] + (READS.get(cfg.fallback, ()) if name == "muon" else ())
    default = OptimizerConfig()
    for key in (key for keys in READS.values() for key in keys):
        value = getattr(cfg, key)
        if key not in reads and value != getattr(default, key):
            users = [f"{user}'s" for user, keys in READS.items() if key in keys]
            users += [f"muon's with fallback {fallback}" for fallback in FALLBACKS if key in READS[fallback]]
            what = f"{name} with fallback {cfg.fallback}" if name == "muon" else name
            listed = f"{', '.join(users[:-1])}, and {users[-1]}" if len(users) > 1 else users[0]
            return ConfigError.about(f"optimizer.{key}", f": {what} does not use it ({value}); it is {listed}")
    return None


def muon_weights(model: nn.Module) -> set[int]:
    """The ids of the weights Muon takes: those of every convolution and dense layer but the
    network's first and last, which train better with a standard optimizer (Jordan et al.,
    "Muon: An optimizer for hidden layers in neural networks", 2024). A fixed first layer
    (patch whitening) counts as the first."""
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return {id(m.weight) for m in layers[1:-1] if isinstance(m.weight, nn.Parameter)}


def param_groups(model: nn.Module, cfg: OptimizerConfig, base_lr_scale: float = 1.0) -> list[dict]:
    """The convolutional base and the rest as two groups, frozen parameters included (they get
    no gradient, so no update, until they are unfrozen), so that unfreezing needs no new
    optimizer and a resumed run finds the same groups. ``lr_scale`` multiplies the schedule.
    Under muon each group is split into Muon's weights and the fallback's parameters, whose
    ``lr_scale`` carries fallback_lr / lr."""
    base = list(model.features.parameters()) if hasattr(model, "features") else []
    ids = {id(p) for p in base}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if base:
        groups.append({"params": base, "lr_scale": base_lr_scale})
    if cfg.name.lower() != "muon":
        return groups
    hidden = muon_weights(model)
    split = []
    for group in groups:
        for muon in (True, False):
            params = [p for p in group["params"] if (id(p) in hidden) == muon]
            if params:
                scale = group["lr_scale"] * (1.0 if muon else cfg.fallback_lr / cfg.lr)
                split.append({"params": params, "lr_scale": scale, "muon": muon})
    return split


def orthogonalised(matrix: torch.Tensor, steps: int) -> torch.Tensor:
    """The quintic Newton-Schulz iteration of Muon (Jordan et al., 2024) towards the nearest
    semi-orthogonal matrix, in fp32 (torch.optim.Muon runs it in bf16, which CPUs without bf16
    units emulate 7-25x slower)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix / (matrix.norm() + 1e-7)
    wide = x.size(0) <= x.size(1)
    x = x if wide else x.T
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class Muon(torch.optim.Optimizer):
    """Muon for the groups marked ``muon`` (their filters flattened to out x in*kh*kw: torch's
    Muon takes 2-D weights only), and AdamW or SGD for the others, as Jordan et al. (2024)
    and Keras' ``keras.optimizers.Muon`` pair them. Muon's update is the Nesterov momentum of
    the gradient, orthogonalised, scaled by sqrt(max(1, rows / cols)), with decoupled weight
    decay, or with ``renormalise`` on the weight rescaled to norm sqrt(rows) before the update
    in place of the decay; the fallback is torch's own AdamW or SGD update with the group's
    ``lr``."""

    def __init__(self, params, lr: float, muon_momentum: float = 0.95, ns_steps: int = 5,
                 weight_decay: float = 0.0, fallback: str = "adamw", momentum: float = 0.9,
                 nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, renormalise: bool = False):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}; got {fallback!r}")
        super().__init__(params, dict(lr=lr, muon=False, muon_momentum=muon_momentum,
                                      ns_steps=ns_steps, weight_decay=weight_decay,
                                      fallback=fallback, momentum=momentum, nesterov=nesterov,
                                      betas=betas, eps=eps, renormalise=renormalise))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["muon"]:
                self._muon_step(group, params)
            elif group["fallback"] == "sgd":
                self._sgd_step(group, params)
            else:
                self._adamw_step(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["muon_momentum"]
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buffer = state["momentum_buffer"]
            buffer.lerp_(p.grad, 1 - momentum)
            update = p.grad.lerp(buffer, momentum).reshape(len(p), -1)
            rows, cols = update.shape
            update = orthogonalised(update, group["ns_steps"]) * max(1.0, rows / cols) ** 0.5
            if group.get("renormalise"):  # get: groups resumed from runs saved before it existed
                p.mul_(rows ** 0.5 / p.norm().clamp_min(1e-12))
            else:
                p.mul_(1 - lr * group["weight_decay"])
            p.add_(update.view(p.shape), alpha=-lr)

    def _sgd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        buffers = [self.state[p].get("momentum_buffer") for p in params]
        sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
            momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"],
            maximize=False)
        for p, buffer in zip(params, buffers, strict=True):
            self.state[p]["momentum_buffer"] = buffer

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            if not self.state[p]:
                self.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                                     exp_avg_sq=torch.zeros_like(p))
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adam(params, [p.grad for p in params], [s["exp_avg"] for s in states],
             [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
             decoupled_weight_decay=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
             weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter] | list[dict],
                    device: torch.device) -> torch.optim.Optimizer:
    if cfg.lr <= 0:
        raise ConfigError.about("optimizer.lr", f": must be positive; got {cfg.lr}")
    if cfg.weight_decay < 0:
        raise ConfigError.about("optimizer.weight_decay", f": must be 0 or more; got {cfg.weight_decay}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError.about("optimizer.momentum", f": must be at least 0 and below 1; got {cfg.momentum}")
    if len(cfg.betas) != 2 or not all(0 <= beta < 1 for beta in cfg.betas):
        raise ConfigError.about("optimizer.betas", f": two numbers, each at least 0 and below 1; got {cfg.betas}")
    if cfg.eps <= 0:
        raise ConfigError.about("optimizer.eps", f": must be positive; got {cfg.eps}")
    # the fused kernels do the whole update in one pass over the parameters
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    name = cfg.name.lower()
    if name in READS and (unused := unused_setting(cfg)):
        raise unused
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
    if name == "muon":
        if cfg.fallback not in FALLBACKS:
            raise ConfigError.about("optimizer.fallback", f": must be one of {', '.join(FALLBACKS)}; got '{cfg.fallback}'")
        if cfg.fallback_lr <= 0:
            raise ConfigError.about("optimizer.fallback_lr", f": must be positive; got {cfg.fallback_lr}")
        if not 0 <= cfg.muon_momentum < 1:
            raise ConfigError.about("optimizer.muon_momentum", f": must be at least 0 and below 1; got {cfg.muon_momentum}")
        if not 1 <= cfg.ns_steps <= 20:
            raise ConfigError.about("optimizer.ns_steps", f": must be 1 to 20; got {cfg.ns_steps}")
        return Muon(params, lr=cfg.lr, muon_momentum=cfg.muon_momentum, ns_steps=cfg.ns_steps,
                    weight_decay=cfg.weight_decay, fallback=cfg.fallback, momentum=cfg.momentum,
                    nesterov=cfg.nesterov, betas=tuple(cfg.betas), eps=cfg.eps,
                    renormalise=cfg.muon_renormalise)
    raise ConfigError.about("optimizer.name", f": unknown optimizer '{cfg.name}'; valid: {', '.join(OPTIMIZERS)}")

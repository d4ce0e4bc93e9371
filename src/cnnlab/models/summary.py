"""Keras-style model summary: layer rows, parameter counts the Keras way (BatchNorm running
mean and variance count as non-trainable parameters), FLOPs and activation memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .layers import PatchWhitening


@dataclass(frozen=True)
class ParamCount:
    total: int
    trainable: int
    non_trainable: int


def count_params(model: nn.Module) -> ParamCount:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    fixed = sum(_fixed_weights(m) for m in model.modules())
    return ParamCount(trainable + frozen + fixed, trainable, frozen + fixed)


def _fixed_weights(module: nn.Module) -> int:
    """Weights held as buffers, counted as Keras counts non-trainable weights: BatchNorm's
    running mean and variance, a whitening layer's fitted filters."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        return module.running_mean.numel() + module.running_var.numel()
    if isinstance(module, PatchWhitening):
        return module.weight.numel()
    return 0


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: list[int]
    params: int
    flops: int


@dataclass
class Summary:
    model: str
    input_shape: list[int]
    """height, width, channels"""
    num_classes: int
    layers: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    non_trainable_params: int = 0
    flops: int = 0
    """Forward FLOPs per image (multiply-adds x 2)."""
    activation_bytes: int = 0
    """Memory of all layer outputs for one image in fp32."""

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        width = max([len(f"{r.name} ({r.kind})") for r in self.layers] + [24])
        rule = "-" * (width + 42)
        lines = [f'Model: "{self.model}"  input {"x".join(map(str, self.input_shape))}',
                 rule, f"{'Layer (type)':<{width}}  {'Output Shape':<24}{'Param #':>14}",
                 rule.replace("-", "=")]
        for row in self.layers:
            shape = "(None, " + ", ".join(map(str, _keras_order(row.output_shape))) + ")"
            lines.append(f"{row.name + ' (' + row.kind + ')':<{width}}  {shape:<24}{row.params:>14,}")
        lines += [
            rule.replace("-", "="),
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Forward FLOPs per image: {self.flops / 1e9:,.3f} G",
            f"Activation memory per image: {self.activation_bytes / 2**20:,.2f} MiB",
            rule,
        ]
        return "\n".join(lines)


def _keras_order(shape: list[int]) -> list[int]:
    """Channels last, as Keras prints feature maps."""
    return [*shape[1:], shape[0]] if len(shape) == 3 else shape


def _layer_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False)) + _fixed_weights(module)


def _layer_flops(module: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return 2 * per_output * output[0].numel()
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * module.out_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, int, int], name: str | None = None) -> Summary:
    """Run one zero image (height, width, channels) through ``model`` and record every layer."""
    height, width, channels = input_shape
    rows: list[LayerRow] = []
    hooks = []
    for layer_name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def record(mod, args, output, layer_name=layer_name):
            rows.append(LayerRow(layer_name, type(mod).__name__, list(output.shape[1:]),
                                 _layer_params(mod), _layer_flops(mod, args[0], output)))

        hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            output = model(torch.zeros(1, channels, height, width, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    counts = count_params(model)
    return Summary(
        model=name or getattr(model, "name", type(model).__name__),
        input_shape=[height, width, channels],
        num_classes=int(output.shape[-1]),
        layers=rows,
        total_params=counts.total,
        trainable_params=counts.trainable,
        non_trainable_params=counts.non_trainable,
        flops=sum(r.flops for r in rows),
        activation_bytes=4 * sum(torch.Size(r.output_shape).numel() for r in rows),
    )

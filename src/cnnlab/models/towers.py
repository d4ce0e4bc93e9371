"""The AlexNet paper's model parallelism: the two towers of a grouped network on two devices.

In the paper (section 3.2, figure 2) every layer's kernels are split in half between two GPUs.
Each GPU computes its half of conv1 from the whole image; conv2, conv4 and conv5 take only the
maps of their own GPU (the grouped convolutions); conv3 and the three fully connected layers
take the maps of both GPUs, which is where the GPUs talk. ``split_towers`` runs a grouped
ConvNet that way: each layer's output channels (or units) are split in one part per device,
its weights live on that device, and activations cross between devices only into the layers
that take both towers' maps. Local response normalisation, which mixes neighbouring
channels, borrows the few channels it needs across the boundary, so the result is the grouped
network's to the last bit of arithmetic order. In a state dict the parts are joined again
under the grouped network's names: checkpoints load into either.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CnnlabError
from .convnet import ConvNet
from .layers import LocalResponseNorm, LogitsLinear, dense, fp32_dense


class SplitParameters(nn.Module):
    """A layer's weight and bias as one part per device, split along the output; a state dict
    holds them whole under ``weight`` and ``bias``."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, devices: list[torch.device]):
        super().__init__()
        self.linear = isinstance(layer, nn.Linear)
        self.product = fp32_dense if isinstance(layer, LogitsLinear) else dense
        self.grouped = _grouped(layer)
        if not self.linear:
            self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        count, parts = layer.weight.shape[0], len(devices)
        self.bounds = [(g * count // parts, (g + 1) * count // parts) for g in range(parts)]
        self.weights = nn.ParameterList(nn.Parameter(layer.weight.detach()[a:b].clone().to(d))
                                        for (a, b), d in zip(self.bounds, devices, strict=True))
        self.biases = (nn.ParameterList(nn.Parameter(layer.bias.detach()[a:b].clone().to(d))
                                        for (a, b), d in zip(self.bounds, devices, strict=True))
                       if layer.bias is not None else None)
        self.register_state_dict_post_hook(_join_parts)
        self.register_load_state_dict_pre_hook(_split_parts)

    def forward_part(self, part: int, x: torch.Tensor) -> torch.Tensor:
        bias = self.biases[part] if self.biases is not None else None
        if self.linear:
            return self.product(x, self.weights[part], bias)
        # a grouped layer's part is one of its groups: each part is an ungrouped convolution
        return F.conv2d(x, self.weights[part], bias, self.stride, self.padding, self.dilation)


PARTS = (("weight", "weights"), ("bias", "biases"))
"""A layer's tensor names, and the names of its parts in a SplitParameters."""


def _join_parts(module: SplitParameters, state_dict: dict, prefix: str, local_metadata) -> None:
    for name, plural in PARTS:
        parts = getattr(module, plural)
        if parts is None:
            continue
        for g in range(len(parts)):
            state_dict.pop(f"{prefix}{plural}.{g}")
        state_dict[f"{prefix}{name}"] = torch.cat([p.detach().cpu() for p in parts])


def _split_parts(module: SplitParameters, state_dict: dict, prefix: str, local_metadata, strict,
                 missing_keys, unexpected_keys, error_msgs) -> None:
    for name, plural in PARTS:
        whole = state_dict.pop(f"{prefix}{name}", None)
        if getattr(module, plural) is None or whole is None:
            continue
        for g, (a, b) in enumerate(module.bounds):
            state_dict[f"{prefix}{plural}.{g}"] = whole[a:b]


def _grouped(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


class TwoTowerNet(nn.Module):
    """A ConvNet whose layers are split between ``devices`` (see the module's docstring). The
    input may be on any device; the logits come back on the first one."""

    def __init__(self, model: ConvNet, devices: list[torch.device]):
        super().__init__()
        if not any(_grouped(m) for m in model.features):
            raise CnnlabError(f"towers: {model.name} has no grouped layers to split into towers "
                              "(alexnet with groups=2 has)")
        for module in model.features:
            if _grouped(module) and module.groups != len(devices):
                raise CnnlabError(f"towers: {model.name} has {module.groups} groups, so it takes "
                                  f"{module.groups} devices; got {len(devices)}")
        self.devices = devices
        self.name, self.input_size = model.name, model.input_size
        self.in_channels, self.num_classes = model.in_channels, model.num_classes
        self.features = self._split(model.features)
        self.flatten = nn.Flatten()
        self.classifier = self._split(model.classifier)

    def _split(self, sequence: nn.Sequential) -> nn.Sequential:
        parts = []
        for module in sequence:
            if isinstance(module, nn.Conv2d | nn.Linear):
                parts.append(SplitParameters(module, self.devices))
            else:
                parts.append(module)
        return nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the image is whole on every device; after the first layer, each device holds its part
        towers = [x.to(d, non_blocking=True) for d in self.devices]
        split = False
        for module in [*self.features, self.flatten, *self.classifier]:
            if isinstance(module, SplitParameters):
                if split and not module.grouped:
                    # the layers where the towers talk: every device takes all the maps
                    towers = [torch.cat([t.to(d, non_blocking=True) for t in towers], 1) for d in self.devices]
                towers = [module.forward_part(g, t) for g, t in enumerate(towers)]
                split = True
            elif isinstance(module, LocalResponseNorm):
                towers = self._normalize(module, towers)
            else:
                towers = [module(t) for t in towers]
        return torch.cat([t.to(self.devices[0]) for t in towers], 1)

    def _normalize(self, norm: LocalResponseNorm, towers: list[torch.Tensor]) -> list[torch.Tensor]:
        """LRN of each tower's maps with the neighbouring maps of the next towers it needs."""
        radius = norm.size // 2
        out = []
        for g, t in enumerate(towers):
            device = self.devices[g]
            before = towers[g - 1][:, -radius:].to(device) if g > 0 else t[:, :0]
            after = towers[g + 1][:, :radius].to(device) if g + 1 < len(towers) else t[:, :0]
            window = norm(torch.cat([before, t, after], 1))
            out.append(window[:, before.shape[1]: before.shape[1] + t.shape[1]])
        return out


def split_towers(model: ConvNet, devices: list[str | torch.device]) -> TwoTowerNet:
    return TwoTowerNet(model, [torch.device(d) for d in devices])

"""The layers cnnlab sends to oneDNN's matmul on a CPU, one by one, against torch's own path
for the same layer: dense layers (``OneDnnLinear`` against nn.Linear's BLAS) and convolutions on
tiny maps (``PatchMatmulConv2d`` against nn.Conv2d's convolution). Forward and backward at each
seed model's batch and input, the two paths taking turns window by window; GFLOP/s and ratio.
Layers that keep torch's path (too small, or a convolution on a larger map) are not listed.

    python benchmarks/matmul_paths.py
    python benchmarks/matmul_paths.py --model simple-cnn --precision bf16 --windows 9
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
from step_levers import on_torch_path, under_bf16_autocast
from throughput import Case, alternate, exit_on_refused_input, torch_and_cpu, window

from cnnlab import launcher
from cnnlab.models.factory import create_model
from cnnlab.models.layers import OneDnnLinear, PatchMatmulConv2d, onednn_dense_applies

SEED_MODELS = ("alexnet-bn", "alexnet-bn@150", "alexnet-half", "alexnet-mnist", "simple-cnn",
               "small-cnn", "vgg16")


def layer_inputs(model: torch.nn.Module, case: Case, precision: str) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """The input shape of each OneDnnLinear and PatchMatmulConv2d at the case's batch, and its
    dtype in a training step of ``precision`` (bf16 after a layer that autocast ran in bf16)."""
    shapes = {}

    def record(name: str) -> Callable:
        def hook(module, args, out) -> None:
            shapes[name] = args[0].shape, args[0].dtype
        return hook

    hooks = [module.register_forward_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, OneDnnLinear | PatchMatmulConv2d)]
    height, width, channels = case.input
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        model(torch.zeros(1, channels, height, width))
    for hook in hooks:
        hook.remove()
    return {name: (torch.Size([case.batch, *shape[1:]]), dtype) for name, (shape, dtype) in shapes.items()}


def takes_matmul(layer: torch.nn.Module, x: torch.Tensor) -> bool:
    if isinstance(layer, OneDnnLinear):
        return onednn_dense_applies(x, layer.weight)
    return layer.patch_matmul_applies(x)


def forward_backward(layer: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], None]:
    def step() -> None:
        layer(x).float().sum().backward()
    return under_bf16_autocast(step) if precision == "bf16" else step


def forward_flops(layer: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of one image's forward product."""
    if isinstance(layer, OneDnnLinear):
        return 2 * layer.in_features * layer.out_features
    with torch.no_grad():
        out = torch.nn.functional.conv2d(x[:1].float(), layer.weight, None, layer.stride, layer.padding)
    return 2 * out[0].numel() * layer.weight[0].numel()


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=list(SEED_MODELS), help="NAME or NAME@SIZE")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: under autocast, where only the convolutions take cnnlab's path")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"{torch_and_cpu()}, {args.precision}")
    for text in args.model:
        case = Case.parse(text, None)
        height, width, channels = case.input
        model = create_model(case.model, case.classes, channels, (height, width)).to(memory_format=torch.channels_last).eval()
        layers = dict(model.named_modules())
        for name, (shape, dtype) in layer_inputs(model, case, args.precision).items():
            layer = layers[name]
            x = torch.randn(shape, dtype=dtype)
            x = (x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x).requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                if not takes_matmul(layer, x):
                    continue
            rates = alternate({"torch": window(forward_backward(on_torch_path(copy.deepcopy(layer), type(layer)), x,
                                                                args.precision), args.steps, case.batch),
                               "cnnlab": window(forward_backward(layer, x, args.precision), args.steps, case.batch)},
                              args.windows)
            gflop = 3 * forward_flops(layer, x) / 1e9  # per image, forward and backward
            kind = "dense" if isinstance(layer, OneDnnLinear) else "conv"
            print(f"{case.label} {name} ({kind} {tuple(shape[1:])} {str(dtype)[6:]} -> {layer.weight.shape[0]}), "
                  f"batch {case.batch}: "
                  f"torch's path {rates['torch'] * gflop:.0f} GFLOP/s, oneDNN matmul {rates['cnnlab'] * gflop:.0f} "
                  f"({rates['cnnlab'] / rates['torch']:.2f}x)", flush=True)


if __name__ == "__main__":
    exit_on_refused_input(main)

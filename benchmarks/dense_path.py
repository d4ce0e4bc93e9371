"""The two paths of a dense layer's fp32 product on a CPU, layer by layer: torch's BLAS
(nn.Linear's own, MKL) against oneDNN's matmul (cnnlab's OneDnnLinear), forward and backward
at each seed model's batch, the two taking turns window by window; GFLOP/s and the ratio.

    python benchmarks/dense_path.py
    python benchmarks/dense_path.py --model alexnet-bn@150 vgg16 --windows 9
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from throughput import Case, alternate, cpu_flags, exit_on_refused_input, window

from cnnlab import launcher
from cnnlab.models.factory import create_model
from cnnlab.models.layers import OneDnnLinear

SEED_MODELS = ("alexnet-bn", "alexnet-bn@150", "alexnet-half", "alexnet-mnist", "simple-cnn",
               "small-cnn", "vgg16")


def forward_backward(layer: torch.nn.Linear, batch: int) -> Callable[[], None]:
    x = torch.randn(batch, layer.in_features, requires_grad=True)
    grad = torch.randn(batch, layer.out_features)
    return lambda: layer(x).backward(grad)


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=list(SEED_MODELS), help="NAME or NAME@SIZE")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {cpu_flags()}, fp32")
    for text in args.model:
        case = Case.parse(text, None)
        height, width, channels = case.input
        model = create_model(case.model, case.classes, channels, (height, width))
        for name, layer in model.named_modules():
            if not isinstance(layer, OneDnnLinear):
                continue
            blas = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
            rates = alternate({"blas": window(forward_backward(blas, case.batch), args.steps, case.batch),
                               "onednn": window(forward_backward(layer, case.batch), args.steps, case.batch)},
                              args.windows)
            gflop = 3 * 2 * layer.in_features * layer.out_features / 1e9  # per image: forward + backward
            print(f"{case.label} {name} {layer.in_features}->{layer.out_features}, batch {case.batch}: "
                  f"BLAS {rates['blas'] * gflop:.0f} GFLOP/s, oneDNN {rates['onednn'] * gflop:.0f} "
                  f"({rates['onednn'] / rates['blas']:.2f}x)", flush=True)


if __name__ == "__main__":
    exit_on_refused_input(main)

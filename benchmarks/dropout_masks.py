"""What cnnlab's dropout layer saves against torch's nn.Dropout in a whole training step: the
same model, fp32 (or bf16 autocast), channels_last, synthetic data, the layers alternated window
by window in one process (medians of the windows), as ratios to torch's; cnnlab's layer with
its masks drawn at 16 bits a value is the third, so the 8-bit masks are measured against it.

    python benchmarks/dropout_masks.py --model small-cnn alexnet-bn@150 [--precision bf16]
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

import torch
from step_levers import under_bf16_autocast
from throughput import (
    Case,
    alternate,
    bare_training_step,
    exit_on_refused_input,
    torch_and_cpu,
    window,
)
from torch import nn

from cnnlab import launcher
from cnnlab.models.factory import create_model
from cnnlab.models.layers import UniformMaskDropout

LAYERS = {
    "torch": nn.Dropout,
    "cnnlab, 16-bit masks": functools.partial(UniformMaskDropout, mask_bits=16),
    "cnnlab": UniformMaskDropout,
}


def swap_dropout(model: nn.Module, make: Callable[[float, bool], nn.Dropout]) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout):
                setattr(parent, name, make(child.p, child.inplace))


def measure(case: Case, windows: int, steps: int, precision: str) -> dict[str, float]:
    torch.manual_seed(0)
    height, width, channels = case.input
    model = create_model(case.model, case.classes, channels, (height, width)).to(memory_format=torch.channels_last).train()
    step = bare_training_step(model, case)
    if precision == "bf16":
        step = under_bf16_autocast(step)
    return alternate({name: window(step, steps, case.batch, before=lambda make=make: swap_dropout(model, make))
                      for name, make in LAYERS.items()}, windows)


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["small-cnn", "alexnet-bn@150"], help="NAME or NAME@SIZE")
    parser.add_argument("--windows", type=int, default=6, help="windows per layer kind")
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: under bf16 autocast")
    args = parser.parse_args()
    print(f"{torch_and_cpu()}, {args.precision}")
    for spec in args.model:
        case = Case.parse(spec, None)
        rates = measure(case, args.windows, args.steps, args.precision)
        print(f"{case.label}, batch {case.batch}: " + ", ".join(
            f"{name} {rate:.1f} img/s ({rate / rates['torch']:.3f}x)" for name, rate in rates.items())
            + f"; 8-bit masks against 16-bit {rates['cnnlab'] / rates['cnnlab, 16-bit masks']:.3f}x")


if __name__ == "__main__":
    exit_on_refused_input(main)

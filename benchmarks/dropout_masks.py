"""What cnnlab's dropout layer saves against torch's nn.Dropout in a whole training step: the
same model, fp32, channels_last, synthetic data, the two layers alternated window by window
in one process (medians of the windows), as the ratio cnnlab / torch.

    python benchmarks/dropout_masks.py --model small-cnn alexnet-bn@150
"""

from __future__ import annotations

import argparse
import sys

import torch
from throughput import Case, alternate, bare_training_step, cpu_flags, exit_on_refused_input, window
from torch import nn

from cnnlab import launcher
from cnnlab.models.factory import create_model
from cnnlab.models.layers import UniformMaskDropout


def swap_dropout(model: nn.Module, kind: type[nn.Dropout]) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Dropout):
                setattr(parent, name, kind(child.p, child.inplace))


def measure(case: Case, windows: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    height, width, channels = case.input
    model = create_model(case.model, case.classes, channels, (height, width)).to(memory_format=torch.channels_last).train()
    step = bare_training_step(model, case)
    return alternate({name: window(step, steps, case.batch, before=lambda kind=kind: swap_dropout(model, kind))
                      for name, kind in (("torch", nn.Dropout), ("cnnlab", UniformMaskDropout))}, windows)


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["small-cnn", "alexnet-bn@150"], help="NAME or NAME@SIZE")
    parser.add_argument("--windows", type=int, default=6, help="windows per layer kind")
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {cpu_flags()}")
    for spec in args.model:
        case = Case.parse(spec, None)
        rates = measure(case, args.windows, args.steps)
        print(f"{case.label}, batch {case.batch}: nn.Dropout {rates['torch']:.1f} img/s, "
              f"cnnlab's dropout {rates['cnnlab']:.1f} img/s, ratio {rates['cnnlab'] / rates['torch']:.3f}x")


if __name__ == "__main__":
    exit_on_refused_input(main)

"""Levers on the training step, each against channels_last, eager, oneDNN (cnnlab's way for every
model but those registered ``nchw_training_on_cpu``, which it trains NCHW in fp32 on a CPU): the same
model's bare fp32 training step (forward, loss, backward, SGD update; synthetic data)
in each variant, the variants taking turns window by window in one process, medians, as the
ratio to the reference.

    python benchmarks/step_levers.py --model small-cnn vgg16 --levers nchw compile no-onednn

Levers: ``nchw`` (contiguous tensors instead of channels_last), ``compile`` (torch.compile of
the model, inductor's default mode; its compilation falls in the untimed first step),
``no-onednn`` (``torch.backends.mkldnn`` off: PyTorch's own convolutions).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
from throughput import Case, alternate, bare_training_step, cpu_flags, window

from cnnlab import launcher
from cnnlab.models.factory import create_model

REFERENCE = "channels_last"


def without_onednn(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        torch.backends.mkldnn.enabled = False
        try:
            step()
        finally:
            torch.backends.mkldnn.enabled = True
    return run


def variants(case: Case, levers: list[str]) -> dict[str, Callable[[], None]]:
    """Each variant's step on its own copy of one initialised model (a memory format or a
    compiled graph must not leak into the others)."""
    torch.manual_seed(0)
    height, width, channels = case.input
    model = create_model(case.model, case.classes, channels, (height, width)).train()

    def copied(memory_format: torch.memory_format = torch.channels_last) -> torch.nn.Module:
        return copy.deepcopy(model).to(memory_format=memory_format)

    builders = {
        REFERENCE: lambda: bare_training_step(copied(), case),
        "nchw": lambda: bare_training_step(copied(torch.contiguous_format), case, torch.contiguous_format),
        "compile": lambda: bare_training_step(torch.compile(copied()), case),
        "no-onednn": lambda: without_onednn(bare_training_step(copied(), case)),
    }
    return {name: builders[name]() for name in [REFERENCE, *levers]}


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["small-cnn", "alexnet-bn@150"], help="NAME or NAME@SIZE")
    parser.add_argument("--levers", nargs="+", default=["nchw", "compile", "no-onednn"],
                        choices=["nchw", "compile", "no-onednn"])
    parser.add_argument("--batch-size", type=int, help="one batch size for every model")
    parser.add_argument("--windows", type=int, default=3, help="windows per variant")
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags: {cpu_flags()}, fp32")
    for spec in args.model:
        case = Case.parse(spec, args.batch_size)
        steps = variants(case, args.levers)
        rates = alternate({name: window(step, args.steps, case.batch) for name, step in steps.items()}, args.windows)
        reference = rates[REFERENCE]
        print(f"{case.label}, batch {case.batch}: " + ", ".join(
            f"{name} {rate:.3g} img/s ({rate / reference:.2f}x)" for name, rate in rates.items()), flush=True)


if __name__ == "__main__":
    main()

"""Levers on the training step, each against channels_last, eager, oneDNN (cnnlab's way for every
model but those registered ``nchw_training_on_cpu``, which it trains NCHW in fp32 on a CPU): the same
model's bare training step (forward, loss, backward, SGD update; synthetic data; fp32, or bf16 autocast)
in each variant, the variants taking turns window by window in one process, medians, as the
ratio to the reference.

    python benchmarks/step_levers.py --model small-cnn vgg16 --levers nchw compile no-onednn
    python benchmarks/step_levers.py --model alexnet-mnist alexnet-bn@150 simple-cnn --levers blas-dense conv-tiny-maps
    python benchmarks/step_levers.py --model small-cnn --levers torch-flatten --precision bf16
    python benchmarks/step_levers.py --model simple-cnn alexnet-bn@150 --levers bf16-logits --precision bf16
    python benchmarks/step_levers.py --model small-cnn --levers nchw-first:1 nchw-first:2
    python benchmarks/step_levers.py --model airbench --batch-size 500 --options "widths=[32,128,128]" \
        --levers "options:widths=[32,96,128]" "options:widths=[16,128,128]"
    python benchmarks/step_levers.py --model airbench --batch-size 500 --levers scale:0.75 scale:0.875
    python benchmarks/step_levers.py --model airbench --batch-size 500 --options "widths=[32,128,128]" \
        --levers fixed-whitening-bias

Levers: ``nchw`` (contiguous tensors instead of channels_last), ``nchw-first:K`` (the first K
convolutions in NCHW, the rest channels_last: a memory format per layer), ``compile``
(torch.compile of the model, inductor's default mode; its compilation falls in the untimed
first step), ``no-onednn`` (``torch.backends.mkldnn`` off: PyTorch's own convolutions),
``blas-dense`` (the dense layers on torch's BLAS, nn.Linear's own path, instead of oneDNN's
matmul), ``conv-tiny-maps`` (convolutions with outputs of up to 4 positions on nn.Conv2d's own
path instead of a matmul over their patches), ``torch-flatten`` (nn.Flatten's own backward,
which hands an NCHW gradient to channels_last layers, instead of LayoutKeepingFlatten's),
``torch-avgpool`` (nn.AvgPool2d's own backward instead of TilingAvgPool2d's upsampling),
``conv-relu-apart`` (each ReLU after a convolution as its own pass over the map, nn.Sequential's
way, instead of oneDNN's convolution with a ReLU post-op),
``torch-lrn`` (torch's F.local_response_norm instead of ChannelWindowLRN),
``bf16-logits`` (with --precision bf16: the output layer under autocast's bf16 like the others,
instead of LogitsLinear's fp32),
``fixed-whitening-bias`` (the whitening layer's bias not trained, as after
``model.whiten_bias_epochs``: the first trained convolution skips its input gradient), and
``options:KEY=VALUE`` (the model built with one option changed, e.g. another width: what a
variant of the network costs in CPU time, the reference's rate divided by its rate) and
``scale:F`` (the same model on inputs of F times the side: what an epoch of progressive
resizing's phase at that scale costs).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import types
from collections.abc import Callable

import torch
from throughput import (
    Case,
    alternate,
    bare_training_step,
    exit_on_refused_input,
    torch_and_cpu,
    window,
)

from cnnlab import launcher
from cnnlab.config import parse_override
from cnnlab.data.loader import scaled_size
from cnnlab.models.factory import create_model
from cnnlab.models.layers import (
    ConvReLUSequential,
    LayoutKeepingFlatten,
    LocalResponseNorm,
    LogitsLinear,
    OneDnnLinear,
    PatchMatmulConv2d,
    TilingAvgPool2d,
    fix_whitening_biases,
)

REFERENCE = "channels_last"
NAMED_LEVERS = ("nchw", "compile", "no-onednn", "blas-dense", "conv-tiny-maps", "torch-flatten", "torch-avgpool",
                "conv-relu-apart", "torch-lrn", "fixed-whitening-bias", "bf16-logits")


def lever(text: str) -> str:
    """argparse type: a named lever, ``nchw-first:K``, ``options:KEY=VALUE`` or ``scale:F``."""
    kind, sep, value = text.partition(":")
    if text in NAMED_LEVERS or (kind == "nchw-first" and value.isdigit() and int(value) > 0) or (
            kind == "options" and "=" in value) or (kind == "scale" and 0 < _number(value) <= 1):
        return text
    raise argparse.ArgumentTypeError(f"'{text}': expected one of {', '.join(NAMED_LEVERS)}, nchw-first:K (K > 0), "
                                     "options:KEY=VALUE or scale:F (0 < F <= 1)")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def scaled_case(case: Case, scale: float) -> Case:
    """``case`` with inputs of ``scale`` times its side."""
    return dataclasses.replace(case, input=(*scaled_size(case.input[:2], scale), case.input[2]))


def first_convolutions_nchw(model: torch.nn.Module, count: int) -> torch.nn.Module:
    """The first ``count`` convolutions (in the order of ``modules()``) and their inputs in NCHW,
    the later ones channels_last; each convolution converts its input to its own format."""
    convolutions = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    for index, convolution in enumerate(convolutions):
        memory_format = torch.contiguous_format if index < count else torch.channels_last
        convolution.to(memory_format=memory_format)
        convolution.register_forward_pre_hook(
            lambda module, args, memory_format=memory_format: (args[0].contiguous(memory_format=memory_format),))
    return model


def on_torch_path(model: torch.nn.Module, kind: type[torch.nn.Module]) -> torch.nn.Module:
    """``model`` with each of its ``kind`` layers (OneDnnLinear, PatchMatmulConv2d,
    LayoutKeepingFlatten, TilingAvgPool2d) running the forward of the torch class it extends."""
    for module in model.modules():
        if type(module) is kind:  # not its subclasses (LogitsLinear, a lever of its own)
            module.forward = types.MethodType(kind.__bases__[0].forward, module)
    return model


def with_torch_lrn(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, LocalResponseNorm):
            module.forward = module.torch_lrn
    return model


def without_onednn(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        torch.backends.mkldnn.enabled = False
        try:
            step()
        finally:
            torch.backends.mkldnn.enabled = True
    return run


def under_bf16_autocast(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step()
    return run


def variants(case: Case, levers: list[str], options: dict | None = None) -> dict[str, Callable[[], None]]:
    """Each variant's step on its own copy of one initialised model (a memory format or a
    compiled graph must not leak into the others)."""
    height, width, channels = case.input
    options = options or {}

    def built(**changed) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(case.model, case.classes, channels, (height, width), **{**options, **changed}).train()

    model = built()

    def copied(memory_format: torch.memory_format = torch.channels_last) -> torch.nn.Module:
        return copy.deepcopy(model).to(memory_format=memory_format)

    def step(name: str) -> Callable[[], None]:
        kind, _, value = name.partition(":")
        if kind == "nchw-first":
            return bare_training_step(first_convolutions_nchw(copied(), int(value)), case)
        if kind == "options":
            key, changed = parse_override(value)
            return bare_training_step(built(**{key: changed}).to(memory_format=torch.channels_last), case)
        if kind == "scale":
            return bare_training_step(copied(), scaled_case(case, float(value)))
        return {
            REFERENCE: lambda: bare_training_step(copied(), case),
            "nchw": lambda: bare_training_step(copied(torch.contiguous_format), case, torch.contiguous_format),
            "compile": lambda: bare_training_step(torch.compile(copied()), case),
            "no-onednn": lambda: without_onednn(bare_training_step(copied(), case)),
            "blas-dense": lambda: bare_training_step(on_torch_path(copied(), OneDnnLinear), case),
            "conv-tiny-maps": lambda: bare_training_step(on_torch_path(copied(), PatchMatmulConv2d), case),
            "torch-flatten": lambda: bare_training_step(on_torch_path(copied(), LayoutKeepingFlatten), case),
            "torch-avgpool": lambda: bare_training_step(on_torch_path(copied(), TilingAvgPool2d), case),
            "conv-relu-apart": lambda: bare_training_step(on_torch_path(copied(), ConvReLUSequential), case),
            "torch-lrn": lambda: bare_training_step(with_torch_lrn(copied()), case),
            "bf16-logits": lambda: bare_training_step(on_torch_path(copied(), LogitsLinear), case),
            "fixed-whitening-bias": lambda: bare_training_step(fix_whitening_biases(copied()), case),
        }[name]()

    return {name: step(name) for name in [REFERENCE, *levers]}


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["small-cnn", "alexnet-bn@150"], help="NAME or NAME@SIZE")
    parser.add_argument("--levers", nargs="+", type=lever, default=list(NAMED_LEVERS),
                        help=f"{', '.join(NAMED_LEVERS)}, nchw-first:K, options:KEY=VALUE, scale:F")
    parser.add_argument("--options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="model options of the reference and every variant (e.g. widths=[32,128,128])")
    parser.add_argument("--batch-size", type=int, help="one batch size for every model")
    parser.add_argument("--windows", type=int, default=3, help="windows per variant")
    parser.add_argument("--steps", type=int, default=3, help="steps per window")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: every variant's step under CPU bf16 autocast, as cnnlab trains in bf16")
    args = parser.parse_args()
    print(f"{torch_and_cpu()}, {args.precision}")
    for spec in args.model:
        case = Case.parse(spec, args.batch_size)
        steps = variants(case, args.levers, dict(parse_override(item) for item in args.options))
        if args.precision == "bf16":
            steps = {name: under_bf16_autocast(step) for name, step in steps.items()}
        rates = alternate({name: window(step, args.steps, case.batch) for name, step in steps.items()}, args.windows)
        reference = rates[REFERENCE]
        print(f"{case.label}, batch {case.batch}: " + ", ".join(
            f"{name} {rate:.3g} img/s ({rate / reference:.2f}x)" for name, rate in rates.items()), flush=True)


if __name__ == "__main__":
    exit_on_refused_input(main)

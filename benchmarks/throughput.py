"""Training throughput: cnnlab's training step against the tutorials' Keras/TensorFlow code.

For each model, at the same batch size and on the same synthetic in-memory data: cnnlab's
real training step (Trainer.train_epoch: batch gather, normalisation, forward, loss,
backward, fused optimizer step, running metrics) in its default precision and in fp32, and
the Keras reference (benchmarks/keras_reference/, run by `make bench-env`'s Python in its own
process) in its default float32 and its mixed_bfloat16 policy. Modes are alternated A B A B
within the one invocation, warm-up excluded, medians printed with the ratios precision for
precision (cnnlab fp32 / Keras float32, cnnlab bf16 / Keras mixed_bfloat16) and default for
default (what each gives a user who changes nothing); each cnnlab precision's GFLOP/s is set
against the matmul and convolution rates of that precision measured in the same run. Each
column's fastest window is printed too, with cnnlab's medians against Keras' fastest windows:
TensorFlow's windows can differ by 2x where cnnlab's agree (docs/benchmarks.md, "Keras' speed
jumps between windows"), and its fastest is its computing speed. That slowness is fit's pacing:
``--keras-loop train_on_batch`` trains Keras one ``train_on_batch`` call a batch instead, which
is not paced, for a Keras column that is its computing speed in every window.

    python benchmarks/throughput.py --keras-python .venv-bench/bin/python
    python benchmarks/throughput.py --models alexnet-bn@150 simple-cnn --repeats 5 --show-windows
    python benchmarks/throughput.py --keras-python .venv-bench/bin/python --keras-loop train_on_batch
    KERAS_BACKEND=jax python benchmarks/throughput.py --keras-python python3   # Keras on JAX

A model is a registered cnnlab name, optionally with @SIZE for a square input of that size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab import launcher
from cnnlab.cli import EXIT_USAGE
from cnnlab.config import TrainConfig
from cnnlab.data import Augment, Dataset, Preprocessing, Split
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.losses import Loss
from cnnlab.models import MODELS, create_model, place_model
from cnnlab.models.summary import summarize
from cnnlab.runs import RunDirectory
from cnnlab.runtime import Runtime, cpu_text, native_bf16, resolve_precision
from cnnlab.training.loop import Trainer
from cnnlab.training.optim import build_optimizer
from cnnlab.training.schedules import LRSchedule

REPO = Path(__file__).resolve().parent.parent
KERAS_WORKER = REPO / "benchmarks" / "keras_reference" / "worker.py"
DEFAULT_KERAS_PYTHON = REPO / ".venv-bench" / "bin" / "python"
DEFAULT_MODELS = ["alexnet-bn", "alexnet-bn@150", "alexnet-half", "alexnet-mnist", "simple-cnn",
                  "small-cnn", "alexnet", "vgg16"]
# The tutorials' batch sizes; the same for both frameworks.
BATCH = {"alexnet-bn": 64, "alexnet": 64, "alexnet-half": 64, "alexnet-mnist": 64,
         "simple-cnn": 128, "small-cnn": 32, "vgg16": 16, "vgg16-bn": 16, "vgg16-transfer": 16,
         "lenet5": 128, "mlp": 128}


@dataclass
class Case:
    label: str
    model: str
    input: tuple[int, int, int]
    classes: int
    batch: int

    @classmethod
    def parse(cls, text: str, batch: int | None) -> Case:
        name, _, size = text.partition("@")
        info = MODELS.get(name)
        height, width, channels = info.input_size
        if size:
            height = width = int(size)
        return cls(f"{name} {height}", name, (height, width, channels), info.num_classes,
                   batch or BATCH.get(name, 64))


def exit_on_refused_input(main: Callable[[], object]) -> None:
    """Run a benchmark's ``main``: an input cnnlab refuses (a model name, a model option, a
    ``--set``, a data path) ends it with one line and exit code 2, as the cnnlab command does."""
    try:
        status = main()
    except CnnlabError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(status)


def median_rate(run: Callable[[], object], work: float, min_seconds: float, min_runs: int = 3,
                device: torch.device | None = None) -> float:
    """Median of work/second over repeated calls after one warm-up call (waiting for a GPU to
    finish each)."""
    def timed():
        run()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)

    timed()
    times: list[float] = []
    while len(times) < min_runs or sum(times) < min_seconds:
        started = time.perf_counter()
        timed()
        times.append(time.perf_counter() - started)
    return work / statistics.median(times)


def bare_training_step(model: torch.nn.Module, case: Case,
                       memory_format: torch.memory_format = torch.channels_last) -> Callable[[], None]:
    """One SGD step of `model` on a fixed synthetic batch: forward, loss, backward, update, and
    nothing of the trainer around it, for comparing variants of the model or the runtime."""
    height, width, channels = case.input
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.randn(case.batch, channels, height, width).contiguous(memory_format=memory_format)
    labels = torch.randint(0, case.classes, (case.batch,))

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def alternate(measures: dict[str, Callable[[], float]], windows: int) -> dict[str, float]:
    """The median rate of each measurement, the measurements taking turns window by window so
    that a machine's drift falls on all of them alike."""
    return {name: statistics.median(values) for name, values in alternate_windows(measures, windows).items()}


def alternate_windows(measures: dict[str, Callable[[], float]], windows: int) -> dict[str, list[float]]:
    """Every window's rate of each measurement, taking turns as alternate() does."""
    rates: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(windows):
        for name, measure in measures.items():
            rates[name].append(measure())
    return rates


def window(step: Callable[[], None], steps: int, batch: int,
           before: Callable[[], None] = lambda: None) -> Callable[[], float]:
    """A measurement of images per second over ``steps`` calls of ``step``, after ``before``
    (which switches a shared model into this mode) and one untimed step, since the first step
    after a switch allocates anew."""
    def measure() -> float:
        before()
        step()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * batch / (time.perf_counter() - started)
    return measure


def matmul_rate(dtype: torch.dtype, size: int, min_seconds: float, device: torch.device) -> float:
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return median_rate(lambda: a @ b, 2 * size**3, min_seconds, device=device) / 1e9


def conv_rate(dtype: torch.dtype, batch: int, channels: int, side: int, min_seconds: float,
              device: torch.device) -> float:
    """A 3x3 'same' convolution, channels_last, channels -> channels maps of side x side."""
    x = torch.randn(batch, channels, side, side, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * batch * side * side * channels * channels * 9
    return median_rate(lambda: F.conv2d(x, w, padding=1), flops, min_seconds, device=device) / 1e9


def rooflines(min_seconds: float, device: torch.device) -> dict[str, float]:
    """GFLOP/s of a square matmul and the better of two 3x3 convolutions (AlexNet's conv3-4
    and a VGG block), fp32 and bf16, in this process with its thread count. On a CPU the bf16
    problems are smaller: where bf16 is emulated, the large ones would take minutes; on a GPU
    they are larger, to fill it."""
    if device.type == "cuda":
        sizes = {torch.float32: (8192, 256, 128), torch.bfloat16: (8192, 256, 128)}
    else:
        sizes = {torch.float32: (2048, 64, 32), torch.bfloat16: (512, 4, 2)}
    rates = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        side, batch13, batch28 = sizes[dtype]
        rates[f"matmul {name}"] = matmul_rate(dtype, side, min_seconds, device)
        rates[f"conv3x3 {name}"] = max(conv_rate(dtype, batch13, 384, 13, min_seconds, device),
                                       conv_rate(dtype, batch28, 256, 28, min_seconds, device))
    return rates


class CnnlabMode:
    def __init__(self, case: Case, runtime: Runtime, steps: int, run: RunDirectory):
        height, width, channels = case.input
        count = case.batch * steps
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8)
        labels = rng.integers(0, case.classes, count)
        classes = [str(i) for i in range(case.classes)]
        dataset = Dataset("synthetic", classes, {"train": Split(images, labels, [str(i) for i in range(count)])},
                          (height, width), channels)
        config = TrainConfig().with_overrides({"model.name": case.model, "batch_size": case.batch,
                                               "optimizer.name": "sgd", "optimizer.lr": 0.001})
        model = create_model(case.model, case.classes, channels, (height, width))
        model = place_model(model, case.model, runtime.device, runtime.precision, training=True)
        optimizer = build_optimizer(config.optimizer, model.parameters(), runtime.device)
        schedule = LRSchedule(config.schedule, 0.001, steps, 1)
        preprocessing = Preprocessing([0.5] * channels, [0.25] * channels, (height, width),
                                      (height, width), channels)
        self.trainer = Trainer(config, dataset, model, Loss("sparse_ce", case.classes), optimizer,
                               schedule, Augment(), run, runtime, preprocessing)
        self.count = count
        summary = summarize(model, case.input)
        self.params = summary.total_params
        # forward + backward: 3x the forward pass, the usual estimate
        self.training_flops = 3 * summary.flops
        self.measure()  # warm-up

    def measure(self) -> float:
        started = time.perf_counter()
        self.trainer.train_epoch(0)
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)
        return self.count / (time.perf_counter() - started)


def interpreter_path(given: Path) -> Path:
    """Where the Keras reference's Python is, found as a shell would: a bare name on PATH, a
    relative path from the current folder (the worker runs in another). Absolute, not resolved:
    a venv's python is a link whose location makes it the venv's."""
    on_path = shutil.which(given) if given.name == str(given) else None
    return Path(on_path).absolute() if on_path else given.absolute()


class KerasWorker:
    """The Keras reference in its own process and environment; one JSON line per request."""

    def __init__(self, python: Path):
        # TensorFlow with the allocator its users get: cnnlab's tcmalloc is not passed on
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CNNLAB_ALLOCATOR")}
        self.process = subprocess.Popen([str(python), str(KERAS_WORKER)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                        cwd=KERAS_WORKER.parent, env=env)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Keras worker exited (code {self.process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


class KerasMode:
    def __init__(self, worker: KerasWorker, case: Case, policy: str, steps: int, loop: str = "fit"):
        self.worker, self.key, self.loop = worker, f"{case.label} {policy}", loop
        self.count = case.batch * steps
        reply = worker.ask(op="prepare", key=self.key, model=case.model, input=list(case.input),
                           classes=case.classes, policy=policy, batch=case.batch, steps=steps, loop=loop)
        self.params = reply["params"]

    def measure(self) -> float:
        return self.worker.ask(op="measure", key=self.key, loop=self.loop)["images_per_second"]

    def release(self) -> None:
        self.worker.ask(op="release", key=self.key)


def torch_and_cpu() -> str:
    """What the step benchmarks say first: torch's version, its threads and the CPU."""
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU {cpu_text()}"


def environment_line(keras_info: dict | None, device: torch.device) -> str:
    preload = os.environ.get("LD_PRELOAD", "")
    parts = [f"CPU {cpu_text()}, {torch.get_num_threads()} threads",
             *([f"GPU {torch.cuda.get_device_name(device)}"] if device.type == "cuda" else []),
             f"native bf16: {native_bf16(device)}",
             f"python {platform.python_version()}", f"torch {torch.__version__}",
             f"allocator: {'tcmalloc' if 'tcmalloc' in preload else 'glibc'}"]
    if keras_info:
        parts.append(f"keras {keras_info['keras']} on {keras_info['backend']} {keras_info['backend_version']}")
    return ", ".join(parts)


def main() -> None:
    # cnnlab as its users run it: the cnnlab command preloads tcmalloc where it is installed
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="NAME or NAME@SIZE")
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                        help="cnnlab precisions (auto = cnnlab's default on this machine)")
    parser.add_argument("--keras-python", type=Path, default=DEFAULT_KERAS_PYTHON,
                        help="Python of `make bench-env`; the Keras columns are left out when it is missing")
    parser.add_argument("--keras-policies", nargs="*", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--keras-loop", choices=["fit", "train_on_batch"], default="fit",
                        help="how Keras trains: fit, as the tutorials do, or one train_on_batch call a batch, "
                             "outside the pacing fit shows on some machines (docs/benchmarks.md)")
    parser.add_argument("--batch-size", type=int, help="one batch size for every model")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per mode (median)")
    parser.add_argument("--show-windows", action="store_true", help="print every window's img/s, mode by mode")
    parser.add_argument("--roofline-seconds", type=float, default=1.0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    args.keras_python = interpreter_path(args.keras_python)
    runtime = Runtime.create(args.device, "fp32")
    precisions = list(dict.fromkeys(resolve_precision(p, runtime.device) for p in args.precisions))
    default_precision = resolve_precision("auto", runtime.device)

    worker = keras_info = None
    if runtime.device.type == "cuda":
        args.keras_policies = []  # the Keras reference is the tutorials' CPU set-up
    if args.keras_policies and args.keras_python.exists():
        worker = KerasWorker(args.keras_python)
        keras_info = worker.ask(op="info")
    elif args.keras_policies:
        print(f"note: {args.keras_python} not found (run `make bench-env`); Keras columns left out")
    print(environment_line(keras_info, runtime.device) + (f", keras loop: {args.keras_loop}" if keras_info else ""))
    roof = rooflines(args.roofline_seconds, runtime.device)
    print("roofline GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in roof.items()))
    roof_by_precision = {p: max(roof[f"matmul {p}"], roof[f"conv3x3 {p}"]) for p in ("fp32", "bf16")}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDirectory(tmp, quiet=True)
        for text in args.models:
            case = Case.parse(text, args.batch_size)
            modes: dict[str, CnnlabMode | KerasMode] = {}
            for precision in precisions:
                label = f"cnnlab {precision}" + (" (default)" if precision == default_precision else "")
                modes[label] = CnnlabMode(case, Runtime(runtime.device, precision, runtime.threads),
                                          args.steps, run)
            if worker and case.model in keras_info["models"]:
                for policy in args.keras_policies:
                    try:
                        mode = modes[f"keras {policy}"] = KerasMode(worker, case, policy, args.steps, args.keras_loop)
                    except RuntimeError as error:
                        print(f"{case.label}: keras {policy} failed: {error}")
                        continue
                    cnnlab_params = next(iter(modes.values())).params
                    if mode.params != cnnlab_params:
                        print(f"warning: {case.label}: the Keras reference has {mode.params:,} parameters, "
                              f"cnnlab's model {cnnlab_params:,}")
            windows = alternate_windows({label: mode.measure for label, mode in modes.items()}, args.repeats)
            if args.show_windows:
                for label, rates in windows.items():
                    print(f"  {case.label} {label} windows: " + ", ".join(f"{rate:.1f}" for rate in rates))
            for mode in modes.values():
                if isinstance(mode, KerasMode):
                    mode.release()
            # the column the ratios are for: cnnlab's default precision, or the first one asked for
            default = next((label for label in modes if label.endswith("(default)")), next(iter(modes)))
            row = {"model": case.label, "batch": case.batch, "default": default,
                   "img_s": {label: statistics.median(rates) for label, rates in windows.items()},
                   "fastest": {label: max(rates) for label, rates in windows.items()},
                   "gflop_per_image": modes[default].training_flops / 1e9}
            rows.append(row)
            print(format_row(row, roof_by_precision), flush=True)
    if worker:
        worker.close()
    print()
    print(markdown_table(rows, roof_by_precision))


def ratio(rates: dict[str, float], label: str, reference: str, reference_rates: dict[str, float] | None = None) -> str:
    reference_rates = rates if reference_rates is None else reference_rates
    if label not in rates or reference not in reference_rates:
        return "-"
    return f"{rates[label] / reference_rates[reference]:.2f}x"


def cnnlab_precision(label: str) -> str | None:
    """The precision of a cnnlab column ("cnnlab bf16 (default)": bf16); None for Keras'."""
    return label.split()[1] if label.startswith("cnnlab ") else None


KERAS_POLICY_PRECISION = {"keras float32": "fp32", "keras mixed_bfloat16": "bf16"}


def compute_precision(label: str) -> str | None:
    """The precision a column's convolutions and matmuls run in, cnnlab's or Keras'."""
    return cnnlab_precision(label) or KERAS_POLICY_PRECISION.get(label)


def ratios(row: dict) -> dict[str, str]:
    """Medians like for like (each cnnlab precision against the Keras policy computing in it),
    then default for default (cnnlab's choice for this machine against the tutorials' float32),
    then cnnlab's medians against Keras' fastest windows. TensorFlow's speed can change from one
    window to the next by up to 2x on a machine whose cnnlab windows agree within a few per cent
    (docs/benchmarks.md), so the median alone can set cnnlab against TensorFlow's slow windows
    of ``fit``; the last two ratios, or every ratio with ``--keras-loop train_on_batch``, compare
    the two computing."""
    medians, fastest = row["img_s"], row["fastest"]
    fp32 = next((label for label in medians if cnnlab_precision(label) == "fp32"), "")
    bf16 = next((label for label in medians if cnnlab_precision(label) == "bf16"), "")
    return {"cnnlab fp32 / keras float32": ratio(medians, fp32, "keras float32"),
            "cnnlab bf16 / keras mixed_bfloat16": ratio(medians, bf16, "keras mixed_bfloat16"),
            "cnnlab default / keras float32": ratio(medians, row["default"], "keras float32"),
            "cnnlab fp32 / keras float32's fastest": ratio(medians, fp32, "keras float32", fastest),
            "cnnlab bf16 / keras mixed_bfloat16's fastest": ratio(medians, bf16, "keras mixed_bfloat16", fastest)}


def roofline_shares(row: dict, roof_by_precision: dict[str, float],
                    statistic: str = "img_s") -> dict[str, tuple[float, float]]:
    """GFLOP/s of each column's median (or, with statistic "fastest", its fastest window),
    cnnlab's and Keras' (the same network, so the same FLOPs an image), and its share of the
    roofline of the precision it computes in."""
    rates = {}
    for label, images_per_second in row[statistic].items():
        if precision := compute_precision(label):
            gflop_s = images_per_second * row["gflop_per_image"]
            rates[label] = (gflop_s, gflop_s / roof_by_precision[precision])
    return rates


def format_row(row: dict, roof_by_precision: dict[str, float]) -> str:
    cells = "  ".join(f"{label} {rate:.1f} (fastest {row['fastest'][label]:.1f})" for label, rate in row["img_s"].items())
    pairs = "  ".join(f"{name} {value}" for name, value in ratios(row).items() if value != "-")
    fastest = roofline_shares(row, roof_by_precision, "fastest")
    rates = ", ".join(f"{label} {gflop_s:.0f} ({share:.0%} of the {compute_precision(label)} roofline"
                      + (f"; fastest {fastest[label][0]:.0f}, {fastest[label][1]:.0%})" if label.startswith("keras") else ")")
                      for label, (gflop_s, share) in roofline_shares(row, roof_by_precision).items())
    return f"{row['model']:<17} batch {row['batch']:>3}  {cells} img/s;  {pairs};  GFLOP/s {rates}"


def keras_cell(label: str, median: str, fastest: str) -> str:
    """A table cell: the median, and for Keras' columns its fastest window in brackets."""
    return median + (f" ({fastest})" if label.startswith("keras") else "")


def markdown_table(rows: list[dict], roof_by_precision: dict[str, float]) -> str:
    """Keras' cells give the median and, in brackets, the fastest window."""
    labels = list(dict.fromkeys(label for row in rows for label in row["img_s"]))
    measured = [label for label in labels if compute_precision(label)]
    head = ["model (batch)", *labels, *(ratios(rows[0]) if rows else ()),
            *(f"{label} GFLOP/s (share of the {compute_precision(label)} roofline)" for label in measured)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rates = roofline_shares(row, roof_by_precision)
        fastest = roofline_shares(row, roof_by_precision, "fastest")
        cells = [f"{row['model']} ({row['batch']})",
                 *(keras_cell(label, f"{row['img_s'][label]:.1f}", f"{row['fastest'][label]:.1f}")
                   if label in row["img_s"] else "-" for label in labels),
                 *ratios(row).values(),
                 *(keras_cell(label, f"{rates[label][0]:.0f} ({rates[label][1]:.0%})",
                        f"{fastest[label][0]:.0f}, {fastest[label][1]:.0%}") if label in rates else "-"
                   for label in measured)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    exit_on_refused_input(main)

"""The ``cnnlab`` command: argument parsing and output formatting over the Python API.

User errors print one line naming the option or file and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import errno
import functools
import io
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import launcher
from .errors import CnnlabError, OptionNamed, Spell, TrainingDiverged, one_line
from .evaluation import TTA_HELP, TTA_MODES

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 1, 130, 143


class Parser(argparse.ArgumentParser):
    commands: argparse.Action | None = None
    """The sub-commands' action, where the parser has sub-commands."""

    def error(self, message: str):  # one line, not usage plus message
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unrecognized option is refused by the command that was given it,
        with that command's option it is probably meant to be (argparse says neither). The
        namespace's ``prog`` is that command, as its errors name it (``cnnlab data verify``)."""
        parsed, extras = self.parse_known_args(args, namespace)
        parser = self
        while parser.commands is not None:
            parser = parser.commands.choices[getattr(parsed, parser.commands.dest)]
        parsed.prog = parser.prog
        if extras:
            parser.error(f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
                         f"{parser.nearest_option(extras)}")
        return parsed

    def nearest_option(self, extras: list[str]) -> str:
        """" (did you mean --lr?)" for the first unknown option of ``extras``, by Keras' name
        (--learning-rate) or a near spelling; "" when no option is near."""
        from .config import OTHER_NAMES

        given = next((extra.partition("=")[0] for extra in extras if extra.startswith("--")), None)
        if given is None:
            return ""
        positionals = {action.dest: (action.metavar or action.dest.upper()) + ("..." if action.nargs in ("+", "*") else "")
                       for action in self._actions if not action.option_strings}
        if (wanted := given[2:].replace("-", "_")) in positionals:  # summary --model alexnet
            return f" ({positionals[wanted]} is given without a flag: {self.prog} {' '.join(positionals.values())})"
        options = [name[2:] for action in self._actions for name in action.option_strings if name.startswith("--")]
        keras_name = OTHER_NAMES.get(given[2:].replace("-", "_"), "").replace("_", "-")
        near = [keras_name] if keras_name in options else difflib.get_close_matches(given[2:], options, n=1, cutoff=0.6)
        return f" (did you mean --{near[0]}?)" if near else ""


def size_arg(text: str) -> list[int]:
    """``HxW`` or ``HxWxC`` -> list of ints."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, e.g. 227x227x3; got '{text}'") from None
    if len(parts) not in (2, 3) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, e.g. 227x227x3; got '{text}'")
    return parts


def number_at_least(kind: type, minimum: int, what: str):
    """An argparse type: a finite number of ``kind`` (int or float), at least ``minimum``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value < math.inf:
            raise argparse.ArgumentTypeError(f"expected {what} of at least {minimum}; got '{text}'")
        return value
    return parse


positive_int = number_at_least(int, 1, "a whole number")
"""A count given on the command line (a batch size, a number of classes)."""
days_arg = number_at_least(float, 0, "a number of days")


def endpoint(text: str) -> str:
    """A rendezvous endpoint, HOST or HOST:PORT, as torchrun takes it."""
    host, colon, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (colon and not (port.isdigit() and 1 <= int(port) <= 65535)):
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT, the port from 1 to 65535; got '{text}'")
    return text


FORMAT_HELP = "a table to read, or json (csv too where offered) for programs (default %(default)s)"
SPEC_HELP = ("data SPEC, e.g. digits, mnist:PATH, cifar10:PATH, gtsrb:PATH, hf:PATH or hf:OWNER/NAME (a Hugging "
             "Face dataset; by name, from its cache) or folder:PATH (a bare path is a folder, or GTSRB's, CIFAR's "
             "or a Hugging Face dataset's where it has their layout; a bare .npz or .csv file is npz: or csv:, a "
             ".parquet or .arrow file hf:)")


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Train, evaluate and compare classic CNN image "
                    "classifiers (AlexNet, VGG-16, LeNet-5 and the tutorials' small CNNs).")
    parser.add_argument("--version", action="version", version=f"cnnlab {launcher.version()}")
    commands = parser.commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                                       metavar="COMMAND")

    from .config import AUGMENTATIONS, NORMALIZATIONS, TrainConfig

    default = TrainConfig()
    # the options of a training run, shared by train and lr-find
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--model", help="model name (see: cnnlab models); default lenet5")
    options.add_argument("--data", help=f"{SPEC_HELP}; default digits")
    options.add_argument("--config", help="recipe YAML file, or a bundled recipe's name (cnnlab recipes)")
    options.add_argument("--epochs", type=int, help=f"passes over the training data (default {default.epochs})")
    options.add_argument("--batch-size", type=int, help=f"images per batch (default {default.batch_size})")
    options.add_argument("--lr", type=float, help="learning rate")
    options.add_argument("--optimizer", help="sgd, adam, adamw, rmsprop or muon")
    options.add_argument("--momentum", type=float,
                         help=f"sgd's momentum, and muon's for its sgd fallback (default {default.optimizer.momentum})")
    options.add_argument("--weight-decay", type=float,
                         help="L2 penalty; decoupled from the gradient in adamw and muon "
                         f"(default {default.optimizer.weight_decay})")
    options.add_argument("--schedule", help="constant, exponential, step, multistep, cosine, linear, onecycle, plateau")
    options.add_argument("--loss", help="sparse_ce, categorical_ce or binary_ce")
    options.add_argument("--label-smoothing", type=float,
                         help="share of each target spread over the other classes "
                         f"(default {default.label_smoothing})")
    options.add_argument("--class-weight", metavar="balanced|FILE",
                       help="weigh each training sample's loss by its class: balanced, or a YAML/JSON "
                       "file of class name: weight")
    options.add_argument("--clip-grad-norm", type=float, metavar="MAX",
                       help="scale the gradients down when their global norm is above MAX")
    options.add_argument("--accumulate", type=int, metavar="N",
                       help="one optimizer step every N batches (an N times larger batch)")
    options.add_argument("--ema", type=float, metavar="DECAY",
                       help="evaluate and keep an exponential moving average of the weights, e.g. 0.999")
    options.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without improvement of val_loss")
    options.add_argument("--val-split", type=float, help="fraction held out per class (default 0.1)")
    options.add_argument("--subset", type=int, metavar="N",
                         help="train on N samples (stratified; validation and test shrink in proportion)")
    options.add_argument("--image-size", type=size_arg, metavar="HxW",
                       help="decode images at this size (default: the model's input size)")
    options.add_argument("--crop", type=size_arg, metavar="HxW",
                       help="model input cut from the decoded image (random in training, centre "
                       "or ten crops in evaluation), e.g. --image-size 256x256 --crop 227x227")
    options.add_argument("--channels", type=int, choices=(1, 3),
                         help="decode as greyscale (1) or RGB (3) (default: the source's own; folders 3)")
    options.add_argument("--label-mode", choices=("fine", "coarse"), help="cifar100 labels")
    options.add_argument("--roi-crop", action="store_true", default=None,
                       help="gtsrb: crop each image to its annotated sign box")
    options.add_argument("--categories", help="caltech256: the first N categories, or names a,b,c")
    options.add_argument("--augment", action="append", metavar="NAME",
                       help=f"an augmentation ({AUGMENTATIONS}); repeat for several")
    options.add_argument("--weights", help="start from a run directory (its best.pt), a state dict, a "
                         "safetensors or Keras .h5 or .keras file, a URL, or imagenet (vgg16)")
    options.add_argument("--init", help="alexnet: default (Kaiming), paper (N(0, 0.01)) or torch")
    options.add_argument("--groups", type=int, help="alexnet: 2 (the paper's two towers) or 1")
    options.add_argument("--freeze-base", action="store_true", default=None,
                       help="freeze the convolutional base, to train the dense layers on it (any model "
                            "with convolutions; with --weights)")
    options.add_argument("--unfreeze-after", type=int, metavar="EPOCHS",
                       help="with --freeze-base: train the base too after EPOCHS epochs")
    options.add_argument("--trainable-base-layers", type=int, metavar="N",
                         help="train only the last N convolutions of the base (with their BatchNorm), from the "
                         "start or after --unfreeze-after; those before stay as loaded")
    options.add_argument("--base-lr-scale", type=float, metavar="F",
                       help="learning rate of the convolutional base relative to the head")
    options.add_argument("--seed", type=int,
                         help="draws the weights, the validation split, the order and the augmentations "
                         f"(default {default.seed})")
    options.add_argument("--precision", help="auto, bf16, fp16 (CUDA) or fp32")
    options.add_argument("--device", help="auto, cpu, cuda or cuda:N (auto: the GPU where there is one)")
    options.add_argument("--out", help="parent folder of run directories (default runs)")
    options.add_argument("--name", help="run directory name")
    options.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="set any config key, e.g. --set schedule.warmup_epochs=1")
    options.add_argument("--quiet", action="store_true", help="print only the run directory")
    options.add_argument("--no-report", dest="report", action="store_false", default=None,
                         help="skip the pictures and report.html (metrics.json is still written)")
    options.add_argument("--tensorboard", action="store_true", default=None,
                       help="also log to RUN/tensorboard (pip install 'cnnlab[tensorboard]')")
    options.add_argument("--towers", metavar="DEV0,DEV1",
                       help="alexnet: the paper's two towers on two devices, e.g. cuda:0,cuda:1")
    options.add_argument("--sync-bn", action="store_true", default=None,
                       help="distributed: BatchNorm statistics over every process's share")
    options.add_argument("--normalize", choices=list(NORMALIZATIONS),
                       help="; ".join(f"{name}: {text}" for name, text in NORMALIZATIONS.items())
                       + " (default: as the published ImageNet files --weights names were trained, imagenet or "
                         "weights; dataset otherwise)")
    options.add_argument("--mean", type=float, nargs="+", metavar="M",
                         help="with --std: standardise with this mean of pixels on the 0-1 scale, one value for all "
                         "channels or one per channel (--mean 0 --std 1: pixels/255, as Keras' Rescaling(1/255))")
    options.add_argument("--std", type=float, nargs="+", metavar="S", help="with --mean: divide by this std")
    train = commands.add_parser("train", parents=[options], help="train a model and write a run directory",
                                description="Train a model. Flags override --config, which "
                                "overrides the defaults; the resolved config is saved in the run.")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run directory")
    train.add_argument("--check", action="store_true",
                       help="check every option, the data listing and --weights, then stop "
                       "(nothing is decoded, trained or written)")
    launch = train.add_argument_group(
        "distributed training (hands the same command to torch.distributed.run, i.e. torchrun)")
    launch.add_argument("--nproc-per-node", type=positive_int, metavar="N", help="processes on this machine")
    launch.add_argument("--nnodes", type=positive_int, metavar="M", help="machines (default 1)")
    launch.add_argument("--node-rank", type=int, metavar="R", help="this machine's rank (0..M-1)")
    launch.add_argument("--rdzv-endpoint", type=endpoint, metavar="HOST:PORT",
                        help="where the machines meet (c10d rendezvous on the first machine)")


    lr_find = commands.add_parser(
        "lr-find", parents=[options], help="find a learning rate: loss against a rising lr",
        description="Train for a few steps while the learning rate rises exponentially (Smith, "
        "2017; fastai's lr_find), plot the loss against it and suggest a learning rate. Takes "
        "the options of train; nothing is written but the plot.")
    lr_find.add_argument("--start-lr", type=float, default=1e-7,
                         help="the first step's learning rate (default %(default)s)")
    lr_find.add_argument("--end-lr", type=float, default=10.0,
                         help="the last step's learning rate (default %(default)s)")
    lr_find.add_argument("--steps", type=int, default=100,
                         help="training steps from --start-lr to --end-lr (default %(default)s)")
    lr_find.add_argument("--plot", metavar="FILE.png",
                         help="where the loss against the learning rate is drawn (default "
                         "lr-find-MODEL-DATA.png: a search does not draw over another's)")

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a run's best checkpoint",
        description="Evaluate a run's best checkpoint with the run's own preprocessing. On the "
        "run's own data: its recorded split (default val). On other data (--data): its test "
        "split where it has one, else every image, classes matched by name; the results go to "
        "RUN/evaluations/NAME/ and their own section of report.html, never over the run's own.")
    evaluate.add_argument("run", metavar="RUN", help="a run directory (train --out/--name)")
    evaluate.add_argument("--data", help="data SPEC (default: the run's own data)")
    evaluate.add_argument("--split", choices=("val", "test", "train"),
                          help="default: val on the run's own data (test if it has none), test (else all) on other data")
    evaluate.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                          help="source option for --data, e.g. --set roi_crop=false (default: "
                          "the run's own where that source takes them)")
    evaluate.add_argument("--batch-size", type=positive_int, help="images per batch (default: the run's)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--tta", choices=TTA_MODES, help=TTA_HELP)
    evaluate.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)
    evaluate.add_argument("--no-report", dest="report", action="store_false",
                          help="write metrics.json and the predictions only: no pictures, no report.html")

    predict = commands.add_parser("predict", help="classify image files with a run")
    predict.add_argument("run", metavar="RUN", help="a run directory: its best checkpoint classifies")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER|GLOB|URL",
                         help="image files, folders (every image in them, sub-folders too), patterns such "
                         "as '*.jpg', http(s) addresses, or a Hugging Face dataset's .parquet or .arrow files (a "
                         "row an image, named FILE:ROW from 0); or CSV tables of pixels (Kaggle's test.csv), a "
                         "row an image, named FILE:ROW from 1")
    predict.add_argument("--top-k", type=int, default=5, help="the K most likely classes per image (default %(default)s)")
    predict.add_argument("--tta", choices=TTA_MODES, help=TTA_HELP)
    predict.add_argument("--boxes", type=Path, metavar="CSV",
                         help="crop each image to its sign box, as a run trained with roi_crop read its images: "
                              "a GTSRB annotation CSV (GT-final_test.csv, Test.csv) naming the images")
    predict.add_argument("--format", default="table", choices=("table", "csv", "json"), help=FORMAT_HELP)
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    completion = commands.add_parser("completion", help="print a shell completion script",
                                     description='bash (zsh: autoload bashcompinit && bashcompinit); '
                                     'eval "$(cnnlab completion bash)" in ~/.bashrc')
    completion.add_argument("shell", choices=("bash",), help="the shell to complete in")

    recipes = commands.add_parser("recipes", help="list the bundled recipes (train --config NAME)")
    recipes.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)

    models = commands.add_parser("models", help="list the models")
    models.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                        help="only the models whose names match, e.g. 'alexnet*' (shell-style, as timm.list_models)")
    models.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)

    summary = commands.add_parser("summary", help="Keras-style summary of a model")
    summary.add_argument("model", metavar="NAME", help="a model name (cnnlab models)")
    summary.add_argument("--input", type=size_arg, metavar="HxWxC", help="input size (default: the model's own)")
    summary.add_argument("--classes", type=positive_int, help="number of classes (default: the model's own)")
    summary.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                         help="model option, e.g. --set groups=1")
    summary.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)

    compare = commands.add_parser("compare", help="overlay the curves of several runs")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="a run, or a folder: its runs and its sub-folders'")
    compare.add_argument("--out", default="compare.html", help="HTML file (a PNG is written beside it)")

    listing = commands.add_parser("runs", help="the runs of a folder: model, data, epochs, accuracy, state")
    listing.add_argument("folder", nargs="?", default="runs", metavar="FOLDER",
                         help="where the runs are (train --out; default runs), in sub-folders too, up to "
                         "four folders down")
    listing.add_argument("--sort", default="time", choices=("time", "val_accuracy", "test_accuracy"),
                         help="oldest first (default), or the most accurate first")
    listing.add_argument("--by-seed", action="store_true",
                         help="one row per setting: runs whose configs differ in the seed only, with the mean, "
                         "spread and range of their accuracies, and what sets each setting apart")
    listing.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)

    export = commands.add_parser("export", help="export a run's best model")
    export.add_argument("run", metavar="RUN", help="a run directory: its best checkpoint is exported")
    export.add_argument("--format", default="onnx", choices=("onnx", "safetensors"),
                        help="an ONNX graph with the preprocessing in its metadata, or the weights alone "
                        "(default %(default)s)")
    export.add_argument("--opset", type=int, default=17, help="ONNX operator set (default %(default)s)")
    export.add_argument("--out", help="file to write (default RUN/model.onnx or RUN/model.safetensors)")

    data = commands.add_parser("data", help="inspect data sources")
    data_commands = data.commands = data.add_subparsers(dest="data_command", required=True, parser_class=Parser,
                                                        metavar="COMMAND")
    info = data_commands.add_parser("info", help="class counts per split, sizes, mean and std")
    info.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    info.add_argument("--val-split", type=float, default=0.1, help="fraction held out per class (default %(default)s)")
    info.add_argument("--seed", type=int, default=0, help="draws the validation split (default %(default)s)")
    info.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                      help="source option, e.g. --set label_mode=coarse")
    info.add_argument("--preview", metavar="FILE.png|FILE.jpg",
                      help="draw a grid of samples per class; with --augment or --crop, each sample as "
                      "evaluation sees it and as training augments it")
    info.add_argument("--image-size", type=size_arg, metavar="HxW",
                      help="decode image files at this size (default 64x64; arrays as stored)")
    info.add_argument("--crop", type=size_arg, metavar="HxW", help="the model's input, cut from the decoded image")
    info.add_argument("--augment", action="append", default=[], metavar="NAME",
                      help="training augmentations to draw in --preview, as train --augment takes them")
    info.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)

    check = data_commands.add_parser("verify", help="decode every image file; list the unreadable ones")
    check.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    check.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                       help="source option, e.g. --set roi_crop=true")

    cache = data_commands.add_parser("cache", help="list the decoded images and extracted archives kept on disk, "
                                     "or clear them",
                                     description="File-based sources are decoded once into $CNNLAB_CACHE "
                                     "(default ~/.cache/cnnlab), one cache per data set and size, and archives "
                                     "given as data are extracted into $CNNLAB_DATA/extracted. List them, or remove "
                                     "them (they are decoded or extracted again when next needed).")
    cache.add_argument("--clear", action="store_true", help="remove the caches (downloads are kept)")
    cache.add_argument("--older-than", type=days_arg, metavar="DAYS",
                       help="with --clear: only those unused for DAYS days")
    bench = data_commands.add_parser("bench", help="img/s of decoding and of augmented batches")
    bench.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    bench.add_argument("--image-size", type=size_arg, metavar="HxW",
                       help="decode image files at this size (default 64x64)")
    bench.add_argument("--crop", type=size_arg, metavar="HxW", help="the model's input, cut from the decoded image")
    bench.add_argument("--augment", action="append", default=[], metavar="NAME",
                       help="a training augmentation, as train --augment takes it; repeat for several")
    bench.add_argument("--batch-size", type=positive_int, default=128, help="images per batch (default %(default)s)")
    bench.add_argument("--batches", type=int, default=50, help="augmented batches to time (default %(default)s)")
    bench.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                       help="source option, e.g. --set roi_crop=true")
    bench.add_argument("--format", default="table", choices=("table", "json"), help=FORMAT_HELP)
    return parser


def console_main() -> int:
    """The ``cnnlab`` command (and ``python -m cnnlab``): restarts itself with tcmalloc preloaded
    where it is installed (launcher.py), then runs ``main``. Python callers of ``main`` keep
    their process."""
    launcher.reexec_with_fast_allocator(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        # a file name that is not UTF-8 prints as its bytes, whatever the locale's error handler
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")
    return main()


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run stops between writes and says how to resume."""


def _terminate(signum, frame):
    raise Terminated()


def one_line_warning(message, category, filename, lineno, file=None, line=None, given: Spell = str) -> None:
    """Warnings as one line each, ``cnnlab: warning: ...``, not Python's source excerpt; the
    options they name as flags (the one they are about as ``given`` spells it)."""
    if isinstance(message, OptionNamed):
        message.respell(flag_for, given)
    print(f"cnnlab: warning: {message}", file=file or sys.stderr)


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""What a write refused for want of room raises: the command's output printed to a file on a
full disk (or a write of its own that names no file)."""


def discard_output() -> None:
    """Send what is left unwritten on stdout nowhere, so the interpreter's exit does not fail
    writing it again (a stdout without a file, as a notebook's, has nothing left)."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    # the processes of a distributed run meet the same errors: the first one says it
    speaks = int(os.environ.get("RANK", 0)) == 0
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread of the interpreter: leave signals alone
        previous = None
    given = named_as_given(args)
    shown, warnings.showwarning = warnings.showwarning, functools.partial(one_line_warning, given=given)
    try:
        code = COMMANDS[args.command](args) or 0
        sys.stdout.flush()  # here, so a full disk under the output is this command's error
        return code
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        if speaks:
            print(f"cnnlab: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head and the like
        discard_output()
        return 0
    except CnnlabError as exc:
        exc.respell(flag_for, given)
        if speaks:
            print(f"{args.prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, TrainingDiverged) else EXIT_USAGE
    except OSError as exc:
        if exc.filename is None and exc.errno in NO_ROOM:
            discard_output()
            if speaks:
                with contextlib.suppress(OSError):  # the error output may be on the full disk too
                    print(f"{args.prog}: error: cannot write its output ({exc.strerror})", file=sys.stderr)
            return EXIT_USAGE
        if exc.filename is None:  # not about a path the user gave: a fault to see in full
            raise
        # a path the system refuses before cnnlab can judge it (a name over 255 bytes, say)
        if speaks:
            print(f"{args.prog}: error: {one_line(str(exc.filename))}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


CONFIG_FLAGS = {
    "model": "model.name", "data": "data.spec", "epochs": "epochs", "batch_size": "batch_size",
    "lr": "optimizer.lr", "optimizer": "optimizer.name", "momentum": "optimizer.momentum",
    "weight_decay": "optimizer.weight_decay", "schedule": "schedule.name", "loss": "loss",
    "label_smoothing": "label_smoothing", "early_stopping": "early_stopping.patience",
    "val_split": "data.val_split", "subset": "data.subset", "image_size": "data.image_size",
    "crop": "data.crop", "channels": "data.channels", "augment": "data.augment",
    "label_mode": "data.options.label_mode", "roi_crop": "data.options.roi_crop",
    "categories": "data.options.categories", "weights": "model.weights", "init": "model.options.init",
    "groups": "model.options.groups", "freeze_base": "model.options.freeze_base",
    "unfreeze_after": "model.unfreeze_after", "trainable_base_layers": "model.trainable_base_layers",
    "base_lr_scale": "model.base_lr_scale", "seed": "seed",
    "precision": "precision", "device": "device", "out": "out", "name": "name", "sync_bn": "sync_bn",
    "normalize": "data.normalize", "tensorboard": "tensorboard", "class_weight": "class_weight",
    "report": "report", "clip_grad_norm": "clip_grad_norm", "accumulate": "accumulate", "ema": "ema",
    "towers": "towers", "mean": "data.mean", "std": "data.std",
}
"""The train options that set a config key: argparse's name for each -> the key."""


def config_flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The train options given, as their argparse names -> the values their keys take."""
    values = {dest: getattr(args, dest) for dest in CONFIG_FLAGS if getattr(args, dest) is not None}
    for dest in ("image_size", "crop"):
        if dest in values:
            values[dest] = values[dest][:2]
    if "categories" in values:
        values["categories"] = category_arg(values["categories"])
    if "towers" in values:
        values["towers"] = [part.strip() for part in values["towers"].split(",")]
    return values


def flag_name(dest: str) -> str:
    return "--no-report" if dest == "report" else "--" + dest.replace("_", "-")


OPTION_DESTS = {**{dest: dest for dest in CONFIG_FLAGS}, **{key: dest for dest, key in CONFIG_FLAGS.items()},
                **{name: name for name in ("tta", "split", "top_k", "resume", "opset", "start_lr", "end_lr", "steps",
                                            "boxes")}}
"""The options the core names in its messages (config keys such as ``data.val_split``, the
Python API's keywords such as ``val_split`` and ``top_k``) -> argparse's name of their flag."""


def flag_for(option: str) -> str:
    """The flag that sets ``option``; a config key without one (``schedule.warmup_epochs``, set
    with --set or in a recipe) as it is."""
    return flag_name(OPTION_DESTS[option]) if option in OPTION_DESTS else option


def named_as_given(args: argparse.Namespace) -> Spell:
    """``option`` as this command line gave it: by its flag where that was given, else as it
    is (a config key, from --config or --set)."""
    return lambda option: (flag_for(option) if getattr(args, OPTION_DESTS.get(option, ""), None) is not None
                           else option)


def train_config(args: argparse.Namespace):
    from .config import TrainConfig, parse_override
    from .training.setup import with_data

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    flags = config_flag_values(args)
    settings = dict(parse_override(item) for item in args.set)
    path = config.data.spec.partition(":")[2]
    if (args.config and "data" not in flags and "data.spec" not in settings and path
            and not Path(path).expanduser().exists()):
        raise CnnlabError(f"--config {args.config}: its data.spec, {config.data.spec}, names nothing here; give "
                          "--data SPEC (a bundled recipe's data is a placeholder)")
    config = with_data(config, settings.get("data.spec", flags.get("data")))
    # no source: a value of the wrong kind is named by its key, which main() writes as the flag
    config = config.with_overrides({CONFIG_FLAGS[dest]: value for dest, value in flags.items()}, source=None)
    return config.with_overrides(settings, source="--set") if settings else config


def recipe_note(args: argparse.Namespace, config) -> str | None:
    """Training with no recipe: the bundled recipes for its data, which were measured on real
    images (docs/results.md), where the defaults were not."""
    from .config import RECOMMENDED, TrainConfig, recipes_for
    from .data.sources import source_name

    if args.config or args.resume:
        return None
    source = source_name(config.data.spec)
    if args.model is not None or any(item.partition("=")[0].strip() == "model.name" for item in args.set):
        names = recipes_for(source, config.model.name)
        return (f"note: --config {' (or '.join(names)}{')' * (len(names) - 1)} is cnnlab's recipe for "
                f"{config.model.name} on {source} data (cnnlab recipes); without one, training uses the defaults"
                if names else None)
    names = recipes_for(source)
    if not names:
        return None
    default = f"note: no --model given, so {TrainConfig().model.name}, the default (LeNet-5, for 28x28 digits); "
    if source not in RECOMMENDED:
        return default + f"cnnlab's recipes for {source} data: {', '.join(names)} (--config NAME; cnnlab recipes)"
    others = [name for name in names if name != RECOMMENDED[source]]
    return (default + f"for {source} data cnnlab recommends --config {RECOMMENDED[source]} (docs/results.md)"
            + (f", and has {', '.join(others)}" if others else "") + " (cnnlab recipes)")


def category_arg(text: str) -> int | list[str]:
    return int(text) if text.isdigit() else [part.strip() for part in text.split(",") if part.strip()]


LAUNCH_FLAGS = {"--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint"}


def cmd_train(args: argparse.Namespace) -> int:
    from .api import resume
    from .training.setup import RESUME_CHANGES, train

    if args.resume:
        changeable = [dest for key in RESUME_CHANGES for dest, flagged in CONFIG_FLAGS.items() if flagged == key]
        given = [flag_name(dest) for dest in config_flag_values(args) if dest not in changeable]
        given += ["--config"] * bool(args.config) + ["--set"] * bool(args.set)
        if given:
            raise CnnlabError(f"--resume: continues the run's own config; only "
                              f"{', '.join(flag_name(dest) for dest in changeable[:-1])} and "
                              f"{flag_name(changeable[-1])} may change (drop {'/'.join(given)})")
    processes = (args.nproc_per_node or 1) * (args.nnodes or 1)
    if processes == 1:  # these would be ignored, the run trained alone
        if args.rdzv_endpoint:
            raise CnnlabError(f"--rdzv-endpoint {args.rdzv_endpoint}: is where the machines of a run on several meet; "
                              "give --nnodes M too (one process on one machine needs none)")
        if args.node_rank is not None:
            raise CnnlabError(f"--node-rank {args.node_rank}: is this machine's place among several; give --nnodes M "
                              "and --rdzv-endpoint HOST:PORT too")
    if args.check:
        return check_training(args)
    if processes > 1 and "LOCAL_RANK" not in os.environ:
        return launch_distributed(args)
    if args.resume:
        run = resume(args.resume, epochs=args.epochs, quiet=args.quiet, report=args.report, device=args.device,
                     precision=args.precision, data=args.data)
    else:
        config = train_config(args)
        run = train(config, quiet=args.quiet, notes=[note] if (note := recipe_note(args, config)) else [])
    if args.quiet and int(os.environ.get("RANK", 0)) == 0:
        print(run.path)
    return 0


def resolved_config(args: argparse.Namespace):
    """The config a train command runs: the flags over --config, or a resumed run's own with
    the flags a resume may change."""
    from .training.setup import resumed_config

    if not args.resume:
        return train_config(args)
    return resumed_config(args.resume, {CONFIG_FLAGS[dest]: value for dest, value in config_flag_values(args).items()},
                          source=None)


def check_training(args: argparse.Namespace) -> int:
    from .training.setup import plan

    steps = plan(resolved_config(args), args.resume)
    config, runtime = steps.config, steps.runtime
    splits = ", ".join(f"{name} {size}" for name, size in steps.split_sizes().items())
    print(f"{config.model.name} on {config.data.spec}: {len(steps.source.classes)} classes ({splits}), "
          f"input {steps.input_size[0]}x{steps.input_size[1]}x{steps.channels} decoded at "
          f"{steps.image_size[0]}x{steps.image_size[1]}, {runtime.device} {runtime.precision}")
    for note in [*steps.notes, *steps.input_notes, *steps.layer_notes, recipe_note(args, config)]:
        if note:
            print(note)
    print("every option checks out")
    return 0


def launch_distributed(args: argparse.Namespace) -> int:
    """Run the same command in N processes per machine under torch.distributed.run (torchrun):
    the options are checked here first, so a mistake is one line, not one per process."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from .runtime import cpu_count
    from .training.setup import plan

    procs, nodes = args.nproc_per_node or 1, args.nnodes or 1
    if args.node_rank is not None and not 0 <= args.node_rank < nodes:
        raise CnnlabError(f"--node-rank {args.node_rank}: must be from 0 to {nodes - 1} (one rank per machine of "
                          f"--nnodes {nodes})")
    plan(resolved_config(args), args.resume)
    launch = ["--nproc-per-node", str(procs), "--nnodes", str(nodes)]
    if args.rdzv_endpoint:
        launch += ["--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint]
        if args.node_rank is not None:
            launch += ["--node-rank", str(args.node_rank)]
    elif nodes > 1:
        raise CnnlabError("--nnodes: several machines need --rdzv-endpoint HOST:PORT (the first machine's)")
    else:
        launch.append("--standalone")
    command, skip = [], False
    for item in args.argv:
        flag = item.split("=", 1)[0]
        if skip:
            skip = False
        elif flag in LAUNCH_FLAGS:
            skip = "=" not in item
        else:
            command.append(item)
    # torchrun installs its own SIGINT/SIGTERM handlers and reads the thread count from the
    # environment: a Python caller (a notebook) gets its own handlers and environment back
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    threads_unset = "OMP_NUM_THREADS" not in os.environ
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_count() // procs)))
    try:
        torchrun.main([*launch, "-m", "cnnlab", *command])
    except ChildFailedError as failure:
        return next(iter(failure.failures.values())).exitcode or EXIT_FAILED
    except SignalException:  # the processes were stopped too, each between two writes
        return EXIT_TERMINATED
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
        if threads_unset:
            os.environ.pop("OMP_NUM_THREADS", None)
    return 0


def described(name: str, descriptions: dict[str, str]) -> str:
    """The last column of a table of classes: what the class is, where the data says."""
    return f"  {descriptions[name]}" if name in descriptions else ""


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate
    from .reports.html import per_class_table
    from .runs import duration, load_run

    run = load_run(args.run, whole=False)  # read once: evaluated, then its class descriptions for the table
    metrics = evaluate(run, args.data, args.split, batch_size=args.batch_size,
                       device=args.device, tta=args.tta, options=data_options(args), report=args.report)
    if args.format == "json":
        print(json.dumps(metrics, indent=2))
        return 0
    split = metrics["split"]
    print(f"{'all images' if split == 'all' else split} ({metrics['samples']} samples of {metrics['data']})")
    for key in ("loss", "accuracy", "top5_accuracy", "mse"):
        if key in metrics:
            print(f"  {key:<15}{metrics[key]:.4f}")
    auc = metrics["roc_auc"]
    if auc["macro"] is not None:
        print(f"  {'roc_auc':<15}{auc['macro']:.4f} macro, {auc['micro']:.4f} micro")
    print(f"  {'ece':<15}{metrics['calibration']['ece']:.4f} ({len(metrics['calibration']['bins'])} bins)")
    print(f"  {'speed':<15}{metrics['images_per_second']:,.0f} img/s: {metrics['samples']:,} images in "
          f"{duration(metrics['seconds'])}, {metrics['machine']}")
    print(f"\n{'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    rows, left_out = per_class_table(metrics)
    for name, row in rows:
        print(f"{name[:19]:<20}{row['precision']:>10.4f}{row['recall']:>10.4f}"
              f"{row['f1']:>10.4f}{row['support']:>10}{described(name, run.descriptions)}")
    if left_out:
        print(left_out)
    print(f"\nsaved to {metrics['saved_to']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .evaluation.predict import predict_in_chunks
    from .runs import class_label, duration

    names, chunks = predict_in_chunks(args.run, args.inputs, args.top_k, tta=args.tta, device=args.device,
                                      boxes=args.boxes)
    width = max(len(name) for name in names)
    predicted = skipped = 0
    seconds, machine = 0.0, ""
    # each chunk is printed as it comes: a large folder shows results at once
    for part in chunks:
        for path, reason in part.unreadable.items():
            print(f"cnnlab predict: skipped {path}: {reason}", file=sys.stderr)
        buffer = io.StringIO()
        if args.format == "json":  # json.dumps(all, indent=2), an item at a time
            for number, p in enumerate(part.predictions, start=predicted):
                top = [{"class": c, "probability": q} | ({"description": part.descriptions[c]}
                                                          if c in part.descriptions else {}) for c, q in p.top]
                item = json.dumps({"path": p.path, "top": top}, indent=2)
                buffer.write(("[\n  " if number == 0 else ",\n  ") + item.replace("\n", "\n  "))
        elif args.format == "csv":
            writer = csv.writer(buffer, lineterminator="\n")
            if predicted == 0 and part.predictions:
                k = len(part.predictions[0].top)
                writer.writerow(["path"] + [f"{x}{i}" for i in range(1, k + 1) for x in ("class", "probability")])
            for p in part.predictions:
                writer.writerow([p.path] + [v for c, q in p.top for v in (c, f"{q:.6f}")])
        else:
            for p in part.predictions:
                shown = ", ".join(f"{class_label(c, part.descriptions)} {q:.1%}" for c, q in p.top)
                buffer.write(f"{p.path:<{width}}  {shown}\n")
        predicted += len(part.predictions)
        skipped += len(part.unreadable)
        seconds, machine = seconds + part.seconds, part.machine
        print(buffer.getvalue(), end="", flush=True)
    if args.format == "json":
        print("\n]" if predicted else "[]")
    elif args.format == "table" and predicted:
        print(f"{predicted:,} image{'s' if predicted != 1 else ''} in {duration(seconds)}: {predicted / seconds:,.0f} img/s, "
              f"decoding included, with {machine}")
    return 1 if skipped and not predicted else 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .runs import data_name, file_safe
    from .training.lr_find import find_lr

    config = train_config(args)
    plot = Path(args.plot or f"lr-find-{file_safe(config.model.name)}-{data_name(config.data.spec)}.png")
    finding = find_lr(config, args.start_lr, args.end_lr, args.steps, plot)
    print(f"suggested learning rate: {finding.steepest:.2e} (steepest descent of the loss); "
          f"{finding.minimum:.2e} is a tenth of the lowest loss's")
    print(f"{len(finding.lrs)} steps from {finding.lrs[0]:.1e} to {finding.lrs[-1]:.1e}; plot: {plot}")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from .completion import bash_script
    from .config import bundled_recipes
    from .data import SOURCES
    from .models import MODELS

    print(bash_script(build_parser(), MODELS.names(), list(bundled_recipes()), SOURCES.names()), end="")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .config import TrainConfig, bundled_recipes

    rows = []
    for name, path in bundled_recipes().items():
        config = TrainConfig.from_yaml(path)
        comment = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                        if line.startswith("#")), "")
        rows.append({"name": name, "model": config.model.name, "data": config.data.spec.split(":")[0],
                     "epochs": config.epochs, "about": comment, "file": str(path)})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'recipe':<{width}}  {'model':<16}{'data':<12}{'epochs':>6}  about")
    for row in rows:
        about = row["about"] if len(row["about"]) <= 70 else row["about"][:67] + "..."
        print(f"{row['name']:<{width}}  {row['model']:<16}{row['data']:<12}{row['epochs']:>6}  {about}")
    print("\ncnnlab train --config NAME --data SPEC (the data SPEC of a recipe is a placeholder)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS, list_models

    infos = [MODELS.get(name) for name in list_models(args.pattern)]
    if not infos:
        raise CnnlabError(f"no model matches '{args.pattern}'; the models: {', '.join(list_models())}")
    if args.format == "json":
        print(json.dumps([{"name": i.name, "input_size": list(i.input_size), "classes": i.num_classes,
                           "params": i.params, "options": i.options, "source": i.source,
                           "description": i.description} for i in infos], indent=2))
        return 0
    print(f"{'model':<16}{'input':<13}{'classes':>8}{'params':>14}  source")
    for i in infos:
        size = "x".join(map(str, i.input_size))
        print(f"{i.name:<16}{size:<13}{i.num_classes:>8}{i.params:>14,}  {i.source}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    import torch

    from .config import parse_override
    from .models import MODELS, create_model, summarize

    info = MODELS.get(args.model)
    height, width, channels = (args.input + [info.input_size[2]])[:3] if args.input else info.input_size
    options = dict(parse_override(item) for item in args.set)
    with torch.device("meta"):  # shapes and counts only: no memory for weights a summary never reads
        model = create_model(args.model, args.classes, channels, (height, width), **options)
    summary = summarize(model, (height, width, channels), args.model)
    print(json.dumps(summary.to_dict(), indent=2) if args.format == "json" else summary.table())
    return 0


def data_options(args: argparse.Namespace) -> dict:
    from .config import parse_override

    return dict(parse_override(item) for item in args.set)


def cmd_data_verify(args: argparse.Namespace) -> int:
    from .data.inspect import verify

    checked, unreadable = verify(args.spec, data_options(args))
    for path, reason in unreadable.items():
        print(f"{path}: {reason}")
    if checked is None:
        print(f"{args.spec}: its pixels are arrays inside the data files, which were read whole")
    else:
        print(f"{checked} images checked, {len(unreadable)} unreadable")
    return 1 if unreadable else 0


def cmd_data_bench(args: argparse.Namespace) -> int:
    from .data.inspect import bench

    result = bench(args.spec, args.image_size and args.image_size[:2], args.crop and args.crop[:2],
                   args.augment, args.batch_size, args.batches, data_options(args))
    if args.format == "json":
        print(json.dumps(result, indent=2))
        return 0
    decode = result["decode_images_per_second"]
    print(f"{result['spec']}: {result['images']} images at {'x'.join(map(str, result['image_size']))}, "
          f"{result['threads']} threads, on {result['cpu']}")
    print(f"  decode into cache: {f'{decode:,.0f} img/s' if decode else 'nothing to decode (pixels ship in the files)'}"
          f" ({result['load_seconds']:.1f} s to load)")
    print(f"  augmented batches: {result['batch_images_per_second']:,.0f} img/s "
          f"(batch {result['batch_size']}, crop {'x'.join(map(str, result['crop']))}, "
          f"augment {', '.join(result['augment']) or 'none'})")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data.inspect import describe

    if (args.augment or args.crop) and not args.preview:
        raise CnnlabError("--augment and --crop shape the --preview picture; give --preview FILE.png")
    report, dataset = describe(args.spec, args.val_split, args.seed, args.image_size and args.image_size[:2],
                               options=data_options(args))
    if args.preview:
        from .reports import write_preview

        write_preview(dataset, Path(args.preview), args.augment, args.crop and args.crop[:2])
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['spec']}: {report['num_classes']} classes, {report['channels']} channel(s), "
          f"sizes {report['size_range']}")
    print(f"mean {', '.join(f'{m:.4f}' for m in report['mean'])}   "
          f"std {', '.join(f'{s:.4f}' for s in report['std'])}   ({report['stats_split']} split, 0-1 scale)")
    splits = list(report["counts"])
    print(f"\n{'class':<24}" + "".join(f"{s:>10}" for s in splits))
    for name in report["classes"]:
        print(f"{name[:23]:<24}" + "".join(f"{report['counts'][s][name]:>10}" for s in splits)
              + described(name, report["descriptions"]))
    print(f"{'total':<24}" + "".join(f"{sum(report['counts'][s].values()):>10}" for s in splits))
    if report["unreadable"]:
        print(f"\n{len(report['unreadable'])} unreadable files, left out of the counts above:")
        for path, reason in report["unreadable"].items():
            print(f"  {path}: {reason}")
    return 0


def cmd_data_cache(args: argparse.Namespace) -> int:
    from .data.cache import cache_entries, cache_root, clear_cache, readable_size
    from .data.download import data_home, data_home_usage
    from .data.readers.layout import clear_extracted, extracted_archives, extracted_home

    if args.older_than is not None and not args.clear:
        raise CnnlabError("--older-than: goes with --clear")
    def counted(entries, kind: str = "cache") -> str:
        return f"{len(entries)} {kind}{'s' * (len(entries) != 1)}, {readable_size(sum(e.bytes for e in entries))}"

    def used(seconds: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))

    def chosen_by(variable: str) -> str:
        return variable if os.environ.get(variable) else f"the default; {variable} moves it"

    if args.clear:
        removed, busy = clear_cache(args.older_than)
        extracted = clear_extracted(args.older_than)
        print(f"removed {counted(removed)}" + (f"; left {len(busy)} that a running process is decoding into"
                                                if busy else "")
              + (f"; {counted(extracted, 'extracted archive')}" if extracted else ""))
        return 0
    root = cache_root()
    entries = cache_entries(root)
    print(f"{root} ({chosen_by('CNNLAB_CACHE')})")
    if not entries:
        print("no decoded images kept")
    else:
        print(f"{'size':<11}{'images':>8}  {'decoded at':<12}{'last used':<18}source")
        for entry in entries:
            shape = "x".join(map(str, entry.shape)) if entry.shape else "?"
            images = f"{entry.images:,}" if entry.images is not None else "?"
            print(f"{readable_size(entry.bytes):<11}{images:>8}  {shape:<12}{used(entry.last_used):<18}"
                  f"{entry.source or '(not recorded)'}{'  (being decoded)' if entry.decoding else ''}")
        print(counted(entries))
    archives = extracted_archives()
    if archives:
        print(f"\narchives extracted into {extracted_home()} (--clear removes them too; each is extracted "
              "again when next read)")
        print(f"{'size':<11}{'last used':<18}folder")
        for archive in archives:
            print(f"{readable_size(archive.bytes):<11}{used(archive.last_used):<18}{archive.folder.name}")
        print(counted(archives, "extracted archive"))
    kept = data_home_usage(leave_out=extracted_home().name)
    if kept:
        print(f"\nkept in {data_home()} ({chosen_by('CNNLAB_DATA')}; --clear leaves them): downloads, URLs' copies, "
              "arrays given to train()")
        for name, size in kept:
            print(f"{readable_size(size):<11}{name}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    return DATA_COMMANDS[args.data_command](args)


def cmd_runs(args: argparse.Namespace) -> int:
    from .runs import run_table, seed_groups

    rows = seed_groups(Path(args.folder)) if args.by_seed else run_table(Path(args.folder))

    def figure(row: dict) -> float | None:
        value = row.get(args.sort)
        return value["mean"] if args.by_seed and value is not None else value

    if args.sort != "time":  # rows without the figure last
        rows.sort(key=lambda row: -1.0 if figure(row) is None else figure(row), reverse=True)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no runs in {args.folder}")
    elif args.by_seed:
        print_seed_groups(rows)
    else:
        print_runs(rows)
    return 0


def machine_legend(machines: list[list[str]]) -> tuple[str, list[str], list[str]]:
    """What a table's training times were measured on, given each row's machines: the heading
    and the rows' cells of an ``on`` column, and the lines under the table. One machine for
    every row: no column, a line naming it. Several: each row's numbers ("1", "1,2") and a
    legend."""
    every = list(dict.fromkeys(machine for row in machines for machine in row))
    if len(every) < 2:
        return "", [""] * len(machines), [f"training times: {machine}" for machine in every]
    marks = [",".join(str(every.index(machine) + 1) for machine in row) or "-" for row in machines]
    return f"{'on':>5}", [f"{mark:>5}" for mark in marks], [f"[{number}] {machine}"
                                                           for number, machine in enumerate(every, 1)]


def print_runs(rows: list[dict]) -> None:
    from .runs import row_texts

    width = max(len("run"), *(len(row["name"]) for row in rows)) + 1  # whole: a sweep's runs differ at the end
    on, marks, legend = machine_legend([[span["machine"] for span in row.get("trained_on", [])] for row in rows])
    print(f"{'run':<{width}}{'model':<14}{'data':<22}{'epochs':>8}{'val acc':>9}{'test acc':>9}{'training':>12}"
          f"{on}  status")
    for row, mark in zip(rows, marks, strict=True):
        texts = row_texts(row)
        print(f"{row['name']:<{width}}{texts['model'][:13]:<14}{texts['data'][:21]:<22}{texts['epochs']:>8}"
              f"{texts['val acc']:>9}{texts['test acc']:>9}{texts['training']:>12}{mark}  {texts['status']}")
    for line in legend:
        print(line)


def setting_text(value: Any) -> str:
    """A config value as a recipe writes it (YAML: ``[hflip, 'pad_crop:4']``, ``null``, ``true``),
    not Python's repr."""
    if isinstance(value, list | dict):
        import yaml

        return yaml.safe_dump(without_nulls(value), default_flow_style=True, width=10**6, sort_keys=False).strip()
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def without_nulls(value: Any) -> Any:
    """The mappings in ``value`` without their unset (None) keys, as a recipe leaves them out."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return [without_nulls(item) for item in value] if isinstance(value, list) else value


def print_seed_groups(groups: list[dict]) -> None:
    from .runs import duration

    def summary(figures: dict | None) -> str:
        if figures is None:
            return "-"
        deviation = "" if figures["std"] is None else f" ± {figures['std']:.2%}"
        return f"{figures['mean']:.2%}{deviation} ({figures['min']:.2%}-{figures['max']:.2%})"

    on, marks, legend = machine_legend([group.get("trained_on", []) for group in groups])
    print(f"{'runs':>5}  {'model':<14}{'data':<22}{'val acc: mean ± sd (lowest-highest)':<40}"
          f"{'test acc':<34}{'training (mean)':>15}{on}  differs in")
    for group, mark in zip(groups, marks, strict=True):
        differs = ", ".join(f"{key}={setting_text(value)}" for key, value in group["differs"].items()) or "-"
        seconds = group["training_seconds"]
        count = str(len(group["runs"]))
        if len(group["finished"]) < len(group["runs"]):
            count = f"{len(group['finished'])}/{count}"
        print(f"{count:>5}  {group['model'][:13]:<14}{group['data'][:21]:<22}"
              f"{summary(group['val_accuracy']):<40}{summary(group['test_accuracy']):<34}"
              f"{'-' if seconds is None else duration(seconds['mean']):>15}"
              f"{mark}  {differs}")
    for line in legend:
        print(line)
    if any(len(group["finished"]) < len(group["runs"]) for group in groups):
        print("N/M runs: the figures are those of the N finished runs of M; cnnlab runs lists the others "
              "(stopped, diverged or training now)")


def cmd_compare(args: argparse.Namespace) -> int:
    from .reports import compare

    print(compare(args.runs, Path(args.out)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, export_safetensors

    if args.format == "safetensors":
        print(export_safetensors(args.run, args.out))
    else:
        print(export_onnx(args.run, args.out, args.opset))
    return 0


COMMANDS = {"train": cmd_train, "lr-find": cmd_lr_find, "recipes": cmd_recipes, "completion": cmd_completion, "compare": cmd_compare, "runs": cmd_runs, "export": cmd_export, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "models": cmd_models, "summary": cmd_summary, "data": cmd_data}
DATA_COMMANDS = {"info": cmd_data_info, "verify": cmd_data_verify, "bench": cmd_data_bench,
                 "cache": cmd_data_cache}


if __name__ == "__main__":
    sys.exit(console_main())

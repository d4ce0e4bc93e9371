"""The ``cnnlab`` command: argument parsing and output formatting over the Python API.

User errors print one line naming the option or file and exit with code 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import launcher
from .errors import CnnlabError

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage plus message
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def size_arg(text: str) -> list[int]:
    """``HxW`` or ``HxWxC`` -> list of ints."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, e.g. 227x227x3; got '{text}'") from None
    if len(parts) not in (2, 3) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or HxWxC, e.g. 227x227x3; got '{text}'")
    return parts


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Train, evaluate and compare classic CNN image "
                    "classifiers (AlexNet, VGG-16, LeNet-5 and the tutorials' small CNNs).")
    parser.add_argument("--version", action="version", version=f"cnnlab {launcher.version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                     metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run directory",
                                description="Train a model. Flags override --config, which "
                                "overrides the defaults; the resolved config is saved in the run.")
    train.add_argument("--model", help="model name (see: cnnlab models); default lenet5")
    train.add_argument("--data", help="data SPEC: digits, mnist:PATH, folder:PATH; default digits")
    train.add_argument("--config", help="recipe YAML file")
    train.add_argument("--resume", metavar="RUN", help="continue an interrupted run directory")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--optimizer", help="sgd, adam, adamw or rmsprop")
    train.add_argument("--momentum", type=float)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--schedule", help="constant, exponential, step, multistep, cosine, plateau")
    train.add_argument("--loss", help="sparse_ce, categorical_ce or binary_ce")
    train.add_argument("--label-smoothing", type=float)
    train.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                       help="stop after PATIENCE epochs without improvement of val_loss")
    train.add_argument("--val-split", type=float, help="fraction held out per class (default 0.1)")
    train.add_argument("--subset", type=int, metavar="N", help="train on N samples (stratified)")
    train.add_argument("--image-size", type=size_arg, metavar="HxW",
                       help="decode images at this size (default: the model's input size)")
    train.add_argument("--crop", type=size_arg, metavar="HxW",
                       help="model input cut from the decoded image (random in training, centre "
                       "or ten crops in evaluation), e.g. --image-size 256x256 --crop 227x227")
    train.add_argument("--channels", type=int, choices=(1, 3))
    train.add_argument("--label-mode", choices=("fine", "coarse"), help="cifar100 labels")
    train.add_argument("--roi-crop", action="store_true", default=None,
                       help="gtsrb: crop each image to its annotated sign box")
    train.add_argument("--categories", help="caltech256: the first N categories, or names a,b,c")
    train.add_argument("--augment", action="append", metavar="NAME",
                       help="an augmentation (hflip, pad_crop[:PIXELS], random_resized_crop[:MIN], "
                       "pca_lighting[:STD], rotate[:DEG], scale[:F], translate[:F], brightness[:F], "
                       "contrast[:F], mixup[:ALPHA], cutmix[:ALPHA]); repeat for several")
    train.add_argument("--weights", help="start from a state dict or a run's best.pt")
    train.add_argument("--init", help="alexnet: default or paper")
    train.add_argument("--groups", type=int, help="alexnet: 2 (the paper's two towers) or 1")
    train.add_argument("--freeze-base", action="store_true", default=None,
                       help="vgg16-transfer: freeze the convolutional base")
    train.add_argument("--unfreeze-after", type=int, metavar="EPOCHS",
                       help="with --freeze-base: train the base too after EPOCHS epochs")
    train.add_argument("--base-lr-scale", type=float, metavar="F",
                       help="learning rate of the convolutional base relative to the head")
    train.add_argument("--seed", type=int)
    train.add_argument("--precision", help="auto, bf16 or fp32")
    train.add_argument("--device", help="auto, cpu or cuda")
    train.add_argument("--out", help="parent folder of run directories (default runs)")
    train.add_argument("--name", help="run directory name")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="set any config key, e.g. --set schedule.warmup_epochs=1")
    train.add_argument("--quiet", action="store_true", help="print only the run directory")

    evaluate = commands.add_parser("evaluate", help="evaluate a run's best checkpoint")
    evaluate.add_argument("run", metavar="RUN")
    evaluate.add_argument("--data", help="data SPEC (default: the run's own data and split)")
    evaluate.add_argument("--split", default="val", choices=("val", "test", "train"))
    evaluate.add_argument("--batch-size", type=int)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--tta", choices=("flip", "10crop"),
                          help="average the softmax over the image and its mirror image, or ten crops")
    evaluate.add_argument("--format", default="table", choices=("table", "json"))

    predict = commands.add_parser("predict", help="classify image files with a run")
    predict.add_argument("run", metavar="RUN")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE|FOLDER|GLOB")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--tta", choices=("flip", "10crop"),
                         help="average the softmax over the image and its mirror image, or ten crops")
    predict.add_argument("--format", default="table", choices=("table", "csv", "json"))

    models = commands.add_parser("models", help="list the models")
    models.add_argument("--format", default="table", choices=("table", "json"))

    summary = commands.add_parser("summary", help="Keras-style summary of a model")
    summary.add_argument("model", metavar="NAME")
    summary.add_argument("--input", type=size_arg, metavar="HxWxC")
    summary.add_argument("--classes", type=int)
    summary.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                         help="model option, e.g. --set groups=1")
    summary.add_argument("--format", default="table", choices=("table", "json"))

    compare = commands.add_parser("compare", help="overlay the curves of several runs")
    compare.add_argument("runs", nargs="+", metavar="RUN")
    compare.add_argument("--out", default="compare.html", help="HTML file (a PNG is written beside it)")

    export = commands.add_parser("export", help="export a run's best model")
    export.add_argument("run", metavar="RUN")
    export.add_argument("--format", default="onnx", choices=("onnx",))
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--out", help="file to write (default RUN/model.onnx)")

    data = commands.add_parser("data", help="inspect data sources")
    data_commands = data.add_subparsers(dest="data_command", required=True, parser_class=Parser,
                                        metavar="COMMAND")
    info = data_commands.add_parser("info", help="class counts per split, sizes, mean and std")
    info.add_argument("spec", metavar="SPEC")
    info.add_argument("--val-split", type=float, default=0.1)
    info.add_argument("--seed", type=int, default=0)
    info.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                      help="source option, e.g. --set label_mode=coarse")
    info.add_argument("--preview", metavar="FILE.png", help="draw a grid of samples per class")
    info.add_argument("--format", default="table", choices=("table", "json"))

    check = data_commands.add_parser("verify", help="decode every image file; list the unreadable ones")
    check.add_argument("spec", metavar="SPEC")
    check.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")

    bench = data_commands.add_parser("bench", help="img/s of decoding and of augmented batches")
    bench.add_argument("spec", metavar="SPEC")
    bench.add_argument("--image-size", type=size_arg, metavar="HxW")
    bench.add_argument("--crop", type=size_arg, metavar="HxW")
    bench.add_argument("--augment", action="append", default=[], metavar="NAME")
    bench.add_argument("--batch-size", type=int, default=128)
    bench.add_argument("--batches", type=int, default=50)
    bench.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE")
    bench.add_argument("--format", default="table", choices=("table", "json"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher.reexec_with_fast_allocator(argv)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        print("cnnlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CnnlabError as exc:
        from .training.trainer import TrainingDiverged

        print(f"cnnlab {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, TrainingDiverged) else EXIT_USAGE


def train_config(args: argparse.Namespace):
    from .config import TrainConfig, parse_override

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    flags = {
        "model.name": args.model, "data.spec": args.data, "epochs": args.epochs,
        "batch_size": args.batch_size, "optimizer.lr": args.lr, "optimizer.name": args.optimizer,
        "optimizer.momentum": args.momentum, "optimizer.weight_decay": args.weight_decay,
        "schedule.name": args.schedule, "loss": args.loss, "label_smoothing": args.label_smoothing,
        "early_stopping.patience": args.early_stopping, "data.val_split": args.val_split,
        "data.subset": args.subset, "data.image_size": args.image_size and args.image_size[:2],
        "data.crop": args.crop and args.crop[:2],
        "data.channels": args.channels, "data.augment": args.augment,
        "data.options.label_mode": args.label_mode, "data.options.roi_crop": args.roi_crop,
        "data.options.categories": args.categories and category_arg(args.categories),
        "model.weights": args.weights, "model.options.init": args.init,
        "model.options.groups": args.groups, "model.options.freeze_base": args.freeze_base,
        "model.unfreeze_after": args.unfreeze_after, "model.base_lr_scale": args.base_lr_scale,
        "seed": args.seed, "precision": args.precision, "device": args.device, "out": args.out,
        "name": args.name,
    }
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides.update(parse_override(item) for item in args.set)
    return config.with_overrides(overrides, source="option") if overrides else config


def category_arg(text: str) -> int | list[str]:
    return int(text) if text.isdigit() else [part.strip() for part in text.split(",") if part.strip()]


def cmd_train(args: argparse.Namespace) -> int:
    from .api import resume
    from .training.trainer import train

    if args.resume:
        if args.config or args.model or args.data:
            raise CnnlabError("--resume: continues the run's own config; drop --config/--model/--data")
        run = resume(args.resume, epochs=args.epochs, quiet=args.quiet)
    else:
        run = train(train_config(args), quiet=args.quiet)
    if args.quiet:
        print(run.path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate

    metrics = evaluate(args.run, args.data, args.split, batch_size=args.batch_size,
                       device=args.device, tta=args.tta)
    if args.format == "json":
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{args.split} ({metrics['samples']} samples of {metrics['data']})")
    for key in ("loss", "accuracy", "top5_accuracy", "mse"):
        if key in metrics:
            print(f"  {key:<15}{metrics[key]:.4f}")
    auc = metrics["roc_auc"]
    if auc["macro"] is not None:
        print(f"  {'roc_auc':<15}{auc['macro']:.4f} macro, {auc['micro']:.4f} micro")
    print(f"\n{'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    rows = {**metrics["per_class"], **{f"{k} avg": v for k, v in metrics["averages"].items()}}
    for name, row in rows.items():
        print(f"{name[:19]:<20}{row['precision']:>10.4f}{row['recall']:>10.4f}"
              f"{row['f1']:>10.4f}{row['support']:>10}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    result = predict(args.run, args.inputs, args.top_k, tta=args.tta)
    for path, reason in result.unreadable.items():
        print(f"cnnlab predict: skipped {path}: {reason}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps([{"path": p.path, "top": [{"class": c, "probability": q} for c, q in p.top]}
                          for p in result.predictions], indent=2))
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        k = max((len(p.top) for p in result.predictions), default=0)
        writer.writerow(["path"] + [f"{x}{i}" for i in range(1, k + 1) for x in ("class", "probability")])
        for p in result.predictions:
            writer.writerow([p.path] + [v for c, q in p.top for v in (c, f"{q:.6f}")])
        print(buffer.getvalue(), end="")
    else:
        width = max((len(p.path) for p in result.predictions), default=4)
        for p in result.predictions:
            top = ", ".join(f"{c} {q:.1%}" for c, q in p.top)
            print(f"{p.path:<{width}}  {top}")
    return 1 if result.unreadable and not result.predictions else 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import MODELS

    infos = [MODELS.get(name) for name in MODELS]
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
    from .config import parse_override
    from .models import MODELS, create_model, summarize

    info = MODELS.get(args.model)
    height, width, channels = (args.input + [info.input_size[2]])[:3] if args.input else info.input_size
    options = dict(parse_override(item) for item in args.set)
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
        print(f"{checked} files checked, {len(unreadable)} unreadable")
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
          f"{result['threads']} threads")
    print(f"  decode into cache: {f'{decode:,.0f} img/s' if decode else 'nothing to decode (pixels ship in the files)'}"
          f" ({result['load_seconds']:.1f} s to load)")
    print(f"  augmented batches: {result['batch_images_per_second']:,.0f} img/s "
          f"(batch {result['batch_size']}, crop {'x'.join(map(str, result['crop']))}, "
          f"augment {', '.join(result['augment']) or 'none'})")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data.inspect import describe

    report = describe(args.spec, args.val_split, args.seed, options=data_options(args),
                      preview=args.preview)
    if args.format == "json":
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['spec']}: {report['num_classes']} classes, {report['channels']} channel(s), "
          f"sizes {report['size_range']}")
    print(f"mean {', '.join(f'{m:.4f}' for m in report['mean'])}   "
          f"std {', '.join(f'{s:.4f}' for s in report['std'])}   (training split, 0-1 scale)")
    splits = list(report["counts"])
    print(f"\n{'class':<24}" + "".join(f"{s:>10}" for s in splits))
    for name in report["classes"]:
        print(f"{name[:23]:<24}" + "".join(f"{report['counts'][s][name]:>10}" for s in splits))
    print(f"{'total':<24}" + "".join(f"{sum(report['counts'][s].values()):>10}" for s in splits))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    return DATA_COMMANDS[args.data_command](args)


def cmd_compare(args: argparse.Namespace) -> int:
    from .reports import compare

    print(compare(args.runs, Path(args.out)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .models.export import export_onnx

    print(export_onnx(args.run, args.out, args.opset))
    return 0


COMMANDS = {"train": cmd_train, "compare": cmd_compare, "export": cmd_export, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "models": cmd_models, "summary": cmd_summary, "data": cmd_data}
DATA_COMMANDS = {"info": cmd_data_info, "verify": cmd_data_verify, "bench": cmd_data_bench}


if __name__ == "__main__":
    sys.exit(main())

"""Fuzzing: valid seed inputs of every parser, mutated (bit flips, truncation, inserted bytes,
header and dimension edits, wrong types, hostile values), fed to the real CLI entry in this
process. Every outcome must be success with correct data, or one line naming the file or option
and what is wrong with exit code 2 (1 for the findings of ``data verify``): never a traceback,
never longer than a time limit, never a silently wrong array.

The default suite runs a seeded sample of each kind (CNNLAB_FUZZ_SEED picks another); the slow
test runs many more. docs/reliability.md gives the counts.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import random
import shutil
import signal
import string
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.runs import RUN_JSON_SHAPES
from conftest import write_idx
from test_datasets import cifar_batch, sign, write_caltech, write_gtsrb_official
from test_hub_datasets import banded, write_hub_parquet

SEED = int(os.environ.get("CNNLAB_FUZZ_SEED", "0"))
FAST, SLOW = 8, 120
"""Cases per kind of input: in the default suite, and in the slow test."""
TIME_LIMIT = 30


class Hang(Exception):
    pass


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def call(argv: list[str]) -> Outcome:
    """``cnnlab ARGV`` in this process, with a time limit; any exception the CLI lets out fails
    the test with its traceback."""
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 2
    except Hang:
        pytest.fail(f"cnnlab {' '.join(map(str, argv))}: still running after {TIME_LIMIT} s")
    except BaseException:  # noqa: BLE001 - the point: nothing may escape the CLI
        pytest.fail(f"cnnlab {' '.join(map(str, argv))} raised:\n{traceback.format_exc()}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, out.getvalue(), err.getvalue())


def check(outcome: Outcome, argv_hint: str, allowed=(0, 2)) -> Outcome:
    assert outcome.code in allowed, f"{argv_hint}: exit {outcome.code}\n{outcome.err}"
    assert "Traceback" not in outcome.err, outcome.err
    if outcome.code == 2:
        errors = [line for line in outcome.err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("cnnlab"), outcome.err
    return outcome


# --- mutations -------------------------------------------------------------------------------

def flip_bits(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    kind = rng.choice(["flip", "truncate", "insert", "splice", "empty", "head"])
    if kind == "flip":
        return flip_bits(data, rng)
    if kind == "truncate":
        return data[: rng.randrange(len(data) + 1)]
    if kind == "insert":
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == "splice":
        a, b = sorted(rng.randrange(len(data) + 1) for _ in range(2))
        return data[:a] + data[a:b] * rng.randint(2, 4) + data[b:]
    if kind == "empty":
        return b""
    return flip_bits(data[:64], rng) + data[64:]  # the header


def mutate_text(text: str, rng: random.Random, delimiter: str = ",") -> str:
    lines = text.splitlines()
    kind = rng.choice(["drop_field", "add_field", "quote", "number", "drop_line", "header_only",
                       "blank", "bytes", "delimiter"])
    i = rng.randrange(len(lines)) if lines else 0
    if not lines or kind == "blank":
        return ""
    if kind == "drop_field":
        fields = lines[i].split(delimiter)
        fields.pop(rng.randrange(len(fields)))
        lines[i] = delimiter.join(fields)
    elif kind == "add_field":
        lines[i] += delimiter + rng.choice(["", "x", "7", '"'])
    elif kind == "quote":
        at = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:at] + '"' + lines[i][at:]
    elif kind == "number":
        fields = lines[i].split(delimiter)
        fields[rng.randrange(len(fields))] = rng.choice(["-1", "999999999", "2147483648", "1e9",
                                                         "nan", "", "0x10", "../../etc/passwd"])
        lines[i] = delimiter.join(fields)
    elif kind == "drop_line":
        lines.pop(i)
    elif kind == "header_only":
        lines = lines[:1]
    elif kind == "bytes":
        return flip_bits(text.encode(), rng).decode("latin-1")
    else:
        lines[i] = lines[i].replace(delimiter, ";" if delimiter == "," else ",")
    return "\n".join(lines) + "\n"


def cases(count: int, kind: str):
    for i in range(count):
        yield random.Random(f"{SEED}-{kind}-{i}")


# --- seed inputs and the fuzzing of each parser ------------------------------------------------

def mnist_folder(root: Path) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 20), ("t10k", 6)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)), 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
    return root


def fuzz_idx(tmp: Path, count: int) -> int:
    seed = mnist_folder(tmp / "seed")
    for n, rng in enumerate(cases(count, "idx")):
        folder = tmp / f"case{n}"
        shutil.copytree(seed, folder)
        target = rng.choice(sorted(folder.iterdir()))
        raw = gzip.decompress(target.read_bytes())
        if rng.random() < 0.5:  # the header's dimensions, then recompressed as it was
            dims = bytearray(raw)
            at = 4 + 4 * rng.randrange(max(1, (len(raw) >= 8) * raw[3]))
            dims[at: at + 4] = rng.choice([2**31, 2**32 - 1, 0, 1, 7, 784]).to_bytes(4, "big")
            data = gzip.compress(bytes(dims)) if rng.random() < 0.7 else bytes(dims)
        else:
            data = mutate_bytes(target.read_bytes(), rng)
        target.write_bytes(data)
        result = check(call(["data", "info", f"mnist:{folder}", "--format", "json"]), str(target))
        if result.code == 0:
            report = json.loads(result.out)
            low, high = report["size_range"].split(" to ")[0], report["size_range"].split(" to ")[-1]
            assert all(min(map(int, side.split("x"))) >= 2 for side in (low, high))
    return count


EVIL_VALUES = [None, "text", 3.5, [], {}, [[1, 2], [3]], np.full((20, 3072), 300, dtype=np.int64),
               np.full((20, 3072), -5, dtype=np.int64), np.full((20, 3072), np.nan),
               np.zeros((20, 3072), dtype=np.float64), [0.5] * 20, [-1] * 20, [10] * 20,
               [b"cat", b"cat"] + [f"c{i}".encode() for i in range(8)], [b"\xff\xfe"] * 10]
MUST_FAIL = {6, 7, 8, 9, 10, 11, 12, 13}
"""Indices of EVIL_VALUES that are wrong whatever key they replace: never accepted silently."""


def fuzz_cifar(tmp: Path, count: int) -> int:
    files = {f"data_batch_{i}": cifar_batch(20, 10) for i in range(1, 6)}
    files["test_batch"] = cifar_batch(10, 10)
    files["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    for n, rng in enumerate(cases(count, "cifar")):
        folder = tmp / f"case{n}" / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        name = rng.choice(sorted(files))
        mutated = dict(files)
        must_fail = False
        if rng.random() < 0.6:
            batch = pickle.loads(files[name], encoding="bytes")
            key = rng.choice(list(batch) + [b"missing"])
            index = rng.randrange(len(EVIL_VALUES))
            value = EVIL_VALUES[index]
            if value is None and key != b"missing" and rng.random() < 0.5:
                del batch[key]
            else:
                batch[key] = value
            must_fail = index in MUST_FAIL and key in (b"data", b"labels", b"label_names")
            mutated[name] = pickle.dumps(batch, protocol=2)
        else:
            mutated[name] = mutate_bytes(files[name], rng)
        for file_name, data in mutated.items():
            (folder / file_name).write_bytes(data)
        allowed = (2,) if must_fail else (0, 2)
        result = check(call(["data", "info", f"cifar10:{folder.parent}", "--format", "json"]), name, allowed)
        if result.code == 0:
            assert json.loads(result.out)["num_classes"] == 10
    return count


def kaggle_gtsrb(root: Path) -> Path:
    rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for c in range(3):
        for t in range(2):
            for i in range(2):
                rel = f"Train/{c}/{c:05d}_{t:05d}_{i:05d}.png"
                sign(root / rel, 24, (0, 200, 80 * c))
                rows.append(f"24,24,4,4,19,19,{c},{rel}")
    (root / "Train.csv").write_text("\n".join(rows) + "\n")
    return root


def fuzz_gtsrb(tmp: Path, count: int) -> int:
    official = write_gtsrb_official(tmp / "official", classes=3, tracks=2, shots=2)
    kaggle = kaggle_gtsrb(tmp / "kaggle")
    for n, rng in enumerate(cases(count, "gtsrb")):
        layout = rng.choice(["official", "kaggle"])
        root = tmp / f"case{n}"
        shutil.copytree(official if layout == "official" else kaggle, root)
        csvs = sorted(root.rglob("*.csv"))
        target = rng.choice(csvs)
        target.write_text(mutate_text(target.read_text(), rng, ";" if layout == "official" else ","),
                          encoding="latin-1")
        result = check(call(["data", "info", f"gtsrb:{root}", "--set", "roi_crop=true", "--format", "json"]),
                       str(target))
        if result.code == 0:
            report = json.loads(result.out)
            assert report["num_classes"] <= 43
            text = target.read_text(encoding="latin-1")
            assert "../../etc/passwd" not in text and ",-1," not in text and ";-1;" not in text
    return count


def claim_another_size(jpeg: bytes, rng: random.Random) -> bytes:
    """The JPEG with its frame header (SOF0) claiming another size, up to 65535 x 65535 (a
    decompression bomb as Pillow sees it) or 0 pixels a side."""
    at = jpeg.find(b"\xff\xc0")
    if at < 0:
        return mutate_bytes(jpeg, rng)
    height, width = (rng.choice([0, 1, rng.randrange(65536), 65535]) for _ in range(2))
    return jpeg[:at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9:]


def with_exif(image_file: bytes, rng: random.Random) -> bytes:
    """The image saved again as a JPEG with an EXIF orientation of any value (1-8 are
    defined), its EXIF block damaged half the time."""
    exif = Image.Exif()
    exif[0x0112] = rng.choice([0, 1, 2, 3, 5, 6, 7, 8, 9, 65535])
    encoded = io.BytesIO()
    with Image.open(io.BytesIO(image_file)) as image:
        image.convert("RGB").save(encoded, "JPEG", exif=exif)
    data = bytearray(encoded.getvalue())
    if rng.random() < 0.5:
        start = data.find(b"Exif")
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(start, min(len(data), start + 60))] = rng.randrange(256)
    return bytes(data)


def fuzz_caltech_and_images(tmp: Path, count: int) -> int:
    seed = write_caltech(tmp / "caltech")
    for n, rng in enumerate(cases(count, "images")):
        root = tmp / f"case{n}"
        shutil.copytree(seed, root)
        images = sorted(p for p in root.rglob("*") if p.is_file())
        for target in rng.sample(images, k=min(len(images), rng.randint(1, 3))):
            mutate = rng.choices([claim_another_size, with_exif, mutate_bytes], weights=[3, 3, 4])[0]
            target.write_bytes(mutate(target.read_bytes(), rng))
        if rng.random() < 0.3:  # an empty class folder, and a stray file
            (root / "256_ObjectCategories" / "999.empty").mkdir(parents=True, exist_ok=True)
            (root / "256_ObjectCategories" / "notes.txt").write_text("not an image")
        spec = f"caltech256:{root}"
        check(call(["data", "verify", spec]), spec, allowed=(0, 1, 2))
        check(call(["data", "info", spec, "--format", "json"]), spec)
        folder = root / "256_ObjectCategories"
        check(call(["data", "info", f"folder:{folder}", "--format", "json"]), str(folder))
    return count


RECIPE = """model: {name: mlp, options: {}}
data: {spec: digits, val_split: 0.1, image_size: [8, 8], augment: [hflip, "pad_crop:1"]}
optimizer: {name: sgd, lr: 0.01, momentum: 0.9}
schedule: {name: cosine, warmup_epochs: 1}
epochs: 2
batch_size: 16
checkpoint: {monitor: val_accuracy}
early_stopping: {monitor: val_loss, patience: 3}
"""
SET_VALUES = ["epochs=0", "epochs=2147483648", "batch_size=-3", "optimizer.lr=nan", "optimizer.lr=1e400",
              "data.image_size=[99999,99999]", "data.image_size=[0,8]", "data.crop=[9,9]",
              "data.augment=[rotate:-5]", "data.augment=[mixup:x]", "seed=1180591620717411303424",
              "checkpoint.monitor=val_acc", "schedule.name=plateau", "schedule.monitor=nothing",
              "model.options.groups=2", "data.options.roi_crop=true", "precision=fp8",
              "device=cuda:99", "data.normalize=sometimes", "loss=binary_ce", "data.val_split=1.5",
              "model.name=" + "[" * 60, "tensorboard=maybe", "data.channels=2", "towers=[cpu]",
              "label_smoothing=1.0", "data.augment=" + "[" * 5000, "optimizer.betas=[0.9,1.5]",
              "optimizer.weight_decay=-1", "optimizer.momentum=2", "optimizer.eps=0", "name=../x",
              "early_stopping.patience=-1", "model.unfreeze_after=0", "data.subset=0", "seed=-1",
              "schedule.warmup_epochs=-1"]


def fuzz_config(tmp: Path, count: int) -> int:
    for n, rng in enumerate(cases(count, "config")):
        recipe = tmp / f"recipe{n}.yaml"
        text = RECIPE if rng.random() < 0.3 else mutate_text(RECIPE, rng, ": ")
        if rng.random() < 0.2:
            text = "a:\n" + "".join(" " * (i + 1) + "b:\n" for i in range(200)) if rng.random() < 0.5 else "[" * 50000
        recipe.write_text(text, encoding="latin-1")
        extra = ["--set", rng.choice(SET_VALUES)] if rng.random() < 0.6 else []
        check(call(["train", "--config", recipe, *extra, "--check"]), recipe.name)
    return count


def fuzz_weights(tmp: Path, count: int) -> int:
    from cnnlab.models import create_model

    good = create_model("lenet5").state_dict()
    payloads = [lambda: 7, lambda: "text", lambda: [1, 2], lambda: {"a": 1}, lambda: {},
                lambda: {k: v.float()[:1] for k, v in good.items()},
                lambda: {**good, "extra.weight": torch.zeros(1)},
                lambda: {k: v for k, v in list(good.items())[1:]},
                lambda: {"format": "cnnlab-checkpoint/1", "state_dict": 3}, lambda: good]
    for n, rng in enumerate(cases(count, "weights")):
        path = tmp / f"weights{n}.pt"
        torch.save(rng.choice(payloads)(), path)
        if rng.random() < 0.4:
            path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        elif rng.random() < 0.3:  # a text file given by mistake: each first byte a pickle opcode or none
            path.write_text("".join(rng.choice(string.printable) for _ in range(rng.randint(0, 200))))
        check(call(["train", "--model", "lenet5", "--data", "digits", "--weights", path, "--check"]), path.name)
    return count


NPZ_MEMBERS = {"x_train": np.zeros((12, 8, 8), np.uint8), "y_train": np.arange(12) % 3,
               "x_val": np.full((3, 8, 8, 1), 0.5), "y_val": np.arange(3).reshape(3, 1)}
NPZ_VALUES = [np.zeros(0, np.uint8), np.zeros((0, 8, 8), np.uint8), np.array(7), np.arange(12) * 1000,
              np.full((12, 8, 8), -1), np.full((12, 8, 8), np.inf), np.zeros((12, 8, 8, 2), np.uint8),
              np.zeros((12, 1, 8), np.uint8), np.array(["a"] * 12), np.ones(12, bool), np.zeros((12, 3), int)]


def fuzz_npz(tmp: Path, count: int) -> int:
    """Keras-shaped arrays with a member replaced, dropped or its bytes mutated; or a zip member
    whose .npy header claims another shape."""
    for n, rng in enumerate(cases(count, "npz")):
        members = dict(NPZ_MEMBERS)
        key = rng.choice(sorted(members))
        if rng.random() < 0.2:
            del members[key]
        else:
            members[key] = rng.choice(NPZ_VALUES)
        path = tmp / f"case{n}.npz"
        np.savez(path, **members)
        if rng.random() < 0.3:
            path.write_bytes(mutate_bytes(path.read_bytes(), rng))
        elif rng.random() < 0.3:
            header = io.BytesIO()
            shape = tuple(rng.choice([0, 1, 8, 2**20, 2**31]) for _ in range(rng.randint(1, 4)))
            np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("x_train.npy", header.getvalue() + bytes(rng.randint(0, 64)))
                archive.writestr("y_train.npy", b"")
        check(call(["data", "info", f"npz:{path}", "--format", "json"]), path.name)
    return count


def fuzz_csv(tmp: Path, count: int) -> int:
    """A listing of image files with its text mutated: fields, quoting, lines, stray bytes."""
    seed = tmp / "seed"
    rows = ["path,label,split"]
    for i in range(9):
        (seed / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10), (20 * i, 0, 0)).save(seed / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{'cat' if i % 2 else 'dog'},{'test' if i == 8 else 'train'}")
    (seed / "list.csv").write_text("\n".join(rows) + "\n")
    for n, rng in enumerate(cases(count, "csv")):
        folder = tmp / f"case{n}"
        shutil.copytree(seed, folder)
        listing = folder / "list.csv"
        listing.write_text(mutate_text(listing.read_text(), rng))
        check(call(["data", "info", f"csv:{listing}", "--format", "json"]), listing.name)
    return count


def fuzz_pixel_csv(tmp: Path, count: int) -> int:
    """A table of pixels (Kaggle's MNIST CSVs: label, pixel0..pixel15 here) with its text mutated."""
    rows = ["label," + ",".join(f"pixel{i}" for i in range(16))]
    rows += [f"{i % 3}," + ",".join(str((i * 37 + j * 11) % 256) for j in range(16)) for i in range(6)]
    for n, rng in enumerate(cases(count, "pixels")):
        table = tmp / f"case{n}.csv"
        table.write_text(mutate_text("\n".join(rows) + "\n", rng))
        check(call(["data", "info", f"csv:{table}", "--format", "json"]), table.name)
    return count


def fuzz_hub(tmp: Path, count: int) -> int:
    """A Hugging Face dataset's file, parquet or Arrow (image bytes, a ClassLabel, the features
    in the schema's metadata), its bytes mutated: the footer, the schema, the pages, the images."""
    images, labels = [banded(i % 3, 3, size=8, seed=i) for i in range(6)], [i % 3 for i in range(6)]
    seeds = [write_hub_parquet(tmp / f"seed/train{suffix}", images, labels, ["a", "b", "c"])
             for suffix in (".parquet", ".arrow")]
    for n, rng in enumerate(cases(count, "hf")):
        seed = rng.choice(seeds)
        table = tmp / f"case{n}" / seed.name
        table.parent.mkdir()
        table.write_bytes(mutate_bytes(seed.read_bytes(), rng))
        check(call(["data", "info", f"hf:{table}", "--format", "json"]), table.name)
    return count


ARGV_TOKENS = ["--lr", "--learning-rate", "--lrr", "--epochs", "--epoch", "--val-split", "--validation-split",
               "--set", "--augment", "--model", "--data", "--format", "--sort", "--by-seed", "--rdzv-endpoint",
               "--node-rank", "--nnodes", "--", "-", "=", "--=", "---", "-x", "0", "-1", "1e9", "nan", "digits",
               "lenet5", "json", "hflip", "epochs=2", "optimiser.lr=1", "data.val=0.5", "x" * 300, "\u00e9",
               "--lr=abc", "--set=", "model.options.widths=[1]", "--config", "/dev/null", "/", "/etc/passwd",
               "1e400", "-0", "0x10", "--image-size", "0x0", "99999x99999", "--batch-size", "--crop", "3x3",
               "--weights", "--class-weight", "folder:/", "--subset", "--out", "--name", "..", "--precision", "bf16",
               "--device", "cuda:7", "data.augment=[hflip, 'pad_crop:-1']", "seed=-5", "--seed", "--input",
               "--classes", "100000x100000x3", "100000000", "--folder", "--spec", "--run"]
# no command or option that writes a file (data info --preview, compare, which writes
# compare.html where it runs when a drawn folder such as / holds runs): a drawn path such as
# /etc/passwd would be written over


def fuzz_argv(tmp: Path, count: int) -> int:
    """Command lines of real commands with options, misspelt options and values drawn at random:
    a parse (0) or one line naming what is wrong (2), never a traceback (nothing trains: train
    only checks)."""
    commands = [["train", "--check"], ["data", "info", "digits"], ["runs", tmp], ["recipes"], ["models"],
                ["summary", "lenet5"], ["data", "cache"]]
    for rng in cases(count * 4, "argv"):
        argv = [*rng.choice(commands), *(rng.choice(ARGV_TOKENS) for _ in range(rng.randint(1, 5)))]
        check(call(argv), " ".join(map(str, argv)))
    return count


RUN_FILES = ["config.yaml", "classes.json", "split.json", "best.pt", "last.pt", "metrics.json",
             "history.json", "summary.json", "data.json"]


def fuzz_run_directory(tmp: Path, count: int, run: Path) -> int:
    image = tmp / "digit.png"
    Image.new("L", (8, 8), 120).save(image)
    replacements = [b"", b"{}", b"[]", b"null", b"42", b'"text"', b'["a"]', b'{"train": 3}',
                    b'{"val": ["no-such-id"]}', json.dumps([str(i) for i in range(11)]).encode(),
                    json.dumps(["0"] * 10).encode(), b"\x80\x02}q\x00.", b"model: {name: nope}\n"]
    for n, rng in enumerate(cases(count, "run")):
        copy = tmp / f"run{n}"
        shutil.copytree(run, copy)
        name = rng.choice(RUN_FILES)
        target = copy / name
        choice = rng.random()
        if choice < 0.15:
            target.unlink()
        elif choice < 0.55:
            target.write_bytes(rng.choice(replacements))
        else:
            target.write_bytes(mutate_bytes(target.read_bytes(), rng))
        command = rng.choice([
            ["evaluate", copy, "--format", "json"],
            ["predict", copy, image, "--format", "json"],
            ["export", copy, "--out", tmp / f"m{n}.onnx"],
            ["compare", copy, run, "--out", tmp / f"c{n}.html"],
            ["train", "--resume", copy, "--epochs", "2", "--quiet"],
            ["train", "--resume", copy, "--check"],
        ])
        check(call(command), f"{name} -> {command[0]}")
    return count


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzzrun")
    code = main(["train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--subset", "300",
                 "--out", str(out), "--name", "r", "--quiet"])
    assert code == 0
    return out / "r"


KINDS = ["idx", "cifar", "gtsrb", "images", "npz", "csv", "pixels", "hf", "config", "weights", "argv"]


def run_kind(kind: str, tmp: Path, count: int) -> int:
    return {"idx": fuzz_idx, "cifar": fuzz_cifar, "gtsrb": fuzz_gtsrb, "images": fuzz_caltech_and_images,
            "npz": fuzz_npz, "csv": fuzz_csv, "pixels": fuzz_pixel_csv, "hf": fuzz_hub, "config": fuzz_config,
            "weights": fuzz_weights, "argv": fuzz_argv}[kind](tmp, count)


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz(kind, tmp_path):
    run_kind(kind, tmp_path, FAST)


def test_fuzz_run_directory(tmp_path, trained_run):
    fuzz_run_directory(tmp_path, FAST, trained_run)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_larger_budget(kind, tmp_path):
    run_kind(kind, tmp_path, SLOW)


WRONG_SHAPES = [b"null", b'{"val": ["no-such-id"]}', b"42", b'"text"', b'["a"]', b"{}", b'{"train": 3}',
                b'{"val": {}}']
RUN_JSON_FILES = list(RUN_JSON_SHAPES)  # each file the run directory checks is fuzzed by being listed there


def wrong_shapes_are_one_line_naming_the_file(tmp_path: Path, run: Path, name: str, payloads: list[bytes]) -> None:
    for n, payload in enumerate(payloads):
        copy = tmp_path / f"run{n}"
        shutil.copytree(run, copy)
        (copy / name).write_bytes(payload)
        for command in (["evaluate", copy, "--format", "json"], ["compare", copy, run, "--out", tmp_path / "c.html"],
                        ["train", "--resume", copy, "--check"]):
            outcome = check(call(command), f"{name} = {payload!r} -> {command[0]}")
            assert outcome.code == 0 or name in outcome.err, outcome.err


@pytest.mark.parametrize("name", RUN_JSON_FILES)
def test_a_run_file_of_the_wrong_shape_is_one_line_naming_it(tmp_path, trained_run, name):
    """Valid JSON of the wrong shape (found by the slow fuzz budget: a null classes.json made a
    resumed run crash in its report, after training); every shape in the slow suite."""
    wrong_shapes_are_one_line_naming_the_file(tmp_path, trained_run, name, WRONG_SHAPES[:1])


@pytest.mark.parametrize("payload", [b"{}", b'{"split": "val", "val": {}}', b'{"split": "test", "data": "x", '
                                     b'"epoch": 1, "val": {}}', b'{"split": ["val"], "data": "x", "epoch": 1}'])
def test_a_damaged_evaluation_of_a_run_is_one_line_naming_it(tmp_path, trained_run, payload):
    """evaluations/<name>/metrics.json without its split, data or metrics ended report.html's
    section of it in a KeyError, and every later evaluate of the run with it."""
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "evaluations" / "x").mkdir(parents=True)
    (copy / "evaluations" / "x" / "metrics.json").write_bytes(payload)
    outcome = check(call(["evaluate", copy]), f"{payload!r} -> evaluate")
    assert outcome.code == 2 and f"{copy / 'evaluations' / 'x' / 'metrics.json'}: expected an evaluation" in outcome.err


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_JSON_FILES)
def test_a_run_file_of_any_wrong_shape_is_one_line_naming_it(tmp_path, trained_run, name):
    wrong_shapes_are_one_line_naming_the_file(tmp_path, trained_run, name, WRONG_SHAPES)


THE_MODELS_FILES = {"classes.json", "data.json"}
"""What predict and export read besides config.yaml and best.pt: the classes, and what each is."""


@pytest.mark.parametrize("name", [*RUN_JSON_FILES, "evaluations/x/metrics.json"])
def test_a_damaged_run_file_is_refused_before_the_work_that_needs_it(tmp_path, trained_run, name):
    """A damaged summary.json (or an evaluation's metrics.json) let `train --resume` train to
    the end and then fail writing the report, and `evaluate` rewrite metrics.json before
    failing the same way; a damaged history, metrics or machine record made `predict` and
    `export` refuse a model they need none of. Now a command reads what it will need before
    its work, and only that."""
    copy = tmp_path / "runs" / "r"
    shutil.copytree(trained_run, copy)
    if name.startswith("evaluations/"):
        assert call(["evaluate", copy, "--tta", "flip"]).code == 0
        [evaluation] = (copy / "evaluations").iterdir()
        evaluation.rename(copy / "evaluations" / "x")
    (copy / name).write_bytes(b'{"broken')
    image = tmp_path / "seven.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    for command in (["predict", copy, image], ["export", copy, "--format", "safetensors", "--out", tmp_path / "w.safetensors"]):
        outcome = check(call(command), f"{name} -> {command[0]}")
        assert outcome.code == 0 or (name in THE_MODELS_FILES and f"{copy / name}: " in outcome.err), outcome.err
    for command in (["evaluate", copy], ["train", "--resume", copy, "--epochs", "2", "--quiet", "--no-report"],
                    ["train", "--resume", copy, "--epochs", "3", "--quiet"]):
        kept = {file: (copy / file).read_bytes() for file in ("metrics.json", "history.json", "last.pt")}
        outcome = check(call(command), f"{name} -> {command[0]}")
        if outcome.code != 0:
            assert f"{copy / name}: unreadable JSON" in outcome.err
            assert {file: (copy / file).read_bytes() for file in kept} == kept, f"{command[0]} worked, then failed"


WRONG_VALUES = ["text", None, [], {"a": 1}, -1, True, 1e400]


def json_leaves(value, path: tuple = ()) -> list[tuple]:
    """The paths of a JSON value's leaves (an empty list or mapping is one)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found = [leaf for key, item in items for leaf in json_leaves(item, (*path, key))]
    return found or [path]


def fuzz_run_file_values(tmp: Path, run: Path, name: str, count: int) -> int:
    """One value inside a run's JSON file replaced by one of another kind (valid JSON of the
    file's shape, damaged within: an epoch's seconds as text); every command that reads the
    file is one line naming it, or works."""
    original = json.loads((run / name).read_text())
    leaves = [leaf for leaf in json_leaves(original) if leaf]
    for n, rng in enumerate(cases(count, f"values-{name}")):
        copy = tmp / f"run{n}"
        shutil.copytree(run, copy)
        damaged, leaf = json.loads(json.dumps(original)), rng.choice(leaves)
        parent = damaged
        for key in leaf[:-1]:
            parent = parent[key]
        parent[leaf[-1]] = rng.choice(WRONG_VALUES)
        (copy / name).write_text(json.dumps(damaged))
        for command in (["evaluate", copy, "--format", "json"], ["compare", copy, run, "--out", tmp / "c.html"],
                        ["runs", copy.parent], ["train", "--resume", copy, "--check"]):
            outcome = check(call(command), f"{name}{list(leaf)} = {parent[leaf[-1]]!r} -> {command[0]}")
            assert outcome.code == 0 or name in outcome.err, outcome.err
        shutil.rmtree(copy)
    return count


@pytest.mark.parametrize("name, damage", [
    pytest.param("history.json", lambda history: history[0].update(seconds="text"), id="seconds-as-text"),
    pytest.param("history.json", lambda history: history[0].update(epoch=1e400), id="infinite-epoch"),
    pytest.param("metrics.json", lambda metrics: metrics["val"].update(machine=[]), id="machine-as-list"),
    pytest.param("data.json", lambda data: data.update(unreadable=-1), id="unreadable-as-number"),
])
def test_a_value_of_the_wrong_kind_inside_a_run_file_is_one_line_naming_it(tmp_path, trained_run, name, damage):
    """Each ended `cnnlab runs`, `compare` or `evaluate` in a TypeError (an epoch's seconds as
    text), a ValueError (an infinite epoch, matplotlib's axis) or an AttributeError (the
    machine of report.html's metrics table); the random draws below find more."""
    copy = tmp_path / "runs" / "r"
    shutil.copytree(trained_run, copy)
    content = json.loads((copy / name).read_text())
    damage(content)
    (copy / name).write_text(json.dumps(content))
    for command in (["runs", copy.parent], ["compare", copy, "--out", tmp_path / "c.html"],
                    ["evaluate", copy, "--data", "digits", "--split", "val"], ["evaluate", copy, "--split", "train"]):
        outcome = check(call(command), f"{name} -> {' '.join(map(str, command))}")
        assert f"{copy / name}: expected " in outcome.out + outcome.err


def test_what_a_callback_adds_to_an_epochs_logs_is_the_users(tmp_path, trained_run):
    """A callback may add its own entries to the logs it is given, as Keras' may; the history's
    shape checks the numbers cnnlab writes and reads back, not those (a text one made the run
    unreadable), and still wants each epoch's number."""
    copy = tmp_path / "runs" / "r"
    shutil.copytree(trained_run, copy)
    history = json.loads((copy / "history.json").read_text())
    (copy / "history.json").write_text(json.dumps([{**row, "phase": "warm-up"} for row in history]))
    for command in (["runs", copy.parent], ["compare", copy, "--out", tmp_path / "c.html"], ["evaluate", copy]):
        outcome = check(call(command), " ".join(map(str, command)))
        assert outcome.code == 0 and "damaged" not in outcome.out, outcome.out + outcome.err
    (copy / "history.json").write_text(json.dumps([{k: v for k, v in row.items() if k != "epoch"} for row in history]))
    outcome = check(call(["evaluate", copy]), "history without epochs")
    assert outcome.code == 2 and f"{copy / 'history.json'}: expected " in outcome.err


@pytest.mark.parametrize("name", RUN_JSON_FILES)
def test_values_of_the_wrong_kind_inside_run_files(tmp_path, trained_run, name):
    fuzz_run_file_values(tmp_path, trained_run, name, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN_JSON_FILES)
def test_values_of_the_wrong_kind_inside_run_files_larger_budget(tmp_path, trained_run, name):
    fuzz_run_file_values(tmp_path, trained_run, name, 40)


@pytest.mark.slow
def test_fuzz_run_directory_larger_budget(tmp_path, trained_run):
    fuzz_run_directory(tmp_path, SLOW // 2, trained_run)


def fuzz_predict_boxes(tmp: Path, count: int, run: Path) -> int:
    """``predict --boxes CSV`` with the CSV mutated: a GTSRB annotation file is the user's, and
    predict reads it whatever it holds."""
    images = tmp / "Test"
    for i in range(2):
        sign(images / f"{i:05d}.png", 24, (0, 200, 90 * i))
    kaggle = "Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,Path\n" + "".join(
        f"24,24,4,4,19,19,Test/{i:05d}.png\n" for i in range(2))
    official = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n" + "".join(
        f"{i:05d}.png;48;48;8;8;39;39;{i}\n" for i in range(2))
    for n, rng in enumerate(cases(count, "boxes")):
        delimiter, text = rng.choice([(",", kaggle), (";", official)])
        annotation = tmp / f"boxes{n}.csv"
        annotation.write_text(mutate_text(text, rng, delimiter), encoding="latin-1")
        result = check(call(["predict", run, images, "--boxes", annotation, "--format", "json"]), str(annotation))
        if result.code == 0:
            assert len(json.loads(result.out)) == 2
    return count


def test_fuzz_predict_boxes(tmp_path, trained_run):
    fuzz_predict_boxes(tmp_path, FAST, trained_run)


@pytest.mark.slow
def test_fuzz_predict_boxes_larger_budget(tmp_path, trained_run):
    fuzz_predict_boxes(tmp_path, SLOW, trained_run)

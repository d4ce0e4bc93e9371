"""End-to-end: the real ``cnnlab`` command on real data."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import build_parser
from cnnlab.runtime import Runtime, cpu_count, cpu_text, native_bf16
from conftest import make_image_folder, run_cli, write_idx


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # what `make demo` runs, as a user types it: a process of its own, with the report
    result = run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "4",
                     "--out", out, "--name", "digits", fresh_process=True, report=True)
    assert "run directory:" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"report: {out / 'digits' / 'report.html'}"  # what make demo ends with
    return out / "digits"


def test_train_prints_epochs_and_run_directory(digits_run):
    log = (digits_run / "train.log").read_text()
    assert "Epoch 4/4" in log and "val_accuracy" in log
    # the epochs' img/s are speed figures: the log, the run's records and its report name the
    # CPU they were measured on
    [record] = json.loads((digits_run / "trained_on.json").read_text())
    precision = "bf16" if native_bf16(torch.device("cpu")) else "fp32"  # auto
    assert record == {"epoch": 1, "machine": Runtime(torch.device("cpu"), precision, cpu_count()).describe()}
    assert record["machine"].endswith(f", on {cpu_text()}") and f"), {record['machine']}\n" in log
    report = (digits_run / "report.html").read_text()
    assert f"trained with {record['machine']};" in report
    # the metrics table's img/s, the final evaluation's, and what they were measured with
    assert "<th>img/s</th>" in report and f"img/s of evaluation with {evaluated_with()}.</p>" in report
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] > 0.8


def evaluated_with() -> str:
    """What the digits run is evaluated and predicted with: its precision, auto."""
    precision = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    return Runtime(torch.device("cpu"), precision, cpu_count()).describe()


def test_evaluate_table_and_json(digits_run):
    table = run_cli("evaluate", digits_run, "--no-report").stdout
    assert "accuracy" in table and "macro avg" in table
    # as Keras' evaluate shows its time: the model's pass, and the machine it was measured on
    speed = re.search(r"^  speed +([\d,]+) img/s: 179 images in (\d+ ms|\d\.\d s|\d+ s), (.+)$", table, re.MULTILINE)
    assert speed and speed[3] == evaluated_with(), table
    data = json.loads(run_cli("evaluate", digits_run, "--format", "json", "--no-report").stdout)
    assert data["samples"] == 179 and 0.8 < data["accuracy"] <= 1.0
    assert data["machine"] == evaluated_with() and data["seconds"] > 0
    assert data["images_per_second"] == pytest.approx(179 / data["seconds"])
    # the run's own final evaluation records its speed too
    own = json.loads((digits_run / "metrics.json").read_text())["val"]
    assert own["machine"] == evaluated_with() and own["images_per_second"] > 0
    missing = run_cli("evaluate", digits_run, "--split", "test", "--no-report", check=False)
    assert missing.returncode == 2 and "no test split" in missing.stderr


@pytest.mark.parametrize("args, needle", [
    (["evaluate", "RUN", "--batch-size", "0"], "argument --batch-size: expected a whole number of at least 1; got '0'"),
    (["evaluate", "RUN", "--batch-size", "-5"], "argument --batch-size: expected a whole number of at least 1; got '-5'"),
    (["export", "RUN", "--opset", "3"], "--opset 3: torch's ONNX exporter writes opsets 7 to 20"),
    (["export", "RUN", "--opset", "21"], "--opset 21: torch's ONNX exporter writes opsets 7 to 20"),
    (["summary", "lenet5", "--classes", "0"], "argument --classes: expected a whole number of at least 1; got '0'"),
    (["data", "bench", "digits", "--batch-size", "0"], "argument --batch-size: expected a whole number of at least 1"),
])
def test_other_commands_refuse_bad_numbers_in_one_line(digits_run, tmp_path, args, needle):
    """Each was taken before (a batch of 0 as the default, 0 classes as 10) or ended in a
    traceback (a negative batch, an opset torch cannot write)."""
    result = run_cli(*[digits_run if a == "RUN" else a for a in args], check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_opset_lacking_one_of_the_models_operators_is_named(tmp_path):
    run_cli("train", "--model", "resnet9", "--set", "model.options.width=4", "--epochs", "1", "--subset", "100",
            "--out", tmp_path, "--name", "r")
    result = run_cli("export", tmp_path / "r", "--opset", "7", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--opset 7: torch's ONNX exporter cannot write it: ONNX export failed on adaptive_max_pool2d" in result.stderr


def test_the_opsets_export_allows_are_torchs():
    from torch.onnx import _constants

    from cnnlab.export import OPSETS

    assert OPSETS == (_constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def test_evaluate_a_run_without_held_out_data_says_what_to_give(tmp_path):
    run_cli("train", "--model", "mlp", "--epochs", "1", "--val-split", "0", "--out", tmp_path, "--name", "r")
    result = run_cli("evaluate", tmp_path / "r", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "this run's data has no val or test split to evaluate on; give --split=train (its training "
        "images) or --data=SPEC (other data)")
    assert run_cli("evaluate", tmp_path / "r", "--split", "train", "--no-report").returncode == 0


def test_predict_folder_with_corrupt_file(digits_run, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), color=40 * i).save(folder / f"img{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = run_cli("predict", digits_run, folder, "--top-k", "2", "--format", "json")
    predictions = json.loads(result.stdout)
    assert len(predictions) == 3 and all(len(p["top"]) == 2 for p in predictions)
    assert "skipped" in result.stderr and "broken.jpg" in result.stderr
    csv_out = run_cli("predict", digits_run, str(folder / "*.png"), "--format", "csv").stdout
    assert csv_out.splitlines()[0].startswith("path,class1,probability1")
    assert len(csv_out.splitlines()) == 4


def test_predict_table_ends_with_its_speed(digits_run, tmp_path):
    """The table says how fast the images went, decoding included, and on what; csv and
    json, for programs, hold the predictions alone."""
    for i in range(3):
        Image.new("L", (8, 8), color=60 * i).save(tmp_path / f"img{i}.png")
    lines = run_cli("predict", digits_run, tmp_path).stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith(str(tmp_path)) for line in lines[:3])
    assert re.fullmatch(r"3 images in (\d+ ms|\d\.\d s): [\d,]+ img/s, decoding included, with (.+)", lines[3])
    assert lines[3].endswith(f", with {evaluated_with()}")
    assert "img/s" not in run_cli("predict", digits_run, tmp_path, "--format", "csv").stdout


def test_predict_names_a_pipe_or_device_for_what_it_is(digits_run, tmp_path):
    """`predict RUN /dev/stdin` or a named pipe said "no such file or folder" of a path that is
    there. Neither is opened: a pipe with no writer would block the command for good."""
    pipe = tmp_path / "photo.png"
    os.mkfifo(pipe)
    for given in (pipe, "/dev/null"):
        result = run_cli("predict", digits_run, given, check=False)
        assert result.returncode == 2
        assert result.stderr.strip().endswith(f"{given}: not a regular file (a pipe, socket or device); "
                                              "give image files or folders")


def test_predict_reads_a_large_folder_a_chunk_at_a_time(digits_run, tmp_path, monkeypatch):
    """predict decoded every image of its inputs into memory at once (twice, with a copy), and
    printed nothing until all were done: 100,000 photos at 256x256 needed 39 GB."""
    from cnnlab.evaluation import predict as predicting

    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(7):
        Image.new("L", (8, 8), color=30 * i).save(folder / f"img{i}.png")
    (folder / "img3b.png").write_bytes(b"not a png")
    whole = run_cli("predict", digits_run, folder, "--format", "json")
    decoded = []
    real = predicting.decode_many
    monkeypatch.setattr(predicting, "decode_many", lambda paths, *a, **k: decoded.append(len(paths)) or real(paths, *a, **k))
    prep = predicting.load_artifacts(digits_run).preprocessing
    monkeypatch.setattr(predicting, "CHUNK_BYTES", 3 * prep.image_size[0] * prep.image_size[1] * prep.channels)
    for form in ("json", "csv", "table"):
        chunked = run_cli("predict", digits_run, folder, "--format", form, check=False)
        if form == "json":
            assert chunked.stdout == whole.stdout and chunked.stderr == whole.stderr
        assert chunked.stdout.count(f"inputs{os.sep}img") == 7 and "skipped" in chunked.stderr and "img3b.png" in chunked.stderr
    assert decoded[:3] == [3, 3, 2]
    assert json.loads(whole.stdout)[3]["path"].endswith("img3.png")


def test_file_and_class_names_that_are_not_utf8_train_evaluate_and_predict(tmp_path, monkeypatch):
    """Archives made on other systems extract Latin-1 names as bytes that are not UTF-8: the
    decode cache's key ended in UnicodeEncodeError, a traceback before the first epoch."""
    import os

    root = make_image_folder(tmp_path / "latin", classes=2, per_class=8)
    os.rename(root / "class_0" / "000.png", os.fsencode(root / "class_0") + b"/caf\xe9.png")
    os.rename(root / "class_1", os.fsencode(root) + b"/cl\xe9ss_1")
    result = run_cli("train", "--model", "lenet5", "--data", f"folder:{root}", "--image-size", "20x20",
                     "--epochs", "1", "--val-split", "0.25", "--out", tmp_path, "--name", "r", report=True,
                     check=False)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "r"
    assert json.loads((run / "classes.json").read_text())[1] == os.fsdecode(b"cl\xe9ss_1")
    assert run_cli("evaluate", run).returncode == 0
    listing = run_cli("predict", run, root / "class_0", "--format", "csv").stdout
    assert os.fsdecode(b"caf\xe9.png") in listing
    # a terminal whose encoding is strict (most UTF-8 locales but C.UTF-8) gets the name's bytes
    monkeypatch.setenv("PYTHONIOENCODING", "utf-8:strict")
    printed = run_cli("predict", run, root / "class_0", fresh_process=True, check=False)
    assert printed.returncode == 0 and "Traceback" not in printed.stderr, printed.stderr


def test_models_and_summary():
    listing = run_cli("models").stdout
    assert "alexnet-bn" in listing and "60,965,224" in listing
    summary = json.loads(run_cli("summary", "alexnet-bn", "--input", "150x150x3", "--classes", "10",
                                 "--format", "json").stdout)
    assert summary["total_params"] == 30_049_034
    assert summary["non_trainable_params"] == 19_136
    assert "Total params: 62,378,344" in run_cli("summary", "alexnet", "--set", "groups=1",
                                                  "--classes", "1000").stdout


def test_models_matching_a_pattern_as_timm_lists_them():
    from cnnlab import list_models

    assert list_models("alexnet*") == ["alexnet", "alexnet-bn", "alexnet-half", "alexnet-mnist"]
    assert list_models("VGG16") == ["vgg16"] and list_models("*cnn") == ["simple-cnn", "small-cnn"]
    assert list_models() == sorted(list_models()) and "resnet9" in list_models() and list_models("x*") == []
    listed = json.loads(run_cli("models", "vgg16*", "--format", "json").stdout)
    assert [row["name"] for row in listed] == ["vgg16", "vgg16-bn", "vgg16-transfer"]
    assert run_cli("models", "*mnist").stdout.splitlines()[1].startswith("alexnet-mnist ")
    result = run_cli("models", "alexnet-tiny", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("cnnlab models: error: no model matches 'alexnet-tiny'; the models: airbench, ")


def test_summary_of_a_model_too_large_for_memory():
    """`summary alexnet --input 100000x100000` built the model's weights to count them and ended
    in the allocator's traceback (37 TiB for the first dense layer): a summary needs shapes only."""
    huge = json.loads(run_cli("summary", "alexnet", "--input", "100000x100000", "--format", "json").stdout)
    assert huge["total_params"] > 10**13
    wide = json.loads(run_cli("summary", "lenet5", "--classes", "100000000", "--format", "json").stdout)
    assert wide["num_classes"] == 100_000_000


def test_data_info():
    info = json.loads(run_cli("data", "info", "digits", "--format", "json").stdout)
    assert info["num_classes"] == 10 and sum(info["counts"]["train"].values()) == 1618


def test_folder_source_trains(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=3, per_class=15)
    result = run_cli("train", "--model", "lenet5", "--data", f"folder:{root}", "--epochs", "2",
                     "--image-size", "28x28", "--channels", "1", "--out", tmp_path / "runs",
                     "--quiet")
    run = result.stdout.strip().splitlines()[-1]
    classes = json.loads((tmp_path / "runs" / run.rsplit("/", 1)[-1] / "classes.json").read_text())
    assert classes == ["class_0", "class_1", "class_2"]


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "alexnett"], "unknown model 'alexnett' (did you mean 'alexnet'?)"),
    (["train", "--data", "mnist:/no/such/folder"], "--data mnist:/no/such/folder: no such file"),
    (["train", "--epochs", "many"], "argument --epochs: invalid int value"),
    (["train", "--optimizer", "adamax", "--epochs", "1"], "--optimizer: unknown optimizer 'adamax'"),
    (["train", "--optimizer", "muon", "--set", "optimizer.fallback=lamb"], "optimizer.fallback: must be one of adamw, sgd"),
    (["train", "--val-split", "1.5"], "--val-split: must be at least 0 and below 1"),
    (["train", "--early-stopping", "3", "--set", "early_stopping.start_from_epoch=-1"],
     "early_stopping.start_from_epoch: must be 0 or more; got -1"),
    (["train", "--precision", "fp8"], "--precision: must be one of"),
    (["train", "--name", "../escape"], "--name ../escape: a run's name is one folder name, without '/'"),
    (["train", "--name", "a/b"], "--name a/b: a run's name is one folder name, without '/'"),
    (["train", "--name", ".."], "--name ..: a run's name is one folder name, without '/'"),
    (["train", "--name", "."], "--name .: a run's name is one folder name, without '/'"),
    (["train", "--resume", "RUN", "--lr", "5", "--epochs", "9", "--set", "seed=1"],
     "--resume: continues the run's own config; only --epochs, --no-report, --device, --precision and --data "
     "may change (drop --lr/--out/--set)"),
    (["train", "--resume", "RUN", "--model", "airbench", "--image-size", "32x32"],
     "(drop --model/--image-size/--out)"),
    (["train", "--set", "epochs=abc"], "--set: epochs: expected a whole number, got 'abc'"),
    (["train", "--set", "nonsense=1"], "--set: unknown key 'nonsense'; valid keys: model, data,"),
    (["train", "--early-stopping", "-2"], "--early-stopping: must be 0 or more; got -2"),
    (["train", "--subset", "0", "--check"], "--subset: must be a positive number of samples; got 0"),
    (["train", "--batch-size", "0"], "--batch-size: must be at least 1; got 0"),
    (["train", "--epochs", "0"], "--epochs: must be at least 1; got 0"),
    (["train", "--nproc-per-node", "0"], "argument --nproc-per-node: expected a whole number of at least 1; got '0'"),
    (["train", "--nnodes", "-1"], "argument --nnodes: expected a whole number of at least 1; got '-1'"),
    # with one process on one machine they were ignored, and the run trained alone
    (["train", "--rdzv-endpoint", "head:29500"],
     "--rdzv-endpoint head:29500: is where the machines of a run on several meet; give --nnodes M too "
     "(one process on one machine needs none)"),
    (["train", "--node-rank", "1"], "--node-rank 1: is this machine's place among several; give --nnodes M and "
                                    "--rdzv-endpoint HOST:PORT too"),
    (["train", "--nnodes", "2", "--rdzv-endpoint", "head:99999"],
     "argument --rdzv-endpoint: expected HOST or HOST:PORT, the port from 1 to 65535; got 'head:99999'"),
    (["train", "--nnodes", "2", "--rdzv-endpoint", ":29500"],
     "argument --rdzv-endpoint: expected HOST or HOST:PORT, the port from 1 to 65535; got ':29500'"),
    (["train", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "head:29500"],
     "--node-rank 2: must be from 0 to 1 (one rank per machine of --nnodes 2)"),
    (["train", "--lr", "inf"], "cnnlab train: error: --lr: expected a finite number, got inf"),
    (["train", "--label-smoothing", "nan"], "error: --label-smoothing: expected a finite number"),
    (["train", "--set", "optimizer.betas=3"], "optimizer.betas: expected a list"),
    (["train", "--model", "alexnet-bn", "--image-size", "32x32"], "needs inputs of at least 67x67"),
    (["train", "--model", "vgg16-transfer", "--image-size", "32x32", "--unfreeze-after", "2"],
     "--unfreeze-after: nothing to unfreeze: vgg16-transfer trains with no frozen base (freeze one with --freeze-base)"),
    (["train", "--model", "vgg16-transfer", "--image-size", "32x32", "--freeze-base", "--unfreeze-after", "0"],
     "--unfreeze-after: must be 1 or more; got 0 (without --freeze-base the base trains from the start)"),
    (["train", "--model", "lenet5", "--unfreeze-after", "2"], "--unfreeze-after: nothing to unfreeze: lenet5 trains"),
    (["train", "--model", "mlp", "--unfreeze-after", "2"], "--unfreeze-after: nothing to unfreeze: mlp trains"),
    (["train", "--model", "lenet5", "--trainable-base-layers", "3"],
     "--trainable-base-layers 3: lenet5's convolutional base has 2 layers; give 1 to 2"),
    (["train", "--model", "lenet5", "--trainable-base-layers", "0"],
     "--trainable-base-layers: must be 1 or more; got 0 (--freeze-base freezes the whole base)"),
    (["train", "--model", "mlp", "--trainable-base-layers", "1"],
     "--trainable-base-layers: mlp has no convolutional base"),
    (["train", "--model", "lenet5", "--freeze-base", "--trainable-base-layers", "1"],
     "--trainable-base-layers: with --freeze-base and no --unfreeze-after the base never trains; give "
     "--unfreeze-after EPOCHS too"),
    (["train", "--config", "/no/recipe.yaml"], "/no/recipe.yaml: no such file"),
    (["train", "--config", "faces-small-cnn"],
     "--config faces-small-cnn: its data.spec, folder:faces, names nothing here; give --data SPEC (a bundled "
     "recipe's data is a placeholder)"),
    (["train", "--config", "faces-small-cnn", "--data", "digits", "--image-size", "64x64"],
     "data.crop 128x128 is larger than --image-size 64x64: give a smaller one, or none (data.crop=null)"),
    (["summary", "lenet5", "--input", "28by28"], "expected HxW or HxWxC"),
    (["evaluate", "/no/run"], "/no/run: no such run directory"),
    # a name holding a line break was quoted as it is, and the message ran over two lines
    (["evaluate", "/no/r\nun"], "cnnlab evaluate: error: /no/r\\nun: no such run directory"),
    (["train", "--data", "folder:/no/a\nb"], "--data folder:/no/a\\nb: no such file or folder"),
    (["train", "--model", "le\rnet"], "unknown model 'le\\rnet'"),
    (["train", "--fo\no"], "cnnlab train: error: unrecognized argument: --fo\\no (see cnnlab train --help)"),
    (["predict", ".", "x.png"], "not a cnnlab run directory"),
    (["data", "info", "cifar99:/x"], "cnnlab data info: error: unknown data source 'cifar99'"),
    (["data", "verify", "/no-such-folder"], "cnnlab data verify: error: data /no-such-folder: no such folder"),
    (["data", "bench", "digits", "--augment", "pad_crop:100"], "pad_crop:100 pads 100 pixels; a 8x8 input reflects at most 7"),
    (["train", "--augment", "pad_crop:100", "--check"], "pad_crop:100 pads 100 pixels; a 28x28 input reflects at most 27"),
    # an unknown option is named with the command's option it probably is, and that command's help
    (["train", "--learning-rate", "0.1"],
     "cnnlab train: error: unrecognized arguments: --learning-rate 0.1 (did you mean --lr?) (see cnnlab train --help)"),
    (["train", "--validation-split=0.2"], "unrecognized argument: --validation-split=0.2 (did you mean --val-split?)"),
    (["train", "--augmentation", "hflip"], "unrecognized arguments: --augmentation hflip (did you mean --augment?)"),
    (["evaluate", "RUN", "--spilt", "test"], "cnnlab evaluate: error: unrecognized arguments: --spilt test (did you "
                                             "mean --split?) (see cnnlab evaluate --help)"),
    (["summary", "--model", "alexnet"],
     "cnnlab summary: error: unrecognized argument: --model (NAME is given without a flag: cnnlab summary NAME)"),
    (["predict", "--run", "r", "a.png"], "unrecognized argument: --run (RUN is given without a flag: cnnlab predict RUN"),
    (["data", "info", "digits", "--formt", "json"], "cnnlab data info: error: unrecognized arguments: --formt json (did "
                                                   "you mean --format?) (see cnnlab data info --help)"),
    (["runs", "--zzzz"], "cnnlab runs: error: unrecognized argument: --zzzz (see cnnlab runs --help)"),
    (["runs", "--foo"], "cnnlab runs: error: unrecognized argument: --foo (see cnnlab runs --help)"),
    # numpy's generators take no negative seed: these ended in its ValueError's traceback
    (["train", "--seed", "-1"], "--seed: must be 0 or more; got -1"),
    (["train", "--set", "seed=-3"], "seed: must be 0 or more; got -3"),
    (["data", "info", "digits", "--seed", "-1"], "--seed: must be 0 or more; got -1"),
    # a negative warm-up skipped that many epochs of the schedule, silently
    (["train", "--set", "schedule.warmup_epochs=-1"], "schedule.warmup_epochs: must be 0 or more; got -1"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, needle):
    result = run_cli(*args, "--out", tmp_path, check=False) if args[0] == "train" else run_cli(*args, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not list(tmp_path.glob("2*")), "a failed start must leave no run directory"


def test_a_run_on_a_relative_data_path_is_evaluated_and_resumed_from_anywhere(tmp_path):
    """`cnnlab train --data folder:photos` recorded the path as typed, so evaluate and resume run
    from another folder said "--data folder:photos: no such file or folder"."""
    make_image_folder(tmp_path / "project" / "photos", classes=2, per_class=6)
    run_cli("train", "--model", "lenet5", "--data", "folder:photos", "--image-size", "20x20", "--epochs", "1",
            "--out", tmp_path / "runs", "--name", "r", cwd=tmp_path / "project")
    assert f"spec: folder:{tmp_path / 'project' / 'photos'}" in (tmp_path / "runs" / "r" / "config.yaml").read_text()
    elsewhere = tmp_path / "runs"
    assert run_cli("evaluate", "r", "--no-report", cwd=elsewhere).returncode == 0
    assert run_cli("train", "--resume", "r", "--epochs", "2", cwd=elsewhere).returncode == 0


def test_a_run_whose_data_moved_says_so_and_resumes_with_its_new_place(tmp_path):
    """After the data folder moved (to a faster disk, say), evaluate and resume said "--data
    folder:...: no such file or folder", naming an option never typed, and --resume refused
    --data, so the run could not be continued at all."""
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=6)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{photos}", "--image-size", "20x20", "--epochs", "1",
            "--out", tmp_path, "--name", "r")
    run = tmp_path / "r"
    photos.rename(tmp_path / "moved")
    evaluated = run_cli("evaluate", run, check=False)
    assert evaluated.returncode == 2 and evaluated.stderr.strip().endswith(
        f"{run}: its data, folder:{photos}, is not there any more; give --data=SPEC where it is now, or "
        "other data to evaluate on")
    # where it is now: its own validation split, as before the move, not every image as other data
    own = json.loads(run_cli("evaluate", run, "--data", f"folder:{tmp_path / 'moved'}", "--format", "json",
                             "--no-report").stdout)
    assert own["samples"] == len(json.loads((run / "split.json").read_text())["val"]) and own["saved_to"] == str(run)
    for check in (["--check"], []):
        resumed = run_cli("train", "--resume", run, "--epochs", "2", *check, check=False)
        assert resumed.returncode == 2 and resumed.stderr.strip().endswith(
            f"--resume {run}: its data, folder:{photos}, is not there any more; give --data=SPEC where it is now")
        # a new place that is not there either is the new place's error, not "its data"
        mistyped = run_cli("train", "--resume", run, "--epochs", "2", "--data", f"folder:{tmp_path / 'moevd'}",
                           *check, check=False)
        assert mistyped.returncode == 2 and mistyped.stderr.strip().endswith(
            f"--data folder:{tmp_path / 'moevd'}: no such file or folder"), mistyped.stderr
    run_cli("train", "--resume", run, "--epochs", "2", "--data", f"folder:{tmp_path / 'moved'}", "--check")
    run_cli("train", "--resume", run, "--epochs", "2", "--data", f"folder:{tmp_path / 'moved'}")
    assert f"spec: folder:{tmp_path / 'moved'}" in (run / "config.yaml").read_text()
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1, 2]


def test_paths_in_a_recipe_may_start_with_the_home_folder(tmp_path, monkeypatch):
    """A recipe's `out: ~/runs` made a folder named '~' in the current folder, and `~/w.pt` as
    --weights or a ~ class-weight file were "no such file": only a shell expands ~, and a recipe
    (or a --set value, or a quoted --config) never passes through one."""
    import torch

    from cnnlab.models import create_model

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    torch.save(create_model("mlp", 10, 1, (8, 8)).state_dict(), tmp_path / "home" / "w.pt")
    (tmp_path / "home" / "weights.yaml").write_text('"3": 2.0\n')
    recipe = tmp_path / "home" / "recipe.yaml"
    recipe.write_text("model: {name: mlp, weights: ~/w.pt}\ndata: {image_size: [8, 8]}\nepochs: 1\n"
                      "class_weight: ~/weights.yaml\nout: ~/runs\nname: r\n")
    run_cli("train", "--config", "~/recipe.yaml", cwd=tmp_path)
    assert (tmp_path / "home" / "runs" / "r" / "best.pt").is_file() and not (tmp_path / "~").exists()


def test_weights_may_be_a_run_directory(digits_run, tmp_path):
    """`--weights runs/X`, the run as evaluate and predict take it, said "no such checkpoint
    file": a run directory gives its best checkpoint, and the new run records that file."""
    run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", digits_run, "--epochs", "1",
            "--out", tmp_path, "--name", "tuned", "--quiet")
    recorded = (tmp_path / "tuned" / "config.yaml").read_text()
    assert f"weights: {digits_run / 'best.pt'}" in recorded
    assert "loaded 10 of 10 tensors" in (tmp_path / "tuned" / "train.log").read_text()
    (tmp_path / "plain").mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "classes.json"):
        (unfinished / name).write_bytes((digits_run / name).read_bytes())
    for folder, told in ((tmp_path / "plain", "a folder, not a weights file: give a file, or a run directory "
                                              "(its best.pt)"),
                         (unfinished, "a run directory without best.pt: no epoch of it has finished")):
        result = run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", folder, "--check",
                         check=False)
        assert result.returncode == 2 and result.stderr.strip().endswith(f"--weights {folder}: {told}"), \
            result.stderr
    # the name of Keras' weights stays theirs beside a folder of that name (ImageNet's images, say)
    result = run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", "imagenet", "--check",
                     cwd=tmp_path / "plain", check=False)
    (tmp_path / "plain" / "imagenet").mkdir()
    beside = run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", "imagenet", "--check",
                     cwd=tmp_path / "plain", check=False)
    assert beside.returncode == 2 and beside.stderr == result.stderr and "Keras publishes" in beside.stderr


def test_train_takes_a_run_as_its_weights_in_python(digits_run, tmp_path):
    from cnnlab import load_run, train

    run = train(model="lenet5", data="digits", weights=load_run(digits_run), epochs=1, out=str(tmp_path),
                name="tuned", quiet=True, subset=100, report=False)
    assert run.config.model.weights == str(digits_run / "best.pt")


def test_fine_tuning_may_standardise_inputs_as_the_pretrained_run_did(digits_run, tmp_path):
    """A run started from another run's weights took its own data's mean and std, and could
    not take those the weights learnt from (timm's pretrained_cfg): `--normalize weights` does;
    unset, the new data's are kept (measured as good or better on real images, docs/results.md)
    and the log says so."""
    from cnnlab import train
    from cnnlab.checkpoint import load_checkpoint

    def statistics(run_dir):
        record = load_checkpoint(run_dir / "best.pt")["preprocessing"]
        return record["normalize"], record["mean"], record["std"]

    _, mean, std = statistics(digits_run)
    common = dict(model="lenet5", data="digits", weights=digits_run, subset=100, epochs=1, out=str(tmp_path),
                  quiet=True, report=False)
    followed = train(**common, name="followed", data__normalize="weights")
    assert statistics(followed.path) == ("weights", mean, std)
    assert "normalize: weights" in (followed.path / "config.yaml").read_text()
    assert f"weights {digits_run / 'best.pt'}: inputs standardised as theirs were, mean (" in (
        followed.path / "train.log").read_text()
    own = train(**common, name="own")
    assert statistics(own.path)[0] == "dataset" and statistics(own.path)[1] != mean
    assert "normalize: dataset" in (own.path / "config.yaml").read_text()
    assert (f"weights {digits_run / 'best.pt'}: they are a cnnlab run's; the training split's mean and std are "
            "used (data.normalize dataset; weights would standardise as the run did)") in (
        own.path / "train.log").read_text()
    per_image = train(**{**common, "weights": None}, name="per-image", data__normalize="per_image")
    assert statistics(train(**{**common, "weights": per_image}, name="after-per-image",
                            data__normalize="weights").path)[0] == "per_image"


def test_normalize_weights_needs_weights_that_say_how(tmp_path):
    import torch

    from cnnlab.models import create_model

    torch.save(create_model("lenet5", 10, 1, (32, 32)).state_dict(), tmp_path / "plain.pt")
    for extra, told in (([], "--normalize weights: standardises as pretrained weights were trained, and none are given"),
                        (["--weights", tmp_path / "plain.pt"], f"--normalize weights: weights {tmp_path / 'plain.pt'} "
                                                               "do not say how")):
        result = run_cli("train", "--model", "lenet5", "--data", "digits", "--normalize", "weights", *extra,
                         "--check", check=False)
        assert result.returncode == 2 and told in result.stderr, result.stderr
        assert result.stderr.strip().endswith("give --normalize dataset, per_image or equalized"), result.stderr
    unset = run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", tmp_path / "plain.pt", "--check")
    assert ("they do not say how their inputs were standardised; the training split's mean and std are used "
            "(data.normalize dataset)") in unset.stdout + unset.stderr


def test_mean_and_std_given_as_timm_and_fastai_take_them(tmp_path):
    """A mean and std of one's own (timm's --mean/--std, fastai's Normalize.from_stats; mean 0 and
    std 1 give the 0-1 pixels of Keras' Rescaling(1/255)): recorded by the run, which evaluate,
    predict and export then follow, and followed by a run fine-tuned from it."""
    import torch

    from cnnlab.data.preprocessing import Preprocessing
    from cnnlab.models.weights import input_normalization

    run_cli("train", "--model", "lenet5", "--data", "digits", "--mean", "0", "--std", "1", "--epochs", "1",
            "--subset", "100", "--out", tmp_path, "--name", "unit", "--quiet")
    record = torch.load(tmp_path / "unit" / "best.pt", weights_only=True)["preprocessing"]
    assert (record["normalize"], record["mean"], record["std"]) == ("given", [0.0], [1.0])
    assert "normalize: given" in (tmp_path / "unit" / "config.yaml").read_text()
    pixels = torch.full((1, 1, 2, 2), 255.0)
    torch.testing.assert_close(Preprocessing.from_dict(record).standardize(pixels), torch.ones(1, 1, 2, 2))
    followed = input_normalization(tmp_path / "unit" / "best.pt")
    assert (followed.mode, followed.mean, followed.std) == ("weights", (0.0,), (1.0,))
    run_cli("train", "--model", "lenet5", "--data", "digits", "--channels", "3", "--mean", "0.5", "--std", "0.25",
            "--epochs", "1", "--subset", "100", "--out", tmp_path, "--name", "colour", "--quiet")
    record = torch.load(tmp_path / "colour" / "best.pt", weights_only=True)["preprocessing"]
    assert (record["mean"], record["std"]) == ([0.5] * 3, [0.25] * 3)  # one value: every channel


def test_check_says_which_mean_and_std_and_which_base_layers():
    shown = run_cli("train", "--model", "lenet5", "--data", "digits", "--mean", "0.5", "--std", "0.25",
                    "--trainable-base-layers", "1", "--check").stdout
    assert "inputs: pixels/255 standardised with the mean (0.5) and std (0.25) given (data.normalize given)" in shown
    assert ("the last 1 of the convolutional base's 2 layers train from the start; the first 1 stay as loaded "
            "(model.trainable_base_layers)") in shown


@pytest.mark.parametrize("flags, told", [
    (["--mean", "0.5"], "--mean 0.5: given without --std; give both (e.g. --mean 0.5 --std 0.25)"),
    (["--std", "0.2", "0.2", "0.2"], "--std 0.2 0.2 0.2: given without --mean; give both"),
    (["--normalize", "given"], "--normalize given: standardises with --mean and --std, and neither is given"),
    (["--mean", "0", "--std", "1", "--normalize", "per_image"],
     "--mean 0: --normalize per_image (each image standardised by its own mean and std) does not take a given "
     "mean and std; give --normalize given, or neither --mean nor --std"),
    (["--mean", "0", "--std", "0"], "--std 0: each std must be positive"),
    (["--set", "data.mean=[]", "--std", "1"], "data.mean: give one value for all channels, or one per channel"),
    (["--mean", "0.1", "0.2", "--std", "1"], "--mean 0.1 0.2: 2 values, and digits gives 1 channel; give one "
                                              "value for all channels, or one per channel"),
    (["--mean", "0", "--std", "1", "1", "1", "--channels", "1"], "--std 1 1 1: 3 values, and digits gives 1 channel"),
])
def test_mean_and_std_refused_as_one_line(flags, told):
    result = run_cli("train", "--model", "lenet5", "--data", "digits", *flags, "--check", check=False)
    assert result.returncode == 2 and told in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_normalize_help_says_the_default_follows_published_weights():
    """--help said "(default dataset)", which a run from published ImageNet weights is not."""
    shown = " ".join(run_cli("train", "--help").stdout.split())
    assert ("(default: as the published ImageNet files --weights names were trained, imagenet or weights; "
            "dataset otherwise)") in shown


def test_lr_find_starts_from_the_weights_it_would_fine_tune(digits_run):
    """lr_find built a fresh model whatever --weights said: the range test of a fine-tuning
    measured training from scratch."""
    from cnnlab import lr_find

    pretrained = lr_find(model="lenet5", data="digits", weights=digits_run, steps=5, end_lr=1e-6)
    fresh = lr_find(model="lenet5", data="digits", steps=5, end_lr=1e-6)
    assert pretrained.losses[0] < 1.0 < 2.0 < fresh.losses[0]


def test_what_the_python_api_returns_prints_as_a_line_not_its_arrays(digits_run):
    """print(load_dataset("digits")) printed every id and a summary of every array (35,717 characters
    for 1,797 images), as did a PredictionResult of its predictions and an lr_find result of
    its losses: each says what it holds in a line, as a Hugging Face Dataset or a Run does."""
    import numpy as np

    from cnnlab import load_dataset, lr_find, predict

    data = load_dataset("digits", image_size=(16, 16), val_split=0.2)
    assert repr(data) == "Dataset('digits': 10 classes, 16x16x1; train 1438, val 359)"
    assert repr(data.splits["val"]) == "Split(359 images of 16x16x1)"
    result = predict(digits_run, np.zeros((3, 8, 8), np.uint8))
    assert re.fullmatch(r"PredictionResult\(3 predictions, 0 unreadable; [\d,]+ img/s\)", repr(result)), repr(result)
    found = lr_find(model="lenet5", data="digits", steps=5, end_lr=1e-6)
    assert re.fullmatch(r"LRFinding\(steepest=\S+, minimum=\S+; 5 steps from \S+ to \S+\)", repr(found)), repr(found)


def test_training_on_one_class_is_refused_with_the_likely_slip_named(tmp_path):
    """`--data folder:photos/cats` (one class's folder, not the folder holding them) trained a
    one-class classifier: a loss of 0 from the first step and 100% accuracy, without a word."""
    root = make_image_folder(tmp_path / "photos", classes=2, per_class=6)
    cats = tmp_path / "cats-only"
    (cats / "cats").mkdir(parents=True)
    for image in (root / "class_0").iterdir():
        image.rename(cats / "cats" / image.name)
    result = run_cli("train", "--model", "lenet5", "--data", f"folder:{cats}", "--out", tmp_path / "runs",
                     "--check", check=False)
    assert result.returncode == 2 and result.stderr.strip().endswith(
        f"--data folder:{cats}: holds one class (cats); a classifier needs two or more (give the folder "
        "that holds the class folders)"), result.stderr
    assert not (tmp_path / "runs").exists()


def test_class_weights_that_weigh_every_class_zero_are_refused(tmp_path):
    """Every sample would weigh 0: the loss is 0 and nothing is learned (it trained so, silently)."""
    weights = tmp_path / "weights.yaml"
    weights.write_text("".join(f'"{digit}": 0\n' for digit in range(10)))
    result = run_cli("train", "--model", "mlp", "--class-weight", weights, "--out", tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"--class-weight {weights}: every class weighs 0, so nothing would be learned")
    weights.write_text('"0": 0\n')  # one class left out of the loss is a choice
    assert run_cli("train", "--model", "mlp", "--class-weight", weights, "--check", "--out", tmp_path).returncode == 0


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path):
    """resnet9 at width 20,000 has 10^11 parameters: torch's allocator failed with a traceback."""
    result = run_cli("train", "--model", "resnet9", "--set", "model.options.width=20000", "--out", tmp_path,
                     check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"resnet9: [\d,]+ parameters need about [\d,]+ GiB to train \(fp32 weights, gradients and "
                     r"two optimizer moments\); cpu has [\d,]+ GiB$", result.stderr.strip()), result.stderr
    assert not list(tmp_path.iterdir())


def test_bad_yaml_key(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: lenet5\nlearning_rate: 0.1\n")
    result = run_cli("train", "--config", recipe, check=False)
    assert result.returncode == 2
    assert (f"{recipe}: unknown key 'learning_rate' (did you mean 'optimizer.lr'?); valid keys: model, data"
            in result.stderr)
    assert "Traceback" not in result.stderr


def commands_of(parser, path=()):
    """(words, parser) for the command line itself and each of its commands, nested ones too."""
    yield path, parser
    if parser.commands is not None:
        for name, command in parser.commands.choices.items():
            yield from commands_of(command, (*path, name))


def test_help_on_every_command():
    for words, _ in commands_of(build_parser()):
        assert run_cli(*words, "--help").stdout.startswith("usage: cnnlab")


def test_every_option_and_argument_says_in_its_help_what_it_is():
    """cnnlab predict --help had listed RUN, --top-k and --format with nothing beside them, and
    train --help --epochs, --batch-size and --seed (their defaults were nowhere to be read)."""
    bare = [f"cnnlab {' '.join(words)} {action.option_strings[0] if action.option_strings else action.metavar}"
            for words, parser in commands_of(build_parser()) for action in parser._actions
            if not action.help and action is not parser.commands]
    assert bare == []


def test_recipe_file_and_resume_cli(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: mlp\ndata:\n  spec: digits\n  image_size: [8, 8]\n"
                      "epochs: 1\noptimizer:\n  name: sgd\n  lr: 0.05\nschedule:\n  name: cosine\n")
    run = run_cli("train", "--config", recipe, "--out", tmp_path / "runs", "--name", "r",
                  "--quiet").stdout.strip().splitlines()[-1]
    saved = (tmp_path / "runs" / "r" / "config.yaml").read_text()
    assert "name: sgd" in saved and "name: cosine" in saved
    run_cli("train", "--resume", run, "--epochs", "2", "--quiet")
    history = json.loads((tmp_path / "runs" / "r" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    for check in (["--check"], []):  # --check says what the command itself would
        fewer = run_cli("train", "--resume", run, "--epochs", "1", *check, check=False)
        assert fewer.returncode == 2
        assert fewer.stderr.strip().endswith("--epochs 1: the run has trained 2 epochs already; give more to continue it")
    assert "epochs: 2" in (tmp_path / "runs" / "r" / "config.yaml").read_text()
    config = tmp_path / "runs" / "r" / "config.yaml"
    config.write_text(config.read_text().replace("name: mlp", "name: resnet9"))
    edited = run_cli("train", "--resume", run, "--epochs", "3", check=False)
    assert edited.returncode == 2 and "Traceback" not in edited.stderr
    assert "last.pt: does not fit the run's config.yaml (edited since?) or is damaged; it cannot be resumed" in edited.stderr


def test_a_run_continues_on_another_device_or_precision(tmp_path):
    """A run trained with --device cuda on a lent GPU could not be continued on a CPU: --resume
    refused --device, and the run's config asked for a GPU that was not there."""
    run_cli("train", "--model", "mlp", "--epochs", "1", "--device", "cpu", "--precision", "fp32",
            "--out", tmp_path, "--name", "r")
    config = tmp_path / "r" / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))  # as trained on a GPU
    for check in (["--check"], []):
        stuck = run_cli("train", "--resume", tmp_path / "r", "--epochs", "2", *check, check=False)
        assert stuck.returncode == 2  # the device is the run's config's, so named by its key
        assert stuck.stderr.strip().endswith("error: device cuda: no CUDA device is available here; use --device=cpu")
    checked = run_cli("train", "--resume", tmp_path / "r", "--epochs", "2", "--device", "auto", "--precision", "auto",
                      "--check")
    assert "every option checks out" in checked.stdout and "device: cuda" in config.read_text()
    run_cli("train", "--resume", tmp_path / "r", "--epochs", "2", "--device", "auto", "--precision", "auto")
    saved = config.read_text()
    assert "device: auto" in saved and "precision: auto" in saved
    assert [row["epoch"] for row in json.loads((tmp_path / "r" / "history.json").read_text())] == [1, 2]


def test_mnist_lenet5_end_to_end(mnist_dir, tmp_path):
    """The real MNIST files: one epoch of lenet5 on a 20,000-image subset, >95% on the test split."""
    result = run_cli("train", "--model", "lenet5", "--data", f"mnist:{mnist_dir}", "--epochs", "1",
                     "--subset", "20000", "--batch-size", "64", "--out", tmp_path, "--name", "mnist")
    run = tmp_path / "mnist"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["samples"] > 3000
    assert metrics["test"]["accuracy"] > 0.95, result.stdout
    test = json.loads(run_cli("evaluate", run, "--split", "test", "--format", "json").stdout)
    assert test["accuracy"] == pytest.approx(metrics["test"]["accuracy"])


def test_paper_style_crops_and_ten_crop_tta(tmp_path):
    """Decode larger, train on random crops with the paper's augmentations, evaluate and predict
    with the centre crop and with ten crops."""
    run_cli("train", "--model", "lenet5", "--data", "digits", "--image-size", "32x32", "--crop", "28x28",
            "--channels", "3", "--augment", "hflip", "--augment", "pca_lighting",
            "--augment", "random_resized_crop:0.5", "--epochs", "2", "--out", tmp_path, "--name", "r",
            "--quiet")
    run = tmp_path / "r"
    centre = json.loads(run_cli("evaluate", run, "--format", "json", "--no-report").stdout)
    ten = json.loads(run_cli("evaluate", run, "--tta", "10crop", "--format", "json", "--no-report").stdout)
    assert ten["tta"] == "10crop" and centre["tta"] is None
    assert 0.3 < ten["accuracy"] <= 1.0 and ten["loss"] != centre["loss"]
    six = json.loads(run_cli("evaluate", run, "--tta", "flip-shift", "--format", "json", "--no-report").stdout)
    assert six["tta"] == "flip-shift" and 0.3 < six["accuracy"] <= 1.0
    assert len({six["loss"], ten["loss"], centre["loss"]}) == 3
    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), "white").save(image)
    top = json.loads(run_cli("predict", run, image, "--tta", "10crop", "--format", "json").stdout)
    assert sum(p["probability"] for p in top[0]["top"]) <= 1.0 + 1e-6
    assert "10crop" not in run_cli("evaluate", run, "--tta", "10crop", "--no-report").stderr


def test_ten_crops_of_images_decoded_at_the_input_size_are_called_what_they_are(digits_run):
    """Decoded at the model's input size, the ten crops are the image and its mirror image five
    times each: --tta flip at five times the cost, which ran without a word."""
    for command in (["evaluate", digits_run, "--no-report"], ["predict", digits_run, digits_run / "preview.jpg"]):
        result = run_cli(*command, "--tta", "10crop")
        assert ("cnnlab: warning: --tta 10crop: this run decodes its images at its input size (28x28), so the "
                "ten crops are the image and its mirror image five times each: the same as --tta=flip at five "
                "times the cost (train with --image-size larger than --crop to use it)") in result.stderr


def test_mirrored_views_of_a_run_trained_without_mirror_images_are_warned_of(digits_run):
    """--tta flip took gtsrb-resnet9 from 98.8% to 91.4% on gtsrb-tune without a word: a
    mirrored sign (or digit) is often another class, and training never showed one."""
    for command in (["evaluate", digits_run, "--no-report"], ["predict", digits_run, digits_run / "preview.jpg"]):
        for tta in ("flip", "flip-shift", "10crop"):
            assert (f"cnnlab: warning: --tta {tta}: this run was trained without mirror images (no hflip in "
                    "data.augment), and a mirrored sign or digit is often another class; --tta=shift keeps the "
                    "views upright") in run_cli(*command, "--tta", tta).stderr
        assert "warning" not in run_cli(*command, "--tta", "shift").stderr


def test_mirrored_views_of_images_in_memory_are_warned_of_too(digits_run):
    """predict() of arrays took another path than predict() of files, and only the files'
    warned of mirrored views."""
    from cnnlab import predict
    from cnnlab.errors import CnnlabWarning

    with pytest.warns(CnnlabWarning, match="trained without mirror images"):
        predict(digits_run, np.zeros((2, 28, 28), np.uint8), tta="flip")


@pytest.mark.parametrize("command, name, needle", [
    (["compare", "RUN", "--out"], "notes.txt", "a comparison is written as .html or .htm"),
    (["export", "RUN", "--out"], "notes.txt", "an ONNX model is written as .onnx"),
    (["export", "RUN", "--format", "safetensors", "--out"], "model.onnx", "a weights file is written as .safetensors"),
    (["export", "RUN", "--out"], "best.pt", "an ONNX model is written as .onnx"),
    (["export", "RUN", "--format", "safetensors", "--out"], "metrics.json", "a weights file is written as .safetensors"),
    (["data", "info", "digits", "--preview"], "notes.txt", "a picture is written as .png or .jpg or .jpeg"),
    (["lr-find", "--model", "mlp", "--data", "digits", "--plot"], "notes.txt", "a picture is written as .png"),
])
def test_a_file_a_command_writes_must_be_named_as_what_it_is(digits_run, tmp_path, command, name, needle):
    """cnnlab compare RUN --out NAME wrote its HTML over whatever NAME was (a notes file, or
    /etc/passwd as root), as did export, --preview and --plot: a name of another kind is
    refused, as Keras' model.save refuses one that does not end in .keras, and the file is left."""
    kept = tmp_path / name
    kept.write_text("my notes")
    result = run_cli(*[str(digits_run) if word == "RUN" else word for word in command], kept, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"{kept}: {needle}; give a name that ends so"), result.stderr
    assert kept.read_text() == "my notes"


def test_evaluate_without_the_report_writes_the_numbers_only(tmp_path):
    run_cli("train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", tmp_path,
            "--name", "r", "--quiet")
    run = tmp_path / "r"
    result = json.loads(run_cli("evaluate", run, "--tta", "flip", "--format", "json", "--no-report").stdout)
    saved = run / "evaluations" / "digits-val-flip"
    assert result["saved_to"] == str(saved)
    assert {p.name for p in saved.iterdir()} == {"metrics.json", "predictions-val.csv"}
    assert not list(run.glob("*.png")) and not (run / "report.html").exists()


def test_evaluate_takes_the_test_split_of_a_run_without_validation(tmp_path):
    """A run trained with --val-split 0 (the CIFAR-10 recipes) evaluated its test split at the
    end; `cnnlab evaluate RUN`, with or without its own --data, does the same."""
    root = tmp_path / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 40), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)), 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
    run_cli("train", "--model", "mlp", "--data", f"mnist:{root}", "--val-split", "0", "--epochs", "1",
            "--out", tmp_path, "--name", "r", "--quiet")
    recorded = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "val" not in recorded and recorded["test"]["samples"] == 20
    for data in ([], ["--data", f"mnist:{root}"]):
        result = json.loads(run_cli("evaluate", tmp_path / "r", *data, "--format", "json", "--no-report").stdout)
        assert result["split"] == "test" and result["samples"] == 20
        assert result["accuracy"] == pytest.approx(recorded["test"]["accuracy"])


@pytest.mark.parametrize("args, target", [
    (["compare", "RUN", "RUN", "--out", "RUN/report.html"], "report.html"),
    (["compare", "RUN", "RUN", "--out", "RUN/curves.html"], "curves.png"),
    (["lr-find", "--model", "mlp", "--steps", "5", "--plot", "RUN/curves.png"], "curves.png"),
    (["data", "info", "digits", "--preview", "RUN/evaluations/other/confusion-test.png"],
     "evaluations/other/confusion-test.png"),
])
def test_a_file_a_command_writes_never_replaces_a_runs_file(digits_run, tmp_path, args, target):
    """`compare --out RUN/curves.html` replaced the run's curves with the comparison's: work
    lost to a typo. (`export RUN --out RUN/best.pt`, which replaced the checkpoint with ONNX
    bytes, is refused by its name now: the test after.)"""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    (run / "evaluations" / "other").mkdir(parents=True, exist_ok=True)
    (run / "evaluations" / "other" / "confusion-test.png").write_bytes(b"the evaluation's picture")
    before = (run / target).read_bytes()
    result = run_cli(*[a.replace("RUN", str(run)) for a in args], check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{run / target}: is a file of the run {run}; write to a new name or outside the run" in result.stderr
    assert (run / target).read_bytes() == before


def test_a_command_may_write_again_what_it_wrote_in_a_run_folder(digits_run, tmp_path):
    """Only the run's own files are protected: `cnnlab compare . ../other` typed twice inside a
    run folder rewrites its compare.html, which is the comparison's, not the run's."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    for _ in range(2):
        run_cli("compare", ".", str(digits_run), cwd=run)
        run_cli("data", "info", "digits", "--preview", "digits.png", cwd=run)
    assert (run / "compare.html").is_file() and (run / "compare.png").is_file() and (run / "digits.png").is_file()


def test_export_may_rewrite_its_own_file_and_write_new_files_in_a_run(digits_run, tmp_path):
    import shutil

    pytest.importorskip("onnx")
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    for args in ([], [], ["--out", run / "model.onnx"], ["--out", run / "lenet5.onnx"]):
        run_cli("export", run, *args)
    assert (run / "model.onnx").stat().st_size > 0 and (run / "lenet5.onnx").read_bytes() == (run / "model.onnx").read_bytes()


def test_a_run_without_a_finished_epoch_says_so(digits_run, tmp_path):
    """A run stopped in its first epoch has config.yaml and classes.json but no best.pt yet;
    evaluate, predict and export said "RUN/best.pt: no such checkpoint file"."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "classes.json"):
        shutil.copy(digits_run / name, run / name)
    for command in (["evaluate", run], ["predict", run, digits_run / "preview.jpg"], ["export", run]):
        result = run_cli(*command, check=False)
        assert result.returncode == 2 and result.stderr.strip().endswith(
            f"{run}: no best.pt yet: no epoch of this run has finished (continue it with cnnlab train "
            f"--resume {run})"), result.stderr


def test_runs_lists_the_runs_of_a_folder_and_where_each_stands(tmp_path):
    """A sweep leaves dozens of runs: which finished, which stopped (and how to go on), which
    is training now, and how each did, without opening every folder."""
    from cnnlab import api
    from cnnlab.runs import RunDirectory
    from cnnlab.training.callbacks import Callback

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    out = tmp_path / "runs"
    api.train(model="mlp", data="digits", epochs=1, lr=1e-7, out=str(out), name="poor", quiet=True, report=False)
    api.train(model="mlp", data="digits", epochs=2, out=str(out), name="done", quiet=True, report=False)
    with pytest.raises(KeyboardInterrupt):
        api.train(model="mlp", data="digits", epochs=3, out=str(out), name="stopped", quiet=True, report=False,
                  callbacks=[StopAfterFirstEpoch()])
    (out / "notes").mkdir()  # not a run: left out
    listing = {row["name"]: row for row in json.loads(run_cli("runs", out, "--format", "json").stdout)}
    assert set(listing) == {"poor", "done", "stopped"}
    assert listing["done"]["status"] == "finished" and listing["done"]["epochs"] == [2, 2]
    assert listing["done"]["model"] == "mlp" and 0 < listing["done"]["val_accuracy"] <= 1
    history = json.loads((out / "done" / "history.json").read_text())
    assert listing["done"]["training_seconds"] == pytest.approx(sum(row["seconds"] for row in history))
    # a finished run's figure is its kept checkpoint's, evaluated at the end, as its report and
    # metrics.json give it (an epoch's figure in bf16 may differ from it by an image)
    kept = (out / "done" / "metrics.json").read_text()
    metrics = json.loads(kept)
    metrics["val"]["accuracy"] = 0.123  # as if it were one that differs from every epoch's
    (out / "done" / "metrics.json").write_text(json.dumps(metrics))
    finished = {row["name"]: row for row in json.loads(run_cli("runs", out, "--format", "json").stdout)}
    assert finished["done"]["val_accuracy"] == 0.123 and finished["done"]["status"] == "finished"
    (out / "done" / "metrics.json").write_text(kept)
    assert listing["stopped"]["status"] == f"stopped: cnnlab train --resume {out / 'stopped'}"
    assert listing["stopped"]["epochs"] == [1, 3]
    (out / "stopped" / "last.pt").write_bytes(b"not a checkpoint")  # resuming says so; the listing goes on
    damaged = {row["name"]: row for row in json.loads(run_cli("runs", out, "--format", "json").stdout)}
    assert damaged["stopped"]["status"] == listing["stopped"]["status"]
    with RunDirectory(out / "stopped").training_lock("test"):
        busy = json.loads(run_cli("runs", out, "--format", "json").stdout)
    assert {row["name"]: row["status"] for row in busy}["stopped"] == "training now"
    table = run_cli("runs", out).stdout.splitlines()
    assert table[0].split()[:3] == ["run", "model", "data"] and len(table) == 5
    machine = listing["done"]["trained_on"][0]["machine"]
    assert table[-1] == f"training times: {machine}" and machine.startswith("cpu ")  # one machine: no column
    assert table[0].split()[-2:] == ["training", "status"] and re.search(r" (\d+ ms|\d\.\d s|\d+ s)  finished$", table[2])
    by_accuracy = json.loads(run_cli("runs", out, "--sort", "val_accuracy", "--format", "json").stdout)
    assert [row["name"] for row in by_accuracy][-1] == "poor"  # the best first, as a sweep is read
    assert [row["val_accuracy"] for row in by_accuracy] == sorted((row["val_accuracy"] for row in by_accuracy),
                                                                   reverse=True)
    assert [row["name"] for row in json.loads(run_cli("runs", out / "done", "--format", "json").stdout)] == ["done"]
    (tmp_path / "empty").mkdir()
    assert run_cli("runs", tmp_path / "empty").stdout.strip() == f"no runs in {tmp_path / 'empty'}"
    missing = run_cli("runs", tmp_path / "nowhere", check=False)
    assert missing.returncode == 2 and missing.stderr.strip().endswith(f"{tmp_path / 'nowhere'}: no such folder")


def test_predict_takes_an_image_url_as_the_flowers_tutorial_does(digits_run, tmp_path, file_server, monkeypatch):
    """The flowers tutorial predicts a photo from the web (get_file(origin=sunflower_url), then
    load_img): `predict RUN URL` said "no such file or folder". The photo is downloaded once and
    its result is named by its URL."""
    served, base = file_server
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    Image.new("L", (8, 8), 200).save(served / "Red_sunflower.png")
    url = f"{base}/Red_sunflower.png"
    listing = json.loads(run_cli("predict", digits_run, url, "--format", "json", "--top-k", "1").stdout)
    assert [p["path"] for p in listing] == [url]
    table = run_cli("predict", digits_run, url).stdout
    assert table.startswith(url + "  ")
    missing = run_cli("predict", digits_run, f"{base}/nothing.png", check=False)
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr and "pass the image file instead" in missing.stderr


def test_training_without_a_recipe_names_the_recipes_measured_for_its_data(tmp_path):
    """A newcomer's `cnnlab train --data folder:photos` trained lenet5 at 28x28 on the photos,
    and `--model small-cnn` the defaults, with no word that cnnlab has recipes measured on such
    data (docs/results.md)."""
    folder = make_image_folder(tmp_path / "photos", per_class=3)
    plain = run_cli("train", "--data", f"folder:{folder}", "--check")
    assert ("note: no --model given, so lenet5, the default (LeNet-5, for 28x28 digits); for folder data "
            "cnnlab recommends --config faces-resnet9 (docs/results.md), and has alexnet-paper, faces-small-cnn, "
            "faces-vgg16 (cnnlab recipes)") in plain.stdout
    bare = run_cli("train", "--data", str(folder), "--check")  # a bare path is a folder
    assert "for folder data cnnlab recommends --config faces-resnet9" in bare.stdout
    model = run_cli("train", "--model", "small-cnn", "--data", f"folder:{folder}", "--check")
    assert ("note: --config faces-small-cnn is cnnlab's recipe for small-cnn on folder data "
            "(cnnlab recipes); without one, training uses the defaults") in model.stdout
    for quiet in (["--config", "faces-small-cnn"], ["--model", "mlp"], ["--set", "model.name=mlp"]):
        assert "note:" not in run_cli("train", *quiet, "--data", f"folder:{folder}", "--check").stdout
    assert "note:" not in run_cli("train", "--check").stdout  # digits: no recipe is for it
    trained = run_cli("train", "--model", "mlp", "--data", f"folder:{folder}", "--epochs", "1", "--no-report",
                      "--set", "model.name=resnet9", "--image-size", "16x16", "--out", tmp_path / "runs", "--name", "r")
    assert "note: --config faces-resnet9 is cnnlab's recipe for resnet9 on folder data" in trained.stdout
    assert "note: --config faces-resnet9" in (tmp_path / "runs" / "r" / "train.log").read_text()
    bad = run_cli("train", "--model", "resnet9", "--data", f"folder:{tmp_path / 'gone'}", check=False)
    assert bad.returncode == 2 and "note:" not in bad.stdout  # the error alone, the note only once all checks out
    quiet = run_cli("train", "--model", "resnet9", "--data", f"folder:{folder}", "--epochs", "1", "--no-report",
                    "--image-size", "16x16", "--out", tmp_path / "runs", "--name", "q", "--quiet")
    assert quiet.stdout.strip() == str(tmp_path / "runs" / "q")  # --quiet: the run directory only


def test_runs_by_seed_figures_are_the_finished_runs_and_the_others_are_counted(tmp_path):
    """A sweep on a lent GPU was cut off at its time limit: cnnlab runs --by-seed gave a mean
    of 88.62% ± 12.38% for a setting whose one finished run had 97.37%, its other run being
    stopped in epoch 14 at 79.86%. A stopped run's best so far is not a result of its setting."""
    from cnnlab import api
    from cnnlab.training.callbacks import Callback

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise KeyboardInterrupt

    out = tmp_path / "runs"
    for seed in (0, 1):
        api.train(model="mlp", data="digits", epochs=2, seed=seed, out=str(out), name=f"s{seed}", quiet=True,
                  report=False)
    with pytest.raises(KeyboardInterrupt):
        api.train(model="mlp", data="digits", epochs=2, seed=2, out=str(out), name="s2", quiet=True,
                  report=False, callbacks=[StopAfterFirstEpoch()])
    single = {row["name"]: row for row in json.loads(run_cli("runs", out, "--format", "json").stdout)}
    [group] = json.loads(run_cli("runs", out, "--by-seed", "--format", "json").stdout)
    assert group["runs"] == ["s0", "s1", "s2"] and group["status"] == "2 finished, 1 stopped"
    assert group["finished"] == ["s0", "s1"]
    finished = [single[name]["val_accuracy"] for name in ("s0", "s1")]
    assert group["val_accuracy"]["mean"] == pytest.approx(np.mean(finished))
    assert (group["val_accuracy"]["min"], group["val_accuracy"]["max"]) == (min(finished), max(finished))
    header, row, machine, note = run_cli("runs", out, "--by-seed").stdout.splitlines()
    assert row.split()[0] == "2/3" and machine == f"training times: {group['trained_on'][0]}"
    assert note == ("N/M runs: the figures are those of the N finished runs of M; cnnlab runs lists the others "
                    "(stopped, diverged or training now)")


def test_runs_by_seed_groups_repeats_and_shows_what_sets_them_apart(tmp_path):
    """On 136 validation images one image is 0.74 points: judging a change takes repeats with
    other seeds and their mean and spread, which docs/results.md worked out by hand."""
    from cnnlab import api

    out = tmp_path / "runs"
    for lr in (1e-3, 3e-2):
        for seed in (0, 1, 2):
            api.train(model="mlp", data="digits", epochs=1, lr=lr, seed=seed, out=str(out), name=f"lr{lr}-s{seed}",
                      quiet=True, report=(lr, seed) == (3e-2, 2))  # what a run writes is no part of its setting
    api.train(model="lenet5", data="digits", epochs=1, out=str(out), name="alone", quiet=True, report=False)
    single = {row["name"]: row for row in json.loads(run_cli("runs", out, "--format", "json").stdout)}
    groups = json.loads(run_cli("runs", out, "--by-seed", "--format", "json").stdout)
    assert [sorted(group["runs"]) for group in groups] == [[f"lr0.001-s{s}" for s in range(3)],
                                                           [f"lr0.03-s{s}" for s in range(3)], ["alone"]]
    for group, lr in zip(groups[:2], (1e-3, 3e-2), strict=True):
        accuracies = [single[name]["val_accuracy"] for name in group["runs"]]
        assert group["seeds"] == [0, 1, 2] and group["status"] == "3 finished"
        assert group["val_accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
        assert group["val_accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert (group["val_accuracy"]["min"], group["val_accuracy"]["max"]) == (min(accuracies), max(accuracies))
        assert group["differs"] == {"optimizer.lr": lr}  # from the other settings of its model and data
        seconds = [single[name]["training_seconds"] for name in group["runs"]]
        assert group["training_seconds"]["mean"] == pytest.approx(np.mean(seconds))
    assert groups[2]["differs"] == {}
    assert groups[2]["val_accuracy"]["std"] is None  # one run: no spread
    table = run_cli("runs", out, "--by-seed").stdout
    assert "optimizer.lr=0.03" in table and "±" in table and len(table.splitlines()) == 5
    assert table.splitlines()[-1].startswith("training times: cpu ")
    assert "training (mean)" in table.splitlines()[0] and re.search(r" (\d+ ms|\d\.\d s|\d+ s)  optimizer.lr=0.03$", table.splitlines()[2])
    best_first = json.loads(run_cli("runs", out, "--by-seed", "--sort", "val_accuracy", "--format", "json").stdout)
    means = [group["val_accuracy"]["mean"] for group in best_first]
    assert means == sorted(means, reverse=True)


def test_runs_by_seed_names_a_nested_option_once_as_a_recipe_writes_it(tmp_path):
    """A frozen base set one group apart: the others said `model.options={},
    model.options.freeze_base=None`, an empty mapping beside its own key, in Python's words."""
    from cnnlab import api

    out = tmp_path / "runs"
    for frozen in (False, True):
        api.train(model="lenet5", data="digits", epochs=1, out=str(out), name=f"frozen-{frozen}", quiet=True,
                  report=False, **({"model__options": {"freeze_base": True}} if frozen else {}))
    groups = json.loads(run_cli("runs", out, "--by-seed", "--format", "json").stdout)
    assert [group["differs"] for group in groups] == [{"model.options.freeze_base": None},
                                                      {"model.options.freeze_base": True}]
    table = run_cli("runs", out, "--by-seed").stdout.splitlines()
    assert table[1].endswith("  model.options.freeze_base=null") and table[2].endswith("=true"), table


def test_each_recommended_recipe_is_a_bundled_recipe_for_its_source():
    from cnnlab.config import RECOMMENDED, bundled_recipes, recipes_for
    from cnnlab.data import SOURCES

    for source, name in RECOMMENDED.items():
        assert source in SOURCES and name in bundled_recipes() and name in recipes_for(source)


def test_a_source_whose_recipes_were_not_measured_has_them_listed():
    import argparse

    from cnnlab.cli import recipe_note
    from cnnlab.config import TrainConfig

    args = argparse.Namespace(config=None, resume=None, model=None, set=[])
    config = TrainConfig().with_overrides({"data.spec": "caltech256:/data/256_ObjectCategories"})
    assert recipe_note(args, config).endswith("cnnlab's recipes for caltech256 data: caltech256-alexnet-half "
                                              "(--config NAME; cnnlab recipes)")


def test_check_counts_the_images_each_split_will_train_and_validate_on(tmp_path):
    """`train --check` said "train 1360" for flowers17, whose training would hold 136 of those
    out for validation: it printed the listing, not the split the run would use."""
    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=10)
    checked = run_cli("train", "--model", "mlp", "--data", f"folder:{folder}", "--val-split", "0.2", "--check")
    assert "3 classes (train 24, val 6)" in checked.stdout
    subset = run_cli("train", "--model", "mlp", "--data", f"folder:{folder}", "--val-split", "0.2",
                     "--subset", "12", "--check")
    assert "3 classes (train 12, val 3)" in subset.stdout
    assert "(train 1797)" in run_cli("train", "--val-split", "0", "--check").stdout


def test_check_on_resume_counts_the_runs_own_split(tmp_path):
    """`train --resume RUN --check` counted the split drawn afresh from the folder as it is now,
    where the resumed run trains on the images it recorded in split.json."""
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=10)
    run_cli("train", "--model", "mlp", "--data", f"folder:{folder}", "--image-size", "8x8", "--val-split", "0.2",
            "--epochs", "1", "--out", tmp_path, "--name", "r")
    make_image_folder(tmp_path / "more", classes=2, per_class=5, seed=1)
    for image in (tmp_path / "more").glob("*/*.png"):
        image.rename(folder / image.parent.name / f"new-{image.name}")
    checked = run_cli("train", "--resume", tmp_path / "r", "--epochs", "2", "--check")
    assert "2 classes (train 16, val 4)" in checked.stdout


def test_runs_finds_the_runs_in_sub_folders_of_the_folder(tmp_path):
    """Runs kept a folder per experiment (`--out runs/lr-sweep`): `cnnlab runs runs` said
    "no runs in runs"."""
    from cnnlab import api

    out = tmp_path / "runs"
    for folder, name in (("sweep", "a"), ("sweep", "b"), ("2026/cifar/long", "c"), ("1/2/3/4", "too-deep")):
        api.train(model="mlp", data="digits", epochs=1, subset=100, out=str(out / folder), name=name, quiet=True,
                  report=False)
    (out / "sweep" / "a" / "evaluations" / "x").mkdir(parents=True)  # what a run holds is not searched
    (out / "loop").symlink_to(out)  # a linked folder is not searched: no run twice, no loop
    (out / "linked-run").symlink_to(out / "sweep" / "a")  # a link to a run is that run
    (out / ".trash" / "old").mkdir(parents=True)
    (out / "sweep" / "b").rename(out / ".trash" / "old" / "b")  # hidden folders are not searched
    listing = json.loads(run_cli("runs", out, "--format", "json").stdout)
    assert sorted(row["name"] for row in listing) == ["2026/cifar/long/c", "linked-run", "sweep/a"]
    (out / ".trash" / "old" / "b").rename(out / "sweep" / "b")
    (out / "linked-run").unlink()
    listing = json.loads(run_cli("runs", out, "--format", "json").stdout)
    assert sorted(row["name"] for row in listing) == ["2026/cifar/long/c", "sweep/a", "sweep/b"]
    table = run_cli("runs", out).stdout.splitlines()
    assert [line.split()[0] for line in table[1:-1]] == ["sweep/a", "sweep/b", "2026/cifar/long/c"]
    assert len(json.loads(run_cli("runs", out / "sweep", "--by-seed", "--format", "json").stdout)) == 1
    compared = run_cli("compare", out / "sweep", "--out", tmp_path / "compare.html")
    assert compared.returncode == 0 and (tmp_path / "compare.html").is_file()


def test_a_setting_is_shown_as_a_recipe_writes_it():
    from cnnlab.cli import setting_text

    assert setting_text(["hflip", "pad_crop:4"]) == "[hflip, 'pad_crop:4']"
    # a progressive-resizing phase given in fractions: its unset epochs are no part of it
    assert setting_text([{"scale": 0.75, "epochs": None, "fraction": 0.4}]) == "[{scale: 0.75, fraction: 0.4}]"
    assert setting_text(None) == "null" and setting_text(True) == "true" and setting_text(0.03) == "0.03"


LONG_NAME = "x" * 300


@pytest.mark.parametrize("args", [
    ["runs", LONG_NAME], ["evaluate", LONG_NAME], ["predict", LONG_NAME, "a.png"], ["compare", LONG_NAME],
    ["export", LONG_NAME], ["data", "info", f"folder:{LONG_NAME}"], ["train", "--config", LONG_NAME, "--check"],
    ["train", "--data", f"folder:{LONG_NAME}", "--check"], ["train", "--class-weight", LONG_NAME, "--check"],
    ["data", "info", "digits", "--preview", f"{LONG_NAME}/grid.png"],
])
def test_a_path_the_system_refuses_is_one_line_naming_it(tmp_path, args):
    """A file name longer than the file system allows (255 bytes) ended every command that
    takes a path in a traceback: OSError: [Errno 36] File name too long."""
    result = run_cli(*args, check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert LONG_NAME in result.stderr and "File name too long" in result.stderr


def test_runs_table_keeps_its_columns_apart_for_a_short_run_name(tmp_path):
    """A run named 'f1' made the header read 'runmodel': the first column was as wide as the
    names, not as its heading."""
    from cnnlab import api

    api.train(model="mlp", data="digits", epochs=1, out=str(tmp_path), name="r", quiet=True, report=False)
    header, row, _machine = run_cli("runs", tmp_path).stdout.splitlines()
    assert header.split() == ["run", "model", "data", "epochs", "val", "acc", "test", "acc", "training", "status"]
    assert row.index("mlp") == header.index("model") and row.split()[0] == "r"


def test_a_warmup_as_long_as_the_run_is_named(tmp_path):
    """`--config faces-resnet9 --epochs 2`, a quick try of the recipe, warmed up for both epochs
    (its warmup_epochs: 2): the lr only rose, and the cosine schedule never lowered it."""
    folder = make_image_folder(tmp_path / "photos", per_class=3)
    short = run_cli("train", "--config", "faces-resnet9", "--data", f"folder:{folder}", "--epochs", "2", "--check")
    assert ("cnnlab: warning: schedule.warmup_epochs 2: as long as the run (--epochs 2), so the lr only rises "
            "to 0.002 and the cosine schedule never lowers it; give more epochs or a shorter warmup") in short.stderr
    for quiet in (["--epochs", "3"], ["--epochs", "2", "--set", "schedule.warmup_epochs=0"],
                  ["--epochs", "2", "--set", "schedule.name=constant"]):
        checked = run_cli("train", "--config", "faces-resnet9", "--data", f"folder:{folder}", *quiet, "--check")
        assert "warning" not in checked.stderr
    # the range test sets the lr itself
    found = run_cli("lr-find", "--config", "faces-resnet9", "--data", f"folder:{folder}", "--epochs", "2",
                    "--image-size", "48x48", "--crop", "40x40", "--steps", "5", "--plot", tmp_path / "lr.png")
    assert "warning" not in found.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the message of a machine without CUDA")
def test_a_cuda_device_asked_for_by_number_is_named_as_given(tmp_path):
    """`--device cuda:3` was told "--device cuda: no CUDA device is available here"."""
    refused = run_cli("train", "--device", "cuda:3", "--out", tmp_path, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("error: --device cuda:3: no CUDA device is available here; use --device=cpu")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux), a file that is always full")
@pytest.mark.parametrize("args", [["runs", "RUN"], ["predict", "RUN", "IMAGE", "--format", "csv"]])
def test_output_to_a_full_disk_is_one_line(digits_run, tmp_path, args):
    """`cnnlab runs > file` on a full disk (found on a full tmpfs; models and recipes too)
    ended in a traceback: OSError: [Errno 28] No space left on device, from print."""
    import subprocess
    import sys

    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "seven.png")
    args = [{"RUN": str(digits_run), "IMAGE": str(tmp_path / "seven.png")}.get(a, a) for a in args]
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "cnnlab", *args], stdout=full, stderr=subprocess.PIPE,
                                text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"cnnlab {args[0]}: error: cannot write its output (No space left on device)"

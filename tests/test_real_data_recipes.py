"""The tuned recipes on the real data they were tuned on (../shared/datasets), each asserting a
floor a little under the figure in docs/results.md. Each is a full training (15-30 minutes on a
2-core CPU): marked slow, run by `make test-all`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.data.safe import extract_archive
from conftest import MNIST, REPO, SHARED, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def extracted(tmp_path_factory, archive: str, folder: str) -> Path:
    path = SHARED / archive
    if not path.is_file():
        pytest.skip(f"{path} not found (set CNNLAB_SHARED_DATASETS)")
    return extract_archive(path, tmp_path_factory.mktemp("real") / "x") / folder


def train_recipe(recipe: str, spec: str, out: Path, *options: str) -> dict:
    run_cli("train", "--config", REPO / "recipes" / recipe, "--data", spec, "--out", out,
            "--name", "r", "--quiet", *options)
    return json.loads((out / "r" / "metrics.json").read_text())


@pytest.mark.parametrize("recipe, floor", [("gtsrb-resnet9.yaml", 0.975), ("gtsrb-alexnet-bn.yaml", 0.93)])
def test_gtsrb_recipes_on_gtsrb_tune(tmp_path_factory, tmp_path, recipe, floor):
    root = extracted(tmp_path_factory, "gtsrb-tune.tar.gz", "gtsrb-tune")
    metrics = train_recipe(recipe, f"gtsrb:{root}", tmp_path)
    assert metrics["val"]["samples"] == 2130  # whole tracks, seed 0
    assert metrics["val"]["accuracy"] >= floor
    # predict, given the sign boxes of the same files, reads them as the evaluation did
    validation = json.loads((tmp_path / "r" / "split.json").read_text())["val"]
    with (root / "Train.csv").open(newline="") as handle:
        truth = {row["Path"]: int(row["ClassId"]) for row in csv.DictReader(handle)}
    shown = run_cli("predict", tmp_path / "r", *[root / name for name in validation], "--boxes", root / "Train.csv",
                    "--top-k", "1", "--format", "json")
    right = sum(int(p["top"][0]["class"]) == truth[Path(p["path"]).relative_to(root).as_posix()]
                for p in json.loads(shown.stdout))
    assert right == round(metrics["val"]["accuracy"] * 2130)


# the Caltech-256 recipe on the photo folder that is here, with the folder's split (its
# `categories` option is left out: the folder source has none)
CALTECH_ON_A_FOLDER = ("--val-split", "0.1", "--seed", "123")


@pytest.mark.parametrize("recipe, floor, options", [("faces-resnet9.yaml", 0.84, ()), ("faces-small-cnn.yaml", 0.70, ()),
                                                    ("caltech256-alexnet-half.yaml", 0.80, CALTECH_ON_A_FOLDER)])
def test_small_folder_recipes_on_flowers17(tmp_path_factory, tmp_path, recipe, floor, options):
    root = extracted(tmp_path_factory, "flowers17.tar.gz", "flowers17")
    metrics = train_recipe(recipe, f"folder:{root}", tmp_path, *options)
    assert metrics["val"]["samples"] == 136  # 10% of 17 x 80, seed 123, as the tutorial split
    assert metrics["val"]["accuracy"] >= floor


def time_to_accuracy(*args) -> str:
    result = subprocess.run([sys.executable, REPO / "benchmarks" / "time_to_accuracy.py", *map(str, args)],
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr
    return result.stdout


def best_accuracy(output: str) -> float:
    line = next(line for line in output.splitlines() if "accuracy per epoch" in line)
    return max(float(value) for value in line.rsplit(": ", 1)[1].split(","))


def test_mnist_resnet9_reaches_99_5(tmp_path):
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST}")
    output = time_to_accuracy("--data", f"mnist:{MNIST}", "--config", REPO / "recipes" / "mnist-resnet9.yaml",
                              "--model", "resnet9", "--target", "0.995", "--epochs", "6", "--out", tmp_path)
    assert best_accuracy(output) >= 0.995


def test_cifar10_resnet9_on_the_jpeg_copy(tmp_path_factory, tmp_path):
    root = extracted(tmp_path_factory, "cifar10-jpeg.tar.gz", "")
    output = time_to_accuracy("--data", f"folder:{root}", "--config", REPO / "recipes" / "cifar10-resnet9.yaml",
                              "--model", "resnet9", "--target", "0.90", "--tta", "flip", "--epochs", "19",
                              "--out", tmp_path)
    assert best_accuracy(output) >= 0.86


@pytest.mark.parametrize("recipe, epochs, floor", [("cifar10-airbench.yaml", "16", 0.885),
                                                   ("cifar10-airbench-full.yaml", "12", 0.90)])
def test_cifar10_airbench_on_the_jpeg_copy(tmp_path_factory, tmp_path, recipe, epochs, floor):
    root = extracted(tmp_path_factory, "cifar10-jpeg.tar.gz", "")
    output = time_to_accuracy("--data", f"folder:{root}", "--config", REPO / "recipes" / recipe,
                              "--model", "airbench", "--target", "0.90", "--tta", "flip-shift", "--epochs", epochs,
                              "--evaluate-from", epochs, "--out", tmp_path)
    assert best_accuracy(output) >= floor

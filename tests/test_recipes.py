"""Every recipe loads, round-trips, names a registered model and data source, and trains through
the CLI on tiny data in its source's format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnlab.config import TrainConfig
from cnnlab.data import SOURCES
from cnnlab.models import MODELS
from cnnlab.training.schedules import SCHEDULES
from conftest import REPO, make_image_folder, run_cli, write_idx
from test_datasets import write_caltech, write_cifar10, write_cifar100, write_gtsrb_official

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def test_every_tutorial_experiment_has_both_recipes():
    names = {p.name for p in RECIPES if p.parent.name == "recipes"}
    tutorial = {p.name for p in RECIPES if p.parent.name == "tutorial"}
    assert tutorial <= names and len(tutorial) == 7


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_is_valid(path: Path):
    config = TrainConfig.from_yaml(path)
    assert config.model.name in MODELS
    assert config.data.spec.split(":")[0] in SOURCES
    assert config.schedule.name in SCHEDULES
    assert TrainConfig.from_dict(config.to_dict()) == config
    info = MODELS.get(config.model.name)
    assert set(config.model.options) <= set(info.options)


def recipe_data(name: str, root: Path) -> tuple[str, list[str]]:
    """Tiny data in the layout each recipe's source reads, and the options that shrink the run."""
    small_crop = ["--image-size", "76x76", "--crop", "67x67"]
    if name in ("mnist-alexnet", "mnist-resnet9"):
        root.mkdir()
        for prefix, count in (("train", 40), ("t10k", 10)):
            write_idx(root / f"{prefix}-images-idx3-ubyte.gz", np.zeros((count, 28, 28)) + np.arange(count)[:, None, None], 2051)
            write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
        return f"mnist:{root}", []
    if name == "cifar100-simple-cnn":
        return f"cifar100:{write_cifar100(root)}", []
    if name == "gtsrb-alexnet-bn":
        return f"gtsrb:{write_gtsrb_official(root)}", small_crop
    if name == "gtsrb-resnet9":
        return f"gtsrb:{write_gtsrb_official(root)}", []
    if name.startswith("cifar10-"):
        return f"cifar10:{write_cifar10(root, as_tar=True)}", []
    if name == "caltech256-alexnet-half":
        return f"caltech256:{write_caltech(root)}", ["--categories", "2", *small_crop]
    folder = f"folder:{make_image_folder(root, per_class=10)}"
    sizes = {"faces-small-cnn": ["--image-size", "48x48", "--crop", "40x40"],
             "faces-vgg16": ["--image-size", "32x32"],
             "faces-resnet9": ["--image-size", "48x48", "--crop", "40x40"]}
    return folder, sizes.get(name, small_crop)


@pytest.mark.parametrize("name", sorted(p.stem for p in RECIPES if p.parent.name == "recipes"))
def test_recipe_trains_through_cli(tmp_path: Path, name: str):
    """`cnnlab train --config recipes/X.yaml --data SPEC` on tiny data in the recipe's own format."""
    spec, shrink = recipe_data(name, tmp_path / "data")
    run_cli("train", "--config", REPO / "recipes" / f"{name}.yaml", "--data", spec, "--epochs", "1",
            "--batch-size", "8", "--out", tmp_path / "runs", "--name", "r", "--quiet", *shrink)
    config = TrainConfig.from_yaml(tmp_path / "runs" / "r" / "config.yaml")
    assert config.model == TrainConfig.from_yaml(REPO / "recipes" / f"{name}.yaml").model
    assert json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())["checkpoint"] == "best.pt"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_reads_a_folder_of_class_folders(tmp_path: Path, path: Path):
    """`cnnlab train --config gtsrb-resnet9 --data folder:X` (GTSRB's classes as folders, as
    Kaggle's Train/ is) was refused: "the folder source has no option 'roi_crop'", and so were
    the Caltech-256 recipes on a folder ('categories'). A recipe's source options are for its
    source: another source keeps those it takes, and a warning names the others."""
    folder = make_image_folder(tmp_path / "photos", per_class=3)
    checked = run_cli("train", "--config", path, "--data", f"folder:{folder}", "--check")
    assert "every option checks out" in checked.stdout
    options = TrainConfig.from_yaml(path).data.options
    left_out = (f"cnnlab: warning: --data folder:{folder}: the folder source has no option "
                f"{', '.join(options)}; the recipe sets {'it' if len(options) == 1 else 'them'} for "
                f"{TrainConfig.from_yaml(path).data.spec} data, and training goes without")
    assert (left_out in checked.stderr) == bool(options)
    assert checked.stderr.count("warning:") == len(checked.stderr.splitlines()) == bool(options)


def test_source_options_given_with_another_source_are_still_refused(tmp_path: Path):
    folder = make_image_folder(tmp_path / "photos", per_class=3)
    for given in (["--roi-crop"], ["--set", "data.options.roi_crop=true"]):
        refused = run_cli("train", "--config", "gtsrb-resnet9", "--data", f"folder:{folder}", *given, "--check",
                          check=False)
        assert refused.returncode == 2
        assert refused.stderr.strip().endswith(f"folder:{folder}: the folder source has no option 'roi_crop'; "
                                               "its options: none")
    same_source = run_cli("train", "--config", "gtsrb-resnet9", "--data", f"gtsrb:{tmp_path / 'gone'}", "--check",
                          check=False)
    assert same_source.returncode == 2 and "warning" not in same_source.stderr


def test_python_api_trains_a_recipe_on_a_folder(tmp_path: Path):
    import cnnlab
    from cnnlab.errors import CnnlabWarning

    folder = make_image_folder(tmp_path / "photos", per_class=3)
    with pytest.warns(CnnlabWarning, match="the folder source has no option roi_crop; the recipe sets it for gtsrb"):
        run = cnnlab.train("gtsrb-resnet9", data=f"folder:{folder}", epochs=2, batch_size=4, report=False,
                           out=str(tmp_path / "runs"), quiet=True)
    assert run.config.data.options == {} and run.config.data.spec == f"folder:{folder}"

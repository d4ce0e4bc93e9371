"""Every registered model trains one epoch through the real CLI on real data (a digits subset),
at the smallest convenient input size its arithmetic allows."""

from __future__ import annotations

import json
import re

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.models import MODELS, create_model
from conftest import run_cli

FAST = {"lenet5", "mlp", "simple-cnn"}


def training_size(name: str) -> int:
    try:
        create_model(name, input_size=(32, 32))
        return 32
    except CnnlabError as exc:
        return int(re.search(r"at least (\d+)x", str(exc)).group(1))


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in MODELS.names()])
def test_one_epoch_cli(name, tmp_path):
    size = training_size(name)
    run_cli("train", "--model", name, "--data", "digits", "--subset", "200", "--epochs", "1",
            "--batch-size", "32", "--image-size", f"{size}x{size}", "--out", tmp_path,
            "--name", "r", "--quiet")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert 0.0 <= metrics["val"]["accuracy"] <= 1.0
    assert (tmp_path / "r" / "best.pt").is_file() and (tmp_path / "r" / "last.pt").is_file()

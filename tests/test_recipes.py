"""Every recipe loads, round-trips and names a registered model and data source."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab.config import TrainConfig
from cnnlab.data import SOURCES
from cnnlab.models import MODELS
from cnnlab.training.schedules import SCHEDULES
from conftest import REPO

RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


def test_every_tutorial_experiment_has_both_recipes():
    names = {p.name for p in RECIPES if p.parent.name == "recipes"}
    assert names == {p.name for p in RECIPES if p.parent.name == "tutorial"}
    assert len(names) == 7


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_is_valid(path: Path):
    config = TrainConfig.from_yaml(path)
    assert config.model.name in MODELS
    assert config.data.spec.split(":")[0] in SOURCES
    assert config.schedule.name in SCHEDULES
    assert TrainConfig.from_dict(config.to_dict()) == config
    info = MODELS.get(config.model.name)
    assert set(config.model.options) <= set(info.options)

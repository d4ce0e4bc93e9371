from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.config import TrainConfig, parse_override, read_yaml
from cnnlab.errors import ConfigError


def test_yaml_round_trip(tmp_path):
    config = TrainConfig().with_overrides({
        "model.name": "alexnet", "model.options.groups": 1, "optimizer.lr": 0.01,
        "schedule.milestones": [3, 6], "data.image_size": [64, 64], "early_stopping.patience": 4,
        "data.progressive_resizing": [{"scale": 0.5, "epochs": 2}, {"scale": 0.75, "epochs": 1}]})
    path = tmp_path / "recipe.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(path) == config


@settings(max_examples=40, deadline=None)
@given(lr=st.floats(1e-6, 1.0), epochs=st.integers(1, 500), spec=st.sampled_from(["digits", "mnist:/x"]),
       milestones=st.lists(st.integers(1, 100), max_size=4), staircase=st.booleans())
def test_round_trip_property(lr, epochs, spec, milestones, staircase):
    config = TrainConfig().with_overrides({"optimizer.lr": lr, "epochs": epochs, "data.spec": spec,
                                           "schedule.milestones": milestones,
                                           "schedule.staircase": staircase})
    assert TrainConfig.from_dict(config.to_dict()) == config
    import yaml
    assert TrainConfig.from_dict(yaml.safe_load(config.to_yaml())) == config


def test_unknown_key_names_file_and_valid_keys(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("optimiser:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key 'optimiser' \(did you mean 'optimizer'\?\); "
                                          r"valid keys.*optimizer"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize(("key", "meant"), [
    ("learning_rate", "optimizer.lr"),          # Keras' name, written at the top of a recipe
    ("optimizer.learning_rate", "optimizer.lr"),
    ("validation_split", "data.val_split"),     # Keras' fit()
    ("imagesize", "data.image_size"),
    ("data.val", "data.val_split"),
    ("momentum", "optimizer.momentum"),
    ("weight_decay", "optimizer.weight_decay"),
    ("epoch", "epochs"),
    ("schedule.warmup", "schedule.warmup_epochs"),
    ("data.augmentation", "data.augment"),
])
def test_an_unknown_key_names_the_key_it_was_probably_meant_to_be(key, meant):
    """A Keras user's `learning_rate: 0.01` was refused with the top-level keys listed, none of
    which is the learning rate; the key meant is often elsewhere in the tree."""
    with pytest.raises(ConfigError, match=rf"unknown key '{key}' \(did you mean '{meant}'\?\)"):
        TrainConfig().with_overrides({key: 1})
    parent, _, leaf = key.rpartition(".")
    nested = {parent: {leaf: 1}} if parent else {leaf: 1}
    with pytest.raises(ConfigError, match=rf"unknown key '{key}' \(did you mean '{meant}'\?\)"):
        TrainConfig.from_dict(nested)


@pytest.mark.parametrize(("keyword", "meant"), [
    ("learning_rate", "lr"), ("validation_split", "val_split"), ("momentum", "optimizer__momentum"),
    ("optimiser__lr", "lr"), ("epoch", "epochs"),
])
def test_train_names_an_unknown_keyword_and_its_guess_as_keywords(keyword, meant):
    """train(learning_rate=0.1) was refused with "did you mean 'optimizer.lr'?", a key that
    train() does not take as written: its keyword is lr=."""
    from cnnlab import api

    with pytest.raises(ConfigError, match=rf"^train\(\): unknown key '{keyword}' \(did you mean '{meant}'\?\)"):
        api.train(model="mlp", data="digits", **{keyword: 0.1})


def test_a_misspelt_section_is_named_with_the_key_under_it():
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser.lr' \(did you mean 'optimizer.lr'\?\)"):
        TrainConfig().with_overrides({"optimiser.lr": 0.1})


def test_an_unknown_key_like_no_other_is_refused_without_a_guess():
    with pytest.raises(ConfigError) as refused:
        TrainConfig().with_overrides({"zzz": 1})
    assert "did you mean" not in str(refused.value) and "valid keys: model, data" in str(refused.value)


def test_a_progressive_resizing_phase_is_checked_key_by_key():
    config = TrainConfig().with_overrides({"data.progressive_resizing": [{"scale": 0.75, "epochs": 6}]})
    assert config.data.progressive_resizing[0].scale == 0.75
    with pytest.raises(ConfigError, match=r"unknown key 'data.progressive_resizing.size'"):
        TrainConfig().with_overrides({"data.progressive_resizing": [{"size": 24}]})
    with pytest.raises(ConfigError, match=r"data.progressive_resizing.epochs: expected a whole number"):
        TrainConfig().with_overrides({"data.progressive_resizing": [{"scale": 0.5, "epochs": 1.5}]})


def test_a_progressive_resizing_phase_may_last_a_fraction_of_the_run():
    """A recipe's phases given as fractions of its epochs stay in proportion when a user
    shortens the run with --epochs, as its learning-rate schedule does, down to a one-epoch
    trial run, which trains at the full size only."""
    import dataclasses

    phases = [{"scale": 0.5, "fraction": 0.33}, {"scale": 0.75, "fraction": 0.27}]
    config = TrainConfig().with_overrides({"epochs": 75, "data.progressive_resizing": phases})
    assert config.resize_phases() == [(0.5, 25), (0.75, 20)] and config.resized_epochs == 45
    for epochs, want in [(40, [(0.5, 13), (0.75, 11)]), (12, [(0.5, 4), (0.75, 3)]), (3, [(0.5, 1), (0.75, 1)]),
                         (2, [(0.5, 1)]), (1, [])]:
        assert dataclasses.replace(config, epochs=epochs).resize_phases() == want, epochs
    assert TrainConfig.from_dict(config.to_dict()) == config


@settings(max_examples=200, deadline=None)
@given(fractions=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4).filter(lambda f: sum(f) < 1),
       epochs=st.integers(1, 400))
def test_phases_in_fractions_always_leave_the_last_epoch_at_full_size(fractions, epochs):
    config = TrainConfig().with_overrides({"epochs": epochs, "data.progressive_resizing": [
        {"scale": 0.5, "fraction": f} for f in fractions]})
    assert all(length >= 1 for _, length in config.resize_phases())
    assert config.resized_epochs <= epochs - 1
    assert abs(config.resized_epochs - sum(fractions) * epochs) <= 1


def test_nested_unknown_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optimizer:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key 'optimizer.learning_rate'.*under optimizer: name, lr"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize("text, message", [
    ("epochs: ten\n", "epochs: expected a whole number"),
    ("optimizer:\n  lr: fast\n", "optimizer.lr: expected a number"),
    ("early_stopping:\n  restore_best_weights: 3\n", "expected true or false"),
    ("data:\n  augment: hflip\n", "data.augment: expected a list"),
    ("- a\n- b\n", "expected a mapping"),
    ("epochs: [\n", "not valid YAML"),
    # a section written as its name alone, as Keras names an optimizer or a schedule
    ("model: lenet5\n", r"model must be a mapping \(model: \{name: lenet5\}\)"),
    ("schedule: cosine\n", r"schedule must be a mapping \(schedule: \{name: cosine\}\)"),
    ("data: [1]\n", r"data must be a mapping$"),
])
def test_bad_values(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(path)


def test_a_config_that_is_no_mapping_says_so_once():
    with pytest.raises(ConfigError, match=r"^config: must be a mapping$"):  # was "config: config must be"
        TrainConfig.from_dict(None)


@pytest.mark.parametrize("text, line, key", [
    ("epochs: 3\nepochs: 4\n", 2, "epochs"),
    ("optimizer:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.01\n", 4, "lr"),
])
def test_a_key_given_twice_is_refused_not_the_last_one_kept(tmp_path, text, line, key):
    """YAML keeps the last of two equal keys without a word: a recipe edited by appending a
    line trained with a value its author had not seen."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: line {line}: {key} is given twice \(YAML would keep the last\)$"):
        TrainConfig.from_yaml(path)


def test_a_merged_mapping_may_be_overridden_key_by_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optimizer:\n  <<: {lr: 0.1, momentum: 0.9}\n  lr: 0.01\n")
    assert TrainConfig.from_yaml(path).optimizer.lr == 0.01


def test_missing_file():
    with pytest.raises(ConfigError, match="no such file"):
        read_yaml("/nonexistent/recipe.yaml")


def test_yaml_scientific_notation_string_is_a_number(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("optimizer:\n  lr: 1e-4\n")  # PyYAML reads 1e-4 as a string
    assert TrainConfig.from_yaml(path).optimizer.lr == pytest.approx(1e-4)


def test_override_parsing():
    assert parse_override("optimizer.lr=0.5") == ("optimizer.lr", 0.5)
    assert parse_override("data.augment=[hflip, pad_crop:4]") == ("data.augment", ["hflip", "pad_crop:4"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("novalue")
    with pytest.raises(ConfigError, match="unknown key 'optimizer.nope'"):
        TrainConfig().with_overrides({"optimizer.nope": 1})
    with pytest.raises(ConfigError, match=r"^--set model.options: widths is given twice \(YAML would keep the last\)$"):
        parse_override("model.options={widths: [8], widths: [16]}")


def alias_bomb(levels: int) -> str:
    """A YAML "billion laughs": each list holds the one before nine times, by alias."""
    lists = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lists += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, levels)]
    return "model:\n  name: mlp\n  options:\n" + "".join(f"    {line}\n" for line in lists)


@pytest.mark.parametrize("text", [alias_bomb(12), "model:\n  options: &loop {again: *loop}\n",
                                  "data:\n  augment: &loop [*loop]\n"])
def test_a_recipe_whose_aliases_never_end_is_one_line_at_once(tmp_path, text):
    """A recipe of 1 KB whose aliases expand to 9^12 values (a YAML "billion laughs") was
    expanded when the config was copied: minutes and gigabytes, then the machine's memory
    killed the process. A recipe that refers to itself ended in a RecursionError."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert len(text) < 2000
    with pytest.raises(ConfigError, match=r"r.yaml: more than 1,000,000 values once its aliases"):
        read_yaml(path)


def test_a_set_value_whose_alias_never_ends_is_one_line():
    with pytest.raises(ConfigError, match=r"--set data.augment: more than 1,000,000 values"):
        parse_override("data.augment=&a [*a]")


def test_a_recipe_may_share_values_by_alias(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data:\n  image_size: &size [32, 32]\n  crop: *size\noptimizer:\n  lr: &lr 0.1\n")
    config = TrainConfig.from_yaml(path)
    assert config.data.crop == config.data.image_size == [32, 32] and config.optimizer.lr == 0.1


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", max_size=30))
def test_an_unknown_key_is_refused_and_any_guess_is_a_key_of_the_config(key):
    from cnnlab.config import config_keys, did_you_mean

    keys = config_keys()
    guess = did_you_mean(key)
    assert guess == "" or all(name in keys for name in re.findall(r"'([^']+)'", guess))
    if key and key not in keys and not key.startswith(("model.options.", "data.options.")):
        with pytest.raises(ConfigError):
            TrainConfig().with_overrides({key: 1})


def test_a_key_that_is_not_text_is_refused_by_name(tmp_path):
    """YAML keys may be numbers: the guess at what was meant took them for text and raised
    TypeError (found by the slow config fuzz)."""
    path = tmp_path / "recipe.yaml"
    path.write_text("1: 2\noptimizer: {3: 4}\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key '1'; valid keys"):
        TrainConfig.from_yaml(path)
    path.write_text("optimizer: {3: 4}\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key 'optimizer.3'; valid keys under optimizer"):
        TrainConfig.from_yaml(path)

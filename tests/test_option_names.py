"""An error names the option the way the user gave it: the CLI by its flag, train() and resume()
by their keywords, a recipe by its config key. Python callers were told of CLI flags they never
had (``train(epochs=0)`` said ``--epochs: ...``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnlab
from cnnlab.cli import OPTION_DESTS, build_parser, flag_for
from cnnlab.errors import CnnlabError, CnnlabWarning, ConfigError
from conftest import run_cli

CASES = [  # train()'s keywords, what train() says; the CLI's options, what the CLI says
    (dict(epochs=0), "epochs: must be at least 1; got 0",
     ["--epochs", "0"], "--epochs: must be at least 1; got 0"),
    (dict(val_split=1.5), "val_split: must be at least 0 and below 1; got 1.5",
     ["--val-split", "1.5"], "--val-split: must be at least 0 and below 1; got 1.5"),
    (dict(optimizer__momentum=1.5), "optimizer__momentum: must be at least 0 and below 1; got 1.5",
     ["--momentum", "1.5"], "--momentum: must be at least 0 and below 1; got 1.5"),
    (dict(lr=-1.0), "lr: must be positive; got -1.0", ["--lr", "-1"], "--lr: must be positive; got -1.0"),
    (dict(seed=-1), "seed: must be 0 or more; got -1", ["--seed", "-1"], "--seed: must be 0 or more; got -1"),
    (dict(optimizer="adam", optimizer__momentum=0.5),
     "optimizer__momentum: adam does not use it (0.5); it is sgd's",
     ["--optimizer", "adam", "--momentum", "0.5"], "--momentum: adam does not use it (0.5); it is sgd's"),
    (dict(schedule__warmup_epochs=-1), "schedule__warmup_epochs: must be 0 or more; got -1",
     ["--set", "schedule.warmup_epochs=-1"], "schedule.warmup_epochs: must be 0 or more; got -1"),
    (dict(image_size=[32, 32], crop=[40, 40]),
     "crop 40x40 is larger than image_size 32x32: give a smaller one, or none (data.crop=null) for inputs "
     "of the whole decoded image",
     ["--image-size", "32x32", "--crop", "40x40"],
     "--crop 40x40 is larger than --image-size 32x32: give a smaller one, or none (data.crop=null) for "
     "inputs of the whole decoded image"),
    (dict(val_split="x"), "train(): val_split: expected a number, got 'x'",
     ["--set", "data.val_split=x"], "--set: data.val_split: expected a number, got 'x'"),
    (dict(epochs=10**30), "train(): epochs: 1000000000000000000000000000000 is too large",
     ["--epochs", str(10**30)], "--epochs: 1000000000000000000000000000000 is too large"),
    (dict(data="folder:no-such-folder"), "data folder:",
     ["--data", "folder:no-such-folder"], "--data folder:"),
]


@pytest.mark.parametrize(("keywords", "told", "argv", "flagged"), CASES, ids=[case[1].split(":")[0] for case in CASES])
def test_train_and_the_cli_each_name_the_option_as_given(tmp_path, monkeypatch, keywords, told, argv, flagged):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError) as caught:
        cnnlab.train(**keywords, out=str(tmp_path), quiet=True)
    assert str(caught.value).startswith(told)
    result = run_cli("train", *argv, "--out", tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"cnnlab train: error: {flagged}"), result.stderr


def test_resume_names_its_run_not_the_flag(tmp_path):
    with pytest.raises(CnnlabError, match=r"^run \S+nope: not a cnnlab run directory \(no config.yaml\)$"):
        cnnlab.resume(tmp_path / "nope")
    result = run_cli("train", "--resume", tmp_path / "nope", check=False)
    assert result.stderr.strip().endswith(f"error: --resume {tmp_path / 'nope'}: not a cnnlab run directory "
                                          "(no config.yaml)")


def test_a_message_naming_other_options_writes_each_in_the_callers_spelling():
    error = ConfigError.about("data.crop", lambda name: f" [9, 9]: larger than {name('data.image_size')} [4, 4]")
    assert str(error) == "data.crop [9, 9]: larger than data.image_size [4, 4]"
    error.respell(lambda option: "--" + option.split(".")[-1])
    assert str(error) == "--crop [9, 9]: larger than --image_size [4, 4]"
    error.respell(str)  # from the names it was given, not from the last spelling
    assert (str(error), error.option) == ("data.crop [9, 9]: larger than data.image_size [4, 4]", "data.crop")
    plain = CnnlabError("runs/a: damaged")
    plain.respell(str.upper)
    assert str(plain) == "runs/a: damaged"


def test_warnings_name_options_as_errors_do():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(CnnlabWarning.about("tta", lambda name: f" flip: use {name('tta')}=shift"), stacklevel=1)
    assert str(caught[0].message) == "tta flip: use tta=shift"


def test_every_option_the_cli_names_is_one_of_its_flags():
    """The table the CLI spells options with, against its parser: a renamed flag would leave
    errors naming one that does not exist."""
    parser = build_parser()
    flags = {flag for action in parser._subparsers._group_actions[0].choices.values()
             for argument in action._actions for flag in argument.option_strings}
    assert {flag_for(option) for option in OPTION_DESTS} <= flags


def test_an_error_naming_options_pickles_as_it_reads():
    """A process pool sends a worker's error back pickled; the function that writes the names
    cannot be, and the pool would have reported a PicklingError in its place."""
    import pickle

    error = ConfigError.about("data.crop", lambda name: f": smaller than {name('data.image_size')}")
    error.respell(lambda option: "--" + option)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.option) == (ConfigError, "--data.crop: smaller than --data.image_size",
                                                     "data.crop")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    return cnnlab.train(model="mlp", data="digits", epochs=1, subset=200, out=str(tmp_path_factory.mktemp("runs")),
                        name="mlp", quiet=True, report=False)


@pytest.mark.parametrize(("call", "told"), [
    (lambda run: cnnlab.predict(run, np.zeros((8, 8), np.uint8), top_k="3"),
     "predict(): top_k: expected a whole number, got '3'"),
    (lambda run: cnnlab.evaluate(run, batch_size="64"), "evaluate(): batch_size: expected a whole number, got '64'"),
    (lambda run: cnnlab.evaluate(run, report="no"), "evaluate(): report: expected true or false, got 'no'"),
    (lambda run: cnnlab.resume(run, epochs=2.5), "resume(): epochs: expected a whole number, got 2.5"),
    (lambda run: cnnlab.load_model(run, which=1), "load_model(): which: expected text, got 1"),
    (lambda run: cnnlab.lr_find(model="mlp", data="digits", steps="10"),
     "lr_find(): steps: expected a whole number, got '10'"),
    (lambda run: cnnlab.lr_find(model="mlp", data="digits", end_lr="high"),
     "lr_find(): end_lr: expected a number, got 'high'"),
    (lambda run: cnnlab.load_dataset("digits", seed="1"), "load_dataset(): seed: expected a whole number, got '1'"),
    (lambda run: cnnlab.load_dataset("digits", channels="3"),
     "load_dataset(): channels: expected a whole number, got '3'"),
    (lambda run: cnnlab.create_model("lenet5", num_classes="10"),
     "create_model(): num_classes: expected a whole number, got '10'"),
    (lambda run: cnnlab.create_model("mlp", weights=3),
     "create_model(): weights: expected text, a path, a Run or None, got 3"),
    (lambda run: cnnlab.list_models(3), "list_models(): pattern: expected text, got 3"),
    (lambda run: cnnlab.load_run(3), "load_run(): path: expected text or a path, got 3"),
    (lambda run: cnnlab.evaluate(None), "evaluate(): run: expected a Run, text or a path, got None"),
    (lambda run: cnnlab.predict(["a.png"], "b.png"), "predict(): run: expected a Run, text or a path, got ['a.png']"),
    (lambda run: cnnlab.predict(run, ["a.png"], boxes=1), "predict(): boxes: expected text, a path or None, got 1"),
    (lambda run: cnnlab.train(3), "train(): config: expected a TrainConfig, a dict, text, a path or None, got 3"),
    (lambda run: cnnlab.lr_find(model="mlp", data="digits", plot=True),
     "lr_find(): plot: expected text, a path or None, got True"),
])
def test_the_python_api_checks_its_arguments_as_the_config_does(mlp_run, call, told):
    """predict(run, x, top_k="3") raised Python's TypeError ('<' not supported between 'str'
    and 'int') from inside cnnlab, load_run(3) and evaluate(None) too ('expected str, bytes or
    os.PathLike object'), train(3) an AttributeError; each function's numbers, flags and texts
    are now checked as the config's fields are, its paths, runs and configs by their type, and
    the message names the function and its keyword."""
    with pytest.raises(ConfigError) as caught:
        call(mlp_run)
    assert str(caught.value) == told


def test_create_model_starts_from_a_run_as_timm_starts_from_a_checkpoint(mlp_run, tmp_path):
    """timm's ``create_model(name, num_classes=N, checkpoint_path=...)`` for your own loop: a
    run (or any --weights file) gives every layer, and where the class count differs all but
    the output layer, with a warning naming it."""
    trained = cnnlab.load_model(mlp_run)
    size = trained.input_size
    same = cnnlab.create_model("mlp", 10, 1, size, weights=mlp_run)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(same.state_dict()[key], value)
    with pytest.warns(CnnlabWarning, match=r"best.pt: the output layer does not match \(classifier.6.weight: "
                                           r"file \(10, 512\), model \(3, 512\)\); it is re-initialised"):
        three = cnnlab.create_model("mlp", 3, 1, size, weights=mlp_run.path)
    torch.testing.assert_close(three.classifier[0].weight, trained.classifier[0].weight)
    assert three.head.weight.shape == (3, 512)
    # the inputs to give it, as timm's pretrained_cfg says: the run's own standardisation
    assert three.pretrained_inputs.mode == "weights"
    assert (three.pretrained_inputs.mean, three.pretrained_inputs.std) == (trained.preprocessing.mean,
                                                                           trained.preprocessing.std)
    with pytest.raises(CnnlabError, match=r"weights .*: does not fit the model"):
        cnnlab.create_model("lenet5", 3, weights=str(mlp_run.path / "best.pt"))


def test_create_model_from_a_run_takes_the_sizes_it_is_not_given_from_the_run(tmp_path):
    """create_model("mlp", weights=run) built the model at its defaults (1 channel of 28x28,
    not the run's 3 of 12x16), so every layer sized by the input started afresh with a warning;
    the sizes and options not given are the run's, as timm's come from the checkpoint's config,
    and with the run's output layer come its classes, as timm's label names do."""
    import warnings

    run = cnnlab.train(model="mlp", data="digits", data__image_size=[12, 16], data__channels=3, epochs=1, subset=100,
                       out=str(tmp_path), name="mlp", quiet=True, report=False)
    trained = cnnlab.load_model(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebuilt = cnnlab.create_model("mlp", weights=run)
    assert (rebuilt.input_size, rebuilt.in_channels, rebuilt.num_classes) == ((12, 16), 3, 10)
    assert rebuilt.classes == run.classes == trained.classes  # its outputs' names, as load_model gives them
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)
    with pytest.warns(CnnlabWarning, match=r"the output layer does not match"):  # a size given is kept
        four = cnnlab.create_model("mlp", 4, weights=run.path)
    assert four.num_classes == 4 and not hasattr(four, "classes")  # a new output layer names no classes


def test_an_argument_of_a_path_or_a_number_is_named_by_both_when_it_is_neither():
    """Every kind an annotation names has its words: a mixed one such as ``int | Path`` had
    none for ``int`` and would have raised KeyError in place of the message."""
    from pathlib import Path

    from cnnlab.api import _checked_arguments

    def take(where: int | Path) -> object:
        return where

    checked = _checked_arguments(take)
    assert checked(3) == 3 and checked(Path("a")) == Path("a")
    with pytest.raises(ConfigError, match=r"^take\(\): where: expected a whole number or a path, got 'a'$"):
        checked("a")


def test_the_python_api_takes_numbers_written_as_yaml_writes_them(mlp_run):
    """As the config takes them: a float as text ("1e-3" is text to YAML)."""
    finding = cnnlab.lr_find(model="mlp", data="digits", steps=6, start_lr="1e-4", end_lr=1)
    assert finding.lrs[0] == pytest.approx(1e-4, rel=0.5)


def test_numpy_numbers_are_taken_as_python_numbers():
    """epochs=np.int64(3), as a number computed with numpy is, was refused: 'expected a whole
    number, got np.int64(3)'."""
    config = cnnlab.TrainConfig.from_dict({"epochs": np.int64(3), "optimizer": {"lr": np.float32(0.5)},
                                           "tensorboard": np.bool_(False)})
    assert (config.epochs, config.optimizer.lr, config.tensorboard) == (3, 0.5, False)
    assert type(config.epochs) is int and type(config.optimizer.lr) is float and type(config.tensorboard) is bool
    assert cnnlab.create_model("lenet5", num_classes=np.int64(7))(torch.zeros(1, 1, 28, 28)).shape == (1, 7)
    with pytest.raises(ConfigError, match=r"^config: epochs: expected a whole number, got 2.5$"):
        cnnlab.TrainConfig.from_dict({"epochs": np.float64(2.5)})


ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True),
                      st.text(max_size=8), st.lists(st.integers(), max_size=2),
                      st.integers(-3, 100).map(np.int64), st.floats(-1, 10).map(np.float32))
OPTIONS = [("predict", "top_k"), ("predict", "tta"), ("predict", "device"), ("predict", "boxes"),
           ("load_model", "which"), *[(function, "run") for function in ("predict", "evaluate", "load_model")],
           ("load_run", "path"),
           *[("evaluate", keyword) for keyword in ("tta", "device", "batch_size", "report", "split", "quiet")]]


@settings(max_examples=60, deadline=None)
@given(option=st.sampled_from(OPTIONS), value=ANY_VALUE)
def test_any_value_of_an_option_is_taken_or_one_cnnlab_error(mlp_run, option, value):
    """Whatever a Python caller passes to an option of the API, it works or it is one line of
    CnnlabError: never Python's TypeError or AttributeError from inside cnnlab."""
    function, keyword = option
    if keyword == "batch_size" and isinstance(value, int | np.integer) and value > 4096:
        value = 4096  # every image in one batch is allowed; a batch's memory is not this test's subject
    arguments = {"run": mlp_run, "report": False} if function == "evaluate" else {"run": mlp_run}
    arguments = {"path": value} if function == "load_run" else {**arguments, keyword: value}
    call = {"predict": lambda: cnnlab.predict(inputs=np.zeros((2, 8, 8), np.uint8), **arguments),
            "evaluate": lambda: cnnlab.evaluate(**arguments), "load_model": lambda: cnnlab.load_model(**arguments),
            "load_run": lambda: cnnlab.load_run(**arguments)}[function]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except CnnlabError as error:
            assert str(error).strip() and "\n" not in str(error)

"""What Keras, fastai and timm users expect of training: class weights, gradient accumulation and
clipping, an EMA of the weights, a one-cycle schedule, the LR finder, per-batch callbacks and
their state in last.pt; and the friction-free edges: bundled recipes, shell completion, a bare
folder as data, plugins by entry points."""

from __future__ import annotations

import itertools
import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnlab import api
from cnnlab.checkpoint import load_checkpoint
from cnnlab.config import ScheduleConfig
from cnnlab.data import Preprocessing
from cnnlab.errors import ConfigError
from cnnlab.evaluation.losses import Loss
from cnnlab.training.callbacks import Callback
from cnnlab.training.schedules import LRSchedule
from conftest import EpochSnapshots, make_image_folder, run_cli

QUICK = {"model": "mlp", "data": "digits", "epochs": 2, "batch_size": 32, "quiet": True,
         "optimizer": "sgd", "lr": 0.05, "seed": 1, "device": "cpu", "precision": "fp32",
         "report": False}


def test_class_weights_multiply_each_samples_loss():
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([1.0, 2.0, 0.5])
    loss = Loss("sparse_ce", 3, class_weights=weights)
    per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(loss(logits, labels, weighted=True), (per_sample * weights[labels]).mean())
    torch.testing.assert_close(loss(logits, labels), per_sample.mean())  # validation: unweighted
    categorical = Loss("categorical_ce", 3, class_weights=weights)
    rows = torch.eye(3)[labels]
    torch.testing.assert_close(categorical(logits, rows, weighted=True), (per_sample * weights[labels]).mean())


def test_balanced_class_weights_and_a_weights_file(tmp_path):
    run = api.train(**QUICK, class_weight="balanced", out=str(tmp_path), name="b")
    assert run.history[-1]["loss"] > 0
    table = tmp_path / "weights.yaml"
    table.write_text("'3': 2.0\n'7': 0.5\n")
    api.train(**QUICK, class_weight=str(table), out=str(tmp_path), name="f")
    table.write_text("'cat': 2.0\n")
    bad = run_cli("train", "--data", "digits", "--class-weight", table, "--check", check=False)
    assert bad.returncode == 2 and "not classes of this data: cat" in bad.stderr


def test_class_weights_by_index_as_keras_takes_them(tmp_path, image_folder):
    """Keras' fit(class_weight={0: 1.0, 1: 5.0}) keys classes by index; the same YAML was refused
    ("not classes of this data: 0, 1") for data whose classes have names."""
    from cnnlab.training.setup import read_class_weights

    table = tmp_path / "weights.yaml"
    table.write_text("0: 1.0\n2: 5.0\n")
    assert read_class_weights(str(table), ["cat", "dog", "emu"]) == {"cat": 1.0, "emu": 5.0}
    assert read_class_weights(str(table), [str(digit) for digit in range(10)]) == {"0": 1.0, "2": 5.0}
    table.write_text("3: 1.0\n")
    with pytest.raises(ConfigError, match="not classes of this data: 3 \\(a number is a class index, "
                                          "0 to 2 here\\)"):
        read_class_weights(str(table), ["cat", "dog", "emu"])
    table.write_text("0: 1.0\n'cat': 2.0\n")
    with pytest.raises(ConfigError, match="cat twice"):
        read_class_weights(str(table), ["cat", "dog", "emu"])


def test_class_weights_given_inline_as_keras_fit_takes_them(tmp_path):
    """train(class_weight={0: 1.0, 3: 5.0}), Keras' fit(class_weight=...) as written, was
    'class_weight: expected text'; a recipe may hold the mapping too. It trains as the same
    weights from a file do, and the run's config keeps it."""
    table = tmp_path / "weights.yaml"
    table.write_text("0: 1.0\n3: 5.0\n")
    from_file = api.train(**QUICK, class_weight=str(table), out=str(tmp_path), name="file")
    inline = api.train(**QUICK, class_weight={0: 1.0, 3: 5.0}, out=str(tmp_path), name="inline")
    assert [row["loss"] for row in inline.history] == [row["loss"] for row in from_file.history]
    assert inline.config.class_weight == {0: 1.0, 3: 5.0}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: mlp\nclass_weight:\n  '3': 2.0\n  7: 0.5\n")
    assert run_cli("train", "--config", recipe, "--check").returncode == 0
    with pytest.raises(ConfigError, match=r"class_weight: not classes of this data: cat"):
        api.train(**QUICK, class_weight={"cat": 2.0}, out=str(tmp_path), name="bad")


def test_accumulating_two_batches_is_one_batch_twice_as_large(tmp_path):
    """No dropout, no BatchNorm: the same gradients, so the same weights."""
    # plain SGD at a small step, as in the distributed test: momentum amplifies the rounding
    # differences of summing 64 losses at once or 32 twice
    common = {**QUICK, "model": "lenet5", "epochs": 1, "lr": 0.02, "optimizer__momentum": 0.0}
    big = api.train(**{**common, "batch_size": 64}, out=str(tmp_path), name="big")
    small = api.train(**{**common, "batch_size": 32}, accumulate=2, out=str(tmp_path), name="small")
    for a, b in zip(load_checkpoint(big.path / "last.pt")["state_dict"].values(),
                    load_checkpoint(small.path / "last.pt")["state_dict"].values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_clipping_bounds_the_update(tmp_path):
    """Clipped to a norm of 1e-6, SGD at lr 1 (momentum 0.9) can move no weight by more than
    steps x 1e-6 x 10; unclipped, the weights move far."""
    from cnnlab.models import create_model
    from cnnlab.training.rng import seed_everything

    seed_everything(QUICK["seed"])  # the run seeds the same way before it builds its model
    start = create_model("mlp", 10, 1, (28, 28)).state_dict()
    clipped = api.train(**{**QUICK, "epochs": 1, "lr": 1.0}, clip_grad_norm=1e-6, out=str(tmp_path), name="c")
    free = api.train(**{**QUICK, "epochs": 1, "lr": 1.0}, out=str(tmp_path), name="f")
    moved = max((load_checkpoint(clipped.path / "last.pt")["state_dict"][k] - start[k]).abs().max().item()
                for k in start)
    assert moved < 51 * 1e-6 * 10
    assert max((load_checkpoint(free.path / "last.pt")["state_dict"][k] - start[k]).abs().max().item()
               for k in start) > 1e-2


def test_whitening_is_fitted_to_the_images_the_run_trains_on(tmp_path):
    """airbench's first layer whitens the 2x2 patches of the run's own standardised training
    images (all of them here: fewer than the sample it draws)."""
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(60, 33, 33, 3))
    pixels = noise[:, 1:, 1:] + noise[:, :-1, :-1] + 0.7 * noise[:, 1:, :-1] + noise[:, 1:, 1:, :1]
    x = np.clip(128 + 30 * pixels, 0, 255).astype(np.uint8)
    run = api.train(**{**QUICK, "model": "airbench", "data": (x, np.arange(60) % 3), "val_split": 0.0,
                       "epochs": 1, "batch_size": 16},
                    model__options={"widths": [8, 8, 8]}, out=str(tmp_path), name="w")
    best = run.checkpoint("best")
    images = Preprocessing.from_dict(best["preprocessing"]).standardize(torch.from_numpy(x).permute(0, 3, 1, 2).float())
    out = torch.nn.functional.conv2d(images, best["state_dict"]["features.0.weight"])[:, :12]
    directions = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = directions.T @ directions / len(directions)
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), atol=0.01, rtol=0)


@pytest.mark.parametrize("epochs_trained", [0, 2])
def test_whitening_bias_trains_for_its_epochs_then_stays(tmp_path, epochs_trained):
    """airbench's warm-up: the bias moves in its first epochs only, and from then on the first
    trained convolution's input needs no gradient."""
    snapshots = EpochSnapshots(lambda trainer: trainer.model.features[0].bias)
    run = api.train(**{**QUICK, "model": "airbench", "epochs": 3, "image_size": [16, 16]},
                    model__options={"widths": [4, 8, 8]}, model__whiten_bias_epochs=epochs_trained,
                    callbacks=[snapshots], out=str(tmp_path), name=f"w{epochs_trained}")
    moved = [not torch.equal(a, b) for a, b in itertools.pairwise(snapshots.values)]
    assert moved == [epoch < epochs_trained for epoch in range(3)]
    assert ("the whitening bias stays as it is from epoch 3 on" in (run.path / "train.log").read_text()) == bool(epochs_trained)


@pytest.mark.parametrize("model, epochs, message", [
    ("airbench", -1, "model__whiten_bias_epochs: must be 0 or more; got -1"),
    ("lenet5", 3, "model__whiten_bias_epochs: lenet5 has no whitening layer"),
])
def test_whitening_bias_epochs_refused_before_any_folder_is_made(tmp_path, model, epochs, message):
    with pytest.raises(ConfigError, match=message):
        api.train(**{**QUICK, "model": model}, model__whiten_bias_epochs=epochs, out=str(tmp_path), name="refused")
    assert not (tmp_path / "refused").exists()


def test_ema_weights_are_evaluated_and_kept_in_best(tmp_path):
    run = api.train(**QUICK, ema=0.9, out=str(tmp_path), name="e")
    last = load_checkpoint(run.path / "last.pt")
    assert "ema" in last and "model_state_dict" in last
    # last.pt's evaluation weights are the average, not the raw model
    assert any(not torch.equal(last["state_dict"][k], last["model_state_dict"][k])
               for k in last["state_dict"] if k.endswith("weight"))
    evaluated = api.evaluate(run)
    assert evaluated["accuracy"] == pytest.approx(run.metrics["val"]["accuracy"])


def test_onecycle_matches_pytorch():
    steps, peak = 50, 0.1
    ours = LRSchedule(ScheduleConfig(name="onecycle"), peak, steps, 1)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=peak)
    theirs = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=steps,
                                                 cycle_momentum=False, anneal_strategy="cos")
    for step in range(steps):
        assert ours.lr_at(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-6), step
        optimizer.step()
        theirs.step()


@pytest.mark.parametrize("warmup", [0, 1])
def test_linear_decay_matches_keras_polynomial_decay(warmup):
    """`linear` falls in a straight line from the lr to min_lr over the steps after the warm-up:
    Keras' PolynomialDecay(power=1) counted from the end of the warm-up."""
    steps_per_epoch, epochs, lr, end = 10, 5, 0.2, 0.01
    ours = LRSchedule(ScheduleConfig(name="linear", min_lr=end, warmup_epochs=warmup), lr, steps_per_epoch, epochs)
    span = steps_per_epoch * (epochs - warmup)
    for step in range(span):
        expected = (lr - end) * (1 - step / span) + end  # PolynomialDecay's formula, power 1
        assert ours.lr_at(warmup * steps_per_epoch + step) == pytest.approx(expected), step
    assert ours.lr_at(steps_per_epoch * epochs + 3) == pytest.approx(end)  # holds at the end


class Counting(Callback):
    """Counts optimizer steps through the per-batch hooks; its state must survive a resume."""

    def __init__(self):
        self.begun, self.ended, self.stop_after = 0, 0, None

    def on_batch_begin(self, trainer, step):
        self.begun += 1

    def on_batch_end(self, trainer, step, loss):
        self.ended += 1
        assert isinstance(loss, torch.Tensor)

    def on_epoch_end(self, trainer, epoch, logs):
        if self.stop_after == epoch + 1:
            raise KeyboardInterrupt

    def state_dict(self):
        return {"begun": self.begun, "ended": self.ended}

    def load_state_dict(self, state):
        self.begun, self.ended = state["begun"], state["ended"]


def test_per_batch_hooks_and_their_state_in_last_pt(tmp_path):
    counter = Counting()
    counter.stop_after = 1
    with pytest.raises(KeyboardInterrupt):
        api.train(**{**QUICK, "epochs": 3}, callbacks=[counter], out=str(tmp_path), name="h")
    per_epoch = counter.ended
    assert counter.begun == per_epoch > 0
    fresh = Counting()
    api.resume(tmp_path / "h", callbacks=[fresh], quiet=True)
    assert fresh.ended == 3 * per_epoch  # carried on from the saved count


def test_lr_find_writes_a_plot_and_suggests(tmp_path):
    result = run_cli("lr-find", "--model", "mlp", "--data", "digits", "--steps", "30", "--plot",
                     tmp_path / "lr.png", "--optimizer", "sgd")
    assert "suggested learning rate:" in result.stdout
    suggested = float(result.stdout.split("suggested learning rate: ")[1].split()[0])
    assert 1e-7 <= suggested <= 10
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert "warning" not in result.stderr  # torch's, on reading a loss that still requires grad


@pytest.mark.parametrize("callbacks, message", [
    ([object()], r"^callbacks\[0\]: an object, not a cnnlab Callback \(subclass "
                 r"cnnlab.training.callbacks.Callback and override the hooks you need\)$"),
    (5, r"^callbacks: a list of Callbacks; got an int$"),
])
def test_callbacks_that_are_not_callbacks_are_refused_before_the_run_is_made(tmp_path, callbacks, message):
    """[object()] trained until the first hook, an AttributeError, leaving an empty run
    folder; 5 raised "'int' object is not iterable"."""
    with pytest.raises(ConfigError, match=message):
        api.train(**QUICK, callbacks=callbacks, out=str(tmp_path), name="refused")
    assert not (tmp_path / "refused").exists()


def test_lr_find_in_python_as_fastai_has_it(tmp_path):
    """The range test was the CLI's alone; fastai's users call learn.lr_find() in a notebook."""
    import cnnlab

    finding = cnnlab.lr_find(model="mlp", data="digits", optimizer="sgd", steps=12, plot=tmp_path / "lr.png")
    assert len(finding.lrs) == len(finding.losses) <= 12 and finding.lrs == sorted(finding.lrs)
    assert finding.lrs[0] <= finding.steepest <= finding.lrs[-1]
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert list(tmp_path.iterdir()) == [tmp_path / "lr.png"]  # no run directory: nothing else is written
    with pytest.raises(ConfigError, match=r"^steps: must be at least 5; got 3$"):
        cnnlab.lr_find(model="mlp", data="digits", steps=3)
    with pytest.raises(ConfigError, match=r"^start_lr 1\.0: must be above 0 and below end_lr \(0\.1\)$"):
        cnnlab.lr_find(model="mlp", data="digits", start_lr=1.0, end_lr=0.1)
    with pytest.raises(ConfigError, match=r"^val_split: must be at least 0"):
        cnnlab.lr_find(model="mlp", data="digits", val_split=2.0)
    flagged = run_cli("lr-find", "--model", "mlp", "--data", "digits", "--steps", "3", check=False)
    assert flagged.returncode == 2 and flagged.stderr.strip() == (
        "cnnlab lr-find: error: --steps: must be at least 5; got 3"), flagged.stderr


def test_lr_find_by_default_draws_each_search_in_its_own_picture(tmp_path):
    """lr-find drew every search into lr-find.png in the working folder, over the last one: a
    search of minutes lost. The default picture is named by the model and data searched."""
    for model in ("mlp", "lenet5", "mlp"):
        result = run_cli("lr-find", "--model", model, "--data", "digits", "--steps", "5", cwd=tmp_path)
        assert result.stdout.strip().endswith(f"plot: lr-find-{model}-digits.png")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lr-find-lenet5-digits.png", "lr-find-mlp-digits.png"]


def test_bundled_recipes_are_listed_and_found_by_name(tmp_path):
    listing = json.loads(run_cli("recipes", "--format", "json").stdout)
    names = {row["name"] for row in listing}
    assert {"gtsrb-resnet9", "tutorial/gtsrb-alexnet-bn", "faces-resnet9"} <= names
    check = run_cli("train", "--config", "mnist-resnet9", "--data", "digits", "--check").stdout
    assert "resnet9 on digits" in check and "every option checks out" in check


def test_shell_completion_script_completes(tmp_path):
    script = tmp_path / "c.bash"
    script.write_text(run_cli("completion", "bash").stdout)
    def complete(line):
        words = line.split(" ")
        code = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _cnnlab; "
                "printf '%s\\n' \"${COMPREPLY[@]}\"")
        return subprocess.run(["bash", "-c", code], capture_output=True, text=True).stdout.split()
    assert "train" in complete("cnnlab tr")
    assert "resnet9" in complete("cnnlab train --model res")
    assert "--tta" in complete("cnnlab evaluate RUN --tt")


def test_bare_folder_is_read_as_a_folder_source(tmp_path, image_folder):
    result = run_cli("data", "info", image_folder)
    assert "read as folder:" in result.stderr and "cnnlab: warning:" in result.stderr
    assert "class_0" in result.stdout


def test_a_bare_folder_is_recorded_as_folder_spec_and_named_by_its_folder(tmp_path, image_folder):
    """A run trained on ``PATH`` keeps ``folder:PATH`` in config.yaml and is named after the
    folder, as one trained on ``folder:PATH``; an evaluation on another bare folder too."""
    result = run_cli("train", "--model", "mlp", "--data", image_folder, "--epochs", "1", "--quiet",
                     "--no-report", "--out", tmp_path / "runs")
    run = Path(result.stdout.strip().splitlines()[-1])
    assert run.name.endswith(f"-mlp-folder-{image_folder.name}")
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["spec"] == f"folder:{image_folder}"
    other = make_image_folder(tmp_path / "other", classes=2, per_class=3)
    run_cli("evaluate", run, "--data", other, "--no-report")
    assert (run / "evaluations" / "folder-other" / "metrics.json").is_file()


def test_plugins_register_through_entry_points(monkeypatch, tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        "from cnnlab.models import register_model\n"
        "from cnnlab.models.convnet import ConvNet\n"
        "from cnnlab.models.layers import Dense, ReLU\n"
        "@register_model('tiny-plugin', input_size=(8, 8, 1), num_classes=10, params=0, source='a plugin')\n"
        "def tiny(num_classes, in_channels, input_size):\n"
        "    return ConvNet([], [Dense(16), ReLU()], num_classes, in_channels, input_size)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from cnnlab.models import MODELS

    point = metadata.EntryPoint("tiny", "my_plugin", "cnnlab.models")
    monkeypatch.setattr(MODELS, "_entry_points", "cnnlab.models")
    monkeypatch.setattr(metadata, "entry_points", lambda group: [point] if group == "cnnlab.models" else [])
    assert "tiny-plugin" in MODELS.names()


def test_resume_refuses_data_whose_classes_changed_since(tmp_path, image_folder):
    run_cli("train", "--model", "mlp", "--data", f"folder:{image_folder}", "--epochs", "1", "--out", tmp_path,
            "--name", "r")
    make_image_folder(tmp_path / "more", classes=1, per_class=4)
    (tmp_path / "more" / "class_0").rename(image_folder / "a_new")
    result = run_cli("train", "--resume", tmp_path / "r", "--epochs", "2", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith(
        f"--resume {tmp_path / 'r'}: the classes of folder:{image_folder} are not the run's any more "
        "(added: a_new, against its classes.json); a run continues on the classes it started with")


def test_a_model_too_large_for_the_gpu_is_measured_against_the_gpus_memory(monkeypatch):
    """On a GPU the training state must fit the GPU's own memory, not the machine's."""
    import types

    from cnnlab import runtime
    from cnnlab.training.setup import check_fits_in_memory

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(total_memory=8 * 2**30))
    assert runtime.device_memory(torch.device("cuda:0")) == 8 * 2**30
    model = torch.nn.Linear(2**14, 2**15, device="meta")  # 2^29 + 2^15 parameters: 8 GiB and a little
    with pytest.raises(ConfigError, match=r"^big: 536,903,680 parameters need about 8 GiB to train .*; cuda:0 has 8 GiB$"):
        check_fits_in_memory(model, "big", torch.device("cuda:0"))
    check_fits_in_memory(torch.nn.Linear(2**14, 2**14, device="meta"), "small", torch.device("cuda:0"))
    assert runtime.device_memory(torch.device("cpu")) == runtime.machine_memory() > 2**30


ZEN4_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse avx2 avx512f avx512_bf16 hypervisor
"""


def test_cpu_text_tells_cpus_of_one_name_apart():
    """A virtual machine's CPU is often named "AMD EPYC" alone: a Zen 4 and a Zen 5 with the same
    flags, one at half the other's speed, are told apart by their family and model, which
    train.log and every benchmark print beside a speed figure."""
    from cnnlab.runtime import cpu_text

    assert cpu_text(ZEN4_CPUINFO) == "AMD EPYC (family 25, model 17; flags: avx2 avx512f avx512_bf16)"
    assert cpu_text("model name\t: Intel(R) Xeon(R) Processor\nflags\t: avx2\n") == (
        "Intel(R) Xeon(R) Processor (flags: avx2)")
    assert cpu_text("").endswith("(flags: none of avx2, avx512f, avx512_bf16, amx_bf16)")


def test_a_run_on_a_gpu_names_the_gpu(monkeypatch):
    from cnnlab.runtime import cpu_text, device_text

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"NVIDIA H200 ({device})")
    assert device_text(torch.device("cuda:1")) == "NVIDIA H200 (cuda:1)"
    assert device_text(torch.device("cpu")) == cpu_text()


def test_runtime_describes_what_it_trains_with(monkeypatch):
    from cnnlab.runtime import Runtime, cpu_text

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    assert Runtime(torch.device("cpu"), "bf16", 2).describe() == f"cpu bf16, 2 threads, on {cpu_text()}"
    assert Runtime(torch.device("cuda:0"), "fp16", 1, world_size=4).describe() == (
        "cuda fp16, 1 thread in each of 4 processes, on NVIDIA H200")


def test_machine_spans_give_each_epoch_the_machine_that_trained_it():
    """A run may be resumed on another machine (a lent GPU's run continued on a CPU): each
    record says from which epoch on; one from which no epoch finished counts for none."""
    from cnnlab.runs import machine_spans, machines_text

    records = [{"epoch": 1, "machine": "cpu"}, {"epoch": 4, "machine": "cpu"}, {"epoch": 6, "machine": "gpu"},
               {"epoch": 6, "machine": "cpu"}, {"epoch": 9, "machine": "gpu"}]
    assert machine_spans(records, 9) == [(1, 8, "cpu"), (9, 9, "gpu")]
    assert machine_spans(records, 7) == [(1, 7, "cpu")]  # stopped in epoch 8, not yet resumed
    assert machine_spans([{"epoch": 1, "machine": "cpu"}], 0) == []
    assert machine_spans([], 5) == []  # a run made before the records were written
    assert machines_text(records, 9) == "cpu (epochs 1-8), then gpu (epoch 9)"
    assert machines_text(records, 7) == "cpu"
    assert machines_text([], 5) == ""


@pytest.mark.parametrize("seconds, text", [
    (0.0036, "4 ms"), (0.4504, "450 ms"), (0.9996, "1.0 s"), (4.449, "4.4 s"), (9.96, "10 s"), (45.4, "45 s"),
    (444.2, "7 min 24 s"), (7500, "2 h 05 min"),
])
def test_durations_are_written_as_precisely_as_they_matter(seconds, text):
    """A training's minutes, and the milliseconds of predicting one image."""
    from cnnlab.runs import duration

    assert duration(seconds) == text


def test_tables_of_runs_name_the_machines_of_their_training_times():
    from cnnlab.cli import machine_legend

    assert machine_legend([["cpu"], [], ["cpu"]]) == ("", ["", "", ""], ["training times: cpu"])
    assert machine_legend([[], []]) == ("", ["", ""], [])
    assert machine_legend([["cpu"], ["gpu", "cpu"], []]) == (
        "   on", ["    1", "  2,1", "    -"], ["[1] cpu", "[2] gpu"])

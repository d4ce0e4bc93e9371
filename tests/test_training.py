from __future__ import annotations

import math
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnlab import api
from cnnlab.checkpoint import load_checkpoint
from cnnlab.config import ScheduleConfig
from cnnlab.errors import CnnlabError, TrainingDiverged
from cnnlab.evaluation.losses import Loss
from cnnlab.runs import load_run, run_table
from cnnlab.training.callbacks import Callback, EarlyStopping, ModelCheckpoint
from cnnlab.training.monitor import Monitor
from cnnlab.training.schedules import LRSchedule
from conftest import EpochSnapshots, run_cli


def schedule(name, steps_per_epoch=10, epochs=10, base=0.1, **kw):
    return LRSchedule(ScheduleConfig(name=name, **kw), base, steps_per_epoch, epochs)


def test_exponential_decay_matches_keras_formula():
    # keras.optimizers.schedules.ExponentialDecay(1e-4, decay_steps=60, decay_rate=0.96, staircase=...)
    smooth = schedule("exponential", base=1e-4, decay_steps=60, decay_rate=0.96)
    stairs = schedule("exponential", base=1e-4, decay_steps=60, decay_rate=0.96, staircase=True)
    for step in (0, 1, 30, 59, 60, 61, 125, 1000):
        assert smooth.lr_at(step) == pytest.approx(1e-4 * 0.96 ** (step / 60), rel=1e-12)
        assert stairs.lr_at(step) == pytest.approx(1e-4 * 0.96 ** (step // 60), rel=1e-12)
    assert stairs.lr_at(59) == 1e-4 and stairs.lr_at(60) == pytest.approx(0.96e-4)


def test_step_multistep_cosine_constant():
    step = schedule("step", step_size=3, gamma=0.5)
    assert [step.lr_at(e * 10) for e in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    multi = schedule("multistep", milestones=[2, 5], gamma=0.1)
    assert [multi.lr_at(e * 10) for e in (0, 1, 2, 4, 5, 9)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cosine = schedule("cosine", min_lr=0.001)
    assert cosine.lr_at(0) == pytest.approx(0.1)
    assert cosine.lr_at(50) == pytest.approx(0.001 + 0.099 * 0.5)
    assert cosine.lr_at(100) == pytest.approx(0.001)
    assert schedule("constant").lr_at(12345) == 0.1


def test_warmup_in_front_of_any_schedule():
    warm = schedule("cosine", warmup_epochs=1)
    assert [warm.lr_at(s) for s in (0, 4, 9)] == pytest.approx([0.01, 0.05, 0.1])
    assert warm.lr_at(10) == pytest.approx(0.1)  # cosine starts after the warm-up
    assert warm.lr_at(100) == pytest.approx(0.0, abs=1e-12)


def test_reduce_on_plateau_divides_by_ten():
    plateau = schedule("plateau", patience=2, factor=0.1, monitor="val_loss", min_delta=0.0)
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.5]
    rates = []
    for value in losses:
        plateau.epoch_end({"val_loss": value})
        rates.append(plateau.lr_at(0))
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    state = plateau.state_dict()
    fresh = schedule("plateau", patience=2, factor=0.1)
    fresh.load_state_dict(state)
    assert fresh.lr_at(0) == pytest.approx(0.001)


def test_schedule_errors():
    with pytest.raises(CnnlabError, match="unknown schedule 'triangle'"):
        schedule("triangle")


def test_monitor_modes():
    assert Monitor("val_accuracy").mode == "max" and Monitor("val_loss").mode == "min"
    monitor = Monitor("val_loss", min_delta=0.1)
    assert monitor.update(1.0) and not monitor.update(0.95) and monitor.update(0.85)
    with pytest.raises(CnnlabError, match="monitor 'val_acc' is not a logged metric"):
        Monitor("val_acc").value({"val_accuracy": 1.0})


def test_losses_agree_and_fit_labels():
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 4), torch.randint(0, 4, (8,))
    sparse = Loss("sparse_ce", 4, label_smoothing=0.1)(logits, labels)
    categorical = Loss("categorical_ce", 4, label_smoothing=0.1)(logits, labels)
    one_hot = Loss("categorical_ce", 4, label_smoothing=0.1)(logits, torch.eye(4)[labels])
    torch.testing.assert_close(sparse, categorical)
    torch.testing.assert_close(sparse, one_hot)
    with pytest.raises(CnnlabError, match="sparse_ce: needs integer class labels"):
        Loss("sparse_ce", 4)(logits, torch.eye(4)[labels])
    with pytest.raises(CnnlabError, match="binary_ce: fits two classes.*10 classes"):
        Loss("binary_ce", 10)
    with pytest.raises(CnnlabError, match="label rows must have 4 columns"):
        Loss("categorical_ce", 4)(logits, torch.ones(8, 3))


def test_binary_two_class_and_multilabel():
    binary = Loss("binary_ce", 2)
    assert binary.outputs == 1
    logit = torch.tensor([[0.0], [2.0]])
    probs = binary.probabilities(logit)
    torch.testing.assert_close(probs[1], torch.tensor([1 - torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(2.0))]))
    expected = -(math.log(0.5) + math.log(torch.sigmoid(torch.tensor(2.0)).item())) / 2
    assert binary(logit, torch.tensor([1, 1])).item() == pytest.approx(expected, rel=1e-6)
    multi = Loss("binary_ce", 3, multilabel=True)
    assert multi.outputs == 3
    assert multi(torch.zeros(2, 3), torch.tensor([[1.0, 0, 1], [0, 0, 1]])).item() == pytest.approx(math.log(2))


class FakeRun:
    def __init__(self):
        self.saved, self.lines = {}, []

    def log(self, message):
        self.lines.append(message)

    def save_checkpoint(self, name, payload):
        self.saved[name] = payload


def fake_trainer():
    model = torch.nn.Linear(2, 1)
    trainer = SimpleNamespace(model=model, run=FakeRun(), stop_training=False)
    trainer.model_checkpoint = lambda epoch, logs: {"epoch": epoch + 1, "state_dict": {
        k: v.clone() for k, v in model.state_dict().items()}}
    return trainer


def test_early_stopping_restores_best_even_without_triggering():
    trainer = fake_trainer()
    stopper = EarlyStopping("val_loss", patience=10)
    for epoch, loss in enumerate([0.5, 0.3, 0.4]):
        torch.nn.init.constant_(trainer.model.weight, float(epoch))
        stopper.on_epoch_end(trainer, epoch, {"val_loss": loss})
    assert not trainer.stop_training
    stopper.on_train_end(trainer)
    assert torch.all(trainer.model.weight == 1.0)  # epoch 2's weights


def test_early_stopping_stops_after_patience():
    trainer = fake_trainer()
    stopper = EarlyStopping("val_accuracy", patience=2, min_delta=0.01)
    for epoch, acc in enumerate([0.5, 0.6, 0.605, 0.6]):
        stopper.on_epoch_end(trainer, epoch, {"val_accuracy": acc})
    assert trainer.stop_training and stopper.stopped_epoch == 3


def test_early_stopping_waits_for_start_from_epoch():
    """Keras' start_from_epoch: the first epochs are not monitored, so they can neither set the
    best nor run the patience out."""
    trainer = fake_trainer()
    stopper = EarlyStopping("val_accuracy", patience=1, start_from_epoch=3)
    for epoch, acc in enumerate([0.9, 0.5, 0.5, 0.6, 0.7]):
        stopper.on_epoch_end(trainer, epoch, {"val_accuracy": acc})
    assert not trainer.stop_training and stopper.monitor.best == 0.7 and stopper.monitor.best_epoch == 4


def test_checkpoint_keeps_best_epoch():
    trainer = fake_trainer()
    checkpoint = ModelCheckpoint("val_accuracy")
    for epoch, acc in enumerate([0.5, 0.8, 0.7]):
        checkpoint.on_epoch_end(trainer, epoch, {"val_accuracy": acc})
    assert trainer.run.saved["best.pt"]["epoch"] == 2


class InterruptAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def quick(tmp_path, name, **kw):
    options = dict(model="mlp", data="digits", epochs=3, batch_size=32, out=str(tmp_path), name=name, report=False,
                   augment=["hflip"], image_size=[8, 8], quiet=True, seed=3,
                   schedule="exponential", schedule__decay_steps=20)
    options.update(kw)
    return api.train(**options)


SMALL_AIRBENCH = dict(model="airbench", model__options={"widths": [4, 8, 8]}, image_size=[16, 16])
FROZEN_SMALL_AIRBENCH = {**SMALL_AIRBENCH, "model__options": {**SMALL_AIRBENCH["model__options"], "freeze_base": True}}


@pytest.mark.parametrize("options", [{}, dict(optimizer="muon", **SMALL_AIRBENCH),
                                     dict(optimizer="muon", model__whiten_bias_epochs=1, **SMALL_AIRBENCH),
                                     dict(model__trainable_base_layers=3, **SMALL_AIRBENCH),
                                     dict(model__unfreeze_after=2, model__trainable_base_layers=2,
                                          **FROZEN_SMALL_AIRBENCH)],
                         ids=["adam", "muon", "whitening-bias-fixed-after-epoch-1", "last-base-layers",
                              "last-base-layers-unfrozen-after-epoch-2"])
def test_resume_is_exact(tmp_path, options):
    straight = quick(tmp_path, "straight", **options)
    with pytest.raises(KeyboardInterrupt):
        quick(tmp_path, "interrupted", callbacks=[InterruptAfter(1)], **options)
    assert len(load_run(tmp_path / "interrupted").history) == 1
    resumed = api.resume(tmp_path / "interrupted", quiet=True)
    assert len(resumed.history) == 3
    for a, b in zip(without_timings(straight.history), without_timings(resumed.history), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    final_a = load_checkpoint(straight.path / "last.pt")["state_dict"]
    final_b = load_checkpoint(resumed.path / "last.pt")["state_dict"]
    for key in final_a:
        torch.testing.assert_close(final_a[key], final_b[key], rtol=1e-5, atol=1e-6)


def test_a_run_resumed_on_another_machine_names_each_machines_epochs(tmp_path):
    """The epochs' seconds and img/s in a report, `cnnlab compare` and `cnnlab runs` said
    nothing of what they were measured on (only train.log did), and a run may be resumed on
    another machine; each start now records from which epoch on it trained on what."""
    from cnnlab.reports import compare
    from cnnlab.runtime import cpu_text

    with pytest.raises(KeyboardInterrupt):
        quick(tmp_path, "moved", precision="fp32", callbacks=[InterruptAfter(1)])
    resumed = api.resume(tmp_path / "moved", quiet=True, precision="bf16", report=True)
    fp32, bf16 = (f"cpu {precision}, {torch.get_num_threads()} threads, on {cpu_text()}"
                  for precision in ("fp32", "bf16"))
    assert resumed.trained_on == [{"epoch": 1, "machine": fp32}, {"epoch": 2, "machine": bf16}]
    assert f"trained with {fp32} (epoch 1), then {bf16} (epochs 2-3)" in (resumed.path / "report.html").read_text()
    [row] = run_table(tmp_path / "moved")
    assert row["trained_on"] == [{"epochs": [1, 1], "machine": fp32}, {"epochs": [2, 3], "machine": bf16}]
    listing = run_cli("runs", tmp_path / "moved").stdout.splitlines()
    assert listing[0].split()[-2:] == ["on", "status"] and listing[1].split()[-2] == "1,2"
    assert listing[2:] == [f"[1] {fp32}", f"[2] {bf16}"]
    comparison = compare([tmp_path / "moved"], tmp_path / "compare.html").read_text()
    assert "<th>trained with</th>" in comparison and f"{fp32} (epoch 1), then {bf16}" in comparison


class SignalAtStep(Callback):
    """Sends this process ``signals`` (Ctrl-C by default) once ``step`` optimizer steps are done."""

    def __init__(self, step, signals=(signal.SIGINT,)):
        self.step, self.signals = step, signals

    def on_batch_end(self, trainer, step, loss):
        if step == self.step:
            for number in self.signals:
                os.kill(os.getpid(), number)


def without_timings(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in history]


@pytest.mark.parametrize("options", [{}, dict(accumulate=2)], ids=["steps", "accumulated-steps"])
def test_ctrl_c_within_an_epoch_saves_where_it_stopped_and_resumes_exactly(tmp_path, options):
    """Ctrl-C in the middle of an epoch lost the epoch's steps: last.pt held the epoch before,
    and an epoch of real data on a CPU is minutes to hours. The run now stops after the step it
    is in, saves that step's state, and a resume continues from the next batch to the history
    and weights of a run never stopped."""
    straight = quick(tmp_path, "straight", **options)
    with pytest.raises(KeyboardInterrupt):
        quick(tmp_path, "stopped", callbacks=[SignalAtStep(70 // options.get("accumulate", 1))], **options)
    saved = load_checkpoint(tmp_path / "stopped" / "last.pt")
    within = saved["within_epoch"]
    assert saved["epoch"] == 1 and within["epoch"] == 1 and 0 < within["batch"] < 51
    assert "after batch" in (tmp_path / "stopped" / "train.log").read_text()
    listed = {row["name"]: row["status"] for row in run_table(tmp_path)}
    assert listed["stopped"] == (f"stopped in epoch 2 after batch {within['batch']} of 51: "
                                 f"cnnlab train --resume {tmp_path / 'stopped'}")
    resumed = api.resume(tmp_path / "stopped", quiet=True)
    for got, want in zip(without_timings(resumed.history), without_timings(straight.history), strict=True):
        assert got == pytest.approx(want, rel=1e-5)
    final_a = load_checkpoint(straight.path / "last.pt")
    final_b = load_checkpoint(resumed.path / "last.pt")
    assert "within_epoch" not in final_b
    for key in final_a["state_dict"]:
        torch.testing.assert_close(final_a["state_dict"][key], final_b["state_dict"][key], rtol=1e-5, atol=1e-6)


class CrashAtStep(Callback):
    """A process killed outright in the middle of a step (by the kernel's OOM killer, say)."""

    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, step, loss):
        if step == self.step:
            raise MemoryError("killed")


def test_a_run_killed_within_an_epoch_resumes_from_its_last_periodic_save(tmp_path):
    """Killed outright, a run had only its last epoch's end to go back to. Within an epoch
    last.pt is also written every checkpoint.within_epoch_minutes (here: after every step)."""
    straight = quick(tmp_path, "straight")
    with pytest.raises(MemoryError):
        quick(tmp_path, "killed", callbacks=[CrashAtStep(70)], checkpoint__within_epoch_minutes=1e-9)
    within = load_checkpoint(tmp_path / "killed" / "last.pt")["within_epoch"]
    assert within["epoch"] == 1 and within["batch"] == 69 - 51  # batches done before the step it died in
    resumed = api.resume(tmp_path / "killed", quiet=True)
    for got, want in zip(without_timings(resumed.history), without_timings(straight.history), strict=True):
        assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("minutes", [0, -1.5])
def test_within_epoch_minutes_must_be_positive(tmp_path, minutes):
    with pytest.raises(CnnlabError, match=r"checkpoint__within_epoch_minutes: must be positive, or null"):
        quick(tmp_path, "bad", checkpoint__within_epoch_minutes=minutes)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("damage", [
    lambda w: w.pop("metrics"), lambda w: w.update(batch=10_000), lambda w: w.update(seconds="soon"),
    lambda w: w["metrics"].update(sums=torch.zeros(2)), lambda w: w.update(epoch=0),
])
def test_a_damaged_within_epoch_record_is_one_line(tmp_path, damage):
    with pytest.raises(KeyboardInterrupt):
        quick(tmp_path, "stopped", callbacks=[SignalAtStep(70)])
    last = tmp_path / "stopped" / "last.pt"
    state = load_checkpoint(last)
    damage(state["within_epoch"])
    torch.save(state, last)
    with pytest.raises(CnnlabError, match=r"last.pt: does not fit the run's config.yaml .* or is damaged"):
        api.resume(tmp_path / "stopped", quiet=True)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        quick(tmp_path, "stopped", callbacks=[SignalAtStep(70, [signal.SIGINT] * 2)])
    saved = load_checkpoint(tmp_path / "stopped" / "last.pt")
    assert saved["epoch"] == 1 and "within_epoch" not in saved  # the last epoch's end, as before


def test_logged_lr_is_the_configured_one_whatever_the_first_group(tmp_path):
    # under muon, airbench's first parameter group is the head's fallback group, whose lr is
    # fallback_lr, not the lr the user set
    run = quick(tmp_path, "muon", optimizer="muon", lr=0.05, optimizer__fallback_lr=0.01, schedule="constant",
                epochs=1, **SMALL_AIRBENCH)
    assert run.history[0]["lr"] == pytest.approx(0.05)


def test_best_checkpoint_and_metrics(tmp_path):
    run = quick(tmp_path, "best", epochs=4)
    accuracies = [row["val_accuracy"] for row in run.history]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert load_checkpoint(run.path / "best.pt")["epoch"] == best_epoch
    assert run.metrics["epoch"] == best_epoch
    assert run.metrics["val"]["accuracy"] == pytest.approx(max(accuracies))
    for name in ("config.yaml", "history.csv", "history.json", "best.pt", "last.pt", "classes.json",
                 "split.json", "summary.txt", "metrics.json", "train.log", "predictions-val.csv"):
        assert (run.path / name).is_file(), name
    header = (run.path / "history.csv").read_text().splitlines()[0].split(",")
    for column in ("loss", "accuracy", "top5_accuracy", "mse", "val_loss", "val_accuracy",
                   "val_top5_accuracy", "val_mse", "lr", "seconds", "images_per_second"):
        assert column in header


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_best_epochs_logged_figures_are_the_final_evaluations(tmp_path, precision):
    """train.log's figures for the best epoch and metrics.json's are one evaluation of one model:
    in bf16 a BatchNorm folded into its convolution rounds differently, so both must fold it."""
    run = quick(tmp_path, precision, precision=precision, epochs=2, **SMALL_AIRBENCH)
    best = run.history[run.metrics["epoch"] - 1]
    assert run.metrics["val"]["loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert run.metrics["val"]["accuracy"] == best["val_accuracy"]


class Explode(Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        trainer.schedule.base_lr = 1e30


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) in epoch 2 \(try a lower lr\); the last good "
                                               r"checkpoint.*epoch 1\)"):
        quick(tmp_path, "nan", optimizer="sgd", callbacks=[Explode()])
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["epoch"] == 1


def test_weights_that_diverge_in_the_last_step_are_caught_at_validation(tmp_path):
    """One step at lr 1e30: its own loss is finite, the update makes every output overflow,
    and the run ended in scikit-learn's "ValueError: Input contains NaN" traceback at the final
    evaluation, with the diverged state saved as best.pt."""
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the validation loss became nan in epoch 1 "
                                               r"\(try a lower lr\); no epoch finished"):
        quick(tmp_path, "overflow", optimizer="sgd", lr=1e30, epochs=1, subset=50, batch_size=64)
    assert not (tmp_path / "overflow" / "best.pt").exists()


def test_weights_that_diverge_in_the_last_step_are_caught_without_validation_too(tmp_path):
    """Without validation nothing looked at the outputs after the epoch's last step: the run
    above finished and saved the diverged weights as best.pt."""
    with pytest.raises(TrainingDiverged, match=r"^training diverged: the loss of the first training images in "
                                               r"evaluation mode became nan in epoch 1 \(try a lower lr\); no epoch"):
        quick(tmp_path, "overflow", optimizer="sgd", lr=1e30, epochs=1, subset=50, batch_size=64, val_split=0.0)
    assert not (tmp_path / "overflow" / "best.pt").exists()
    run = quick(tmp_path, "fine", epochs=1, subset=50, batch_size=64, val_split=0.0)
    assert "sample_loss" not in run.history[0]  # checked, not logged


def test_evaluating_or_predicting_with_diverged_weights_is_one_line(tmp_path):
    """A checkpoint whose outputs overflow (diverged weights saved by another tool, or by
    cnnlab before training checked them): `evaluate` ended in scikit-learn's NaN traceback and
    `predict` printed "0 nan%" for every class."""
    run = quick(tmp_path, "overflow", epochs=1, subset=50, batch_size=64, val_split=0.0)
    best = run.path / "best.pt"
    checkpoint = load_checkpoint(best)
    checkpoint["state_dict"] = {name: value * 1e30 if value.is_floating_point() else value
                                for name, value in checkpoint["state_dict"].items()}
    torch.save(checkpoint, best)
    diverged = r"^the model's outputs are not finite for (\d+) of \1 images: its weights diverged in training"
    with pytest.raises(TrainingDiverged, match=diverged):
        api.evaluate(run, split="train")
    with pytest.raises(TrainingDiverged, match=diverged):
        api.predict(run, np.zeros((3, 8, 8), np.uint8))
    result = run_cli("evaluate", run.path, "--split", "train", check=False)
    assert result.returncode == 1 and result.stderr.startswith("cnnlab evaluate: error: the model's outputs are not")


def test_a_diverged_run_says_so_in_its_log_and_in_the_runs_listing(tmp_path):
    """train.log ended at the last good epoch without a word on why the run stopped, and
    `cnnlab runs` offered to resume it, which diverges again."""
    from cnnlab.runs import run_table

    with pytest.raises(TrainingDiverged):
        quick(tmp_path, "nan", optimizer="sgd", callbacks=[Explode()])
    assert "training diverged: the loss became" in (tmp_path / "nan" / "train.log").read_text().splitlines()[-1]
    (row,) = run_table(tmp_path)
    assert row["status"] == "diverged in epoch 2: try a lower --lr"


def test_a_save_within_an_epoch_never_replaces_a_good_state_with_a_diverged_one(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) in epoch 2.*last good checkpoint.*epoch 2, batch"):
        quick(tmp_path, "nan", optimizer="sgd", callbacks=[Explode()], checkpoint__within_epoch_minutes=1e-9)
    saved = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())


def test_early_stopping_in_a_run(tmp_path):
    run = quick(tmp_path, "es", epochs=30, lr=1e-6, early_stopping__patience=1,
                early_stopping__min_delta=10.0)
    assert len(run.history) == 2  # nothing improves by 10: stops after patience 1


def test_early_stopping_does_not_count_the_epochs_of_progressive_resizing(tmp_path):
    """Validation runs at full size while a phase trains smaller, so those epochs are not
    compared: patience counts from the first full-size epoch (or start_from_epoch if later)."""
    options = {"epochs": 6, "lr": 1e-6, "early_stopping__patience": 1, "early_stopping__min_delta": 10.0,
               **SMALL_AIRBENCH}
    run = quick(tmp_path, "es-resized", data__progressive_resizing=[{"scale": 0.75, "epochs": 2}], **options)
    assert len(run.history) == 4  # epochs 1-2 not monitored, 3 sets the best, 4 runs patience out
    run = quick(tmp_path, "es-later", early_stopping__start_from_epoch=3,
                data__progressive_resizing=[{"scale": 0.75, "epochs": 2}], **options)
    assert len(run.history) == 5


def test_repeatable_with_seed(tmp_path):
    a = quick(tmp_path, "a", epochs=1)
    b = quick(tmp_path, "b", epochs=1)
    assert a.history[0]["loss"] == b.history[0]["loss"]


def test_frozen_base_then_fine_tuned(tmp_path):
    snapshot = EpochSnapshots(lambda trainer: trainer.model.features[0].weight)
    run = api.train(model="vgg16-transfer", data="digits", image_size=[32, 32], epochs=2,
                    batch_size=64, subset=130, model__options={"freeze_base": True},
                    model__unfreeze_after=1, model__base_lr_scale=0.1, out=str(tmp_path),
                    name="ft", quiet=True, report=False, callbacks=[snapshot])
    before, after_one, after_two = snapshot.values
    assert torch.equal(before, after_one)  # frozen during epoch 1
    assert not torch.equal(after_one, after_two)  # trained in epoch 2
    assert "unfroze the convolutional base after epoch 1" in (run.path / "train.log").read_text()
    # frozen is how it trained, not what it is: the model load_model gives, to fine-tune further,
    # trains whole (it came back with its base frozen)
    loaded = api.load_model(run)
    assert all(p.requires_grad for p in loaded.parameters()) and not loaded.features_frozen


def test_only_the_bases_last_layers_fine_tune(tmp_path):
    """--trainable-base-layers 1 on lenet5 (two convolutions): the first never changes, the
    second trains, from the start or, with --freeze-base, once the base is unfrozen."""
    common = dict(model="lenet5", data="digits", epochs=2, subset=130, model__trainable_base_layers=1,
                  out=str(tmp_path), quiet=True, report=False)
    snapshot = EpochSnapshots(lambda trainer: torch.cat([trainer.model.features[0].weight.flatten(),
                                                         trainer.model.features[3].weight.flatten()]))
    partial = api.train(**common, name="partial", callbacks=[snapshot])
    assert ("the last 1 of the convolutional base's 2 layers train from the start; the first 1 stay as loaded "
            "(model.trainable_base_layers)") in (partial.path / "train.log").read_text()
    def per_conv(snapshot):  # each epoch's first and second convolution weights
        return zip(*(v.split([6 * 1 * 5 * 5, 16 * 6 * 5 * 5]) for v in snapshot.values), strict=True)

    firsts, seconds = per_conv(snapshot)
    assert all(torch.equal(firsts[0], later) for later in firsts[1:])
    assert not torch.equal(seconds[0], seconds[1]) and not torch.equal(seconds[1], seconds[2])
    snapshot = EpochSnapshots(snapshot.read)
    run = api.train(**common, name="unfrozen", model__options={"freeze_base": True}, model__unfreeze_after=1,
                    callbacks=[snapshot])
    firsts, seconds = per_conv(snapshot)
    assert all(torch.equal(firsts[0], later) for later in firsts[1:])
    assert torch.equal(seconds[0], seconds[1]) and not torch.equal(seconds[1], seconds[2])
    log = (run.path / "train.log").read_text()
    assert "unfroze the last 1 of the convolutional base's 2 layers after epoch 1" in log
    assert "the last 1 of the convolutional base's 2 layers train after epoch 1; the first 1 stay as loaded" in log


def test_unfreezing_the_base_leaves_a_fixed_whitening_bias_fixed(tmp_path):
    """Unfreezing set every base parameter trainable, the whitening bias that
    whiten_bias_epochs had fixed included: it trained again from then on."""
    snapshot = EpochSnapshots(lambda trainer: trainer.model.features[0].bias)
    api.train(**FROZEN_SMALL_AIRBENCH, data="digits", epochs=3, subset=130, model__whiten_bias_epochs=1, model__unfreeze_after=2,
              out=str(tmp_path), name="r", quiet=True, report=False, callbacks=[snapshot])
    assert all(torch.equal(snapshot.values[0], later) for later in snapshot.values[1:])


@pytest.mark.parametrize("phase", [{"scale": 0.75, "epochs": 2}, {"scale": 0.75, "fraction": 0.6}],
                         ids=["epochs", "fraction"])
def test_progressive_resizing_trains_its_first_epochs_smaller_and_says_so(tmp_path, phase):
    run = quick(tmp_path, "resized", epochs=3, data__progressive_resizing=[phase], **SMALL_AIRBENCH)
    assert len(run.history) == 3
    log = (run.path / "train.log").read_text()
    assert "Epoch 1: training images at 12x12 (progressive resizing)" in log
    assert "Epoch 3: training images at 16x16 (progressive resizing)" in log
    assert "Epoch 2: training images" not in log  # said once a phase


@pytest.mark.parametrize("options, message", [
    (dict(model="mlp", phases=[{"scale": 0.5, "epochs": 1}]),
     r"mlp cannot train on 4x4 images \(scale 0.5 of 8x8\); progressive resizing needs a model that pools globally"),
    (dict(phases=[{"scale": 0.05, "epochs": 1}], **SMALL_AIRBENCH), r"airbench cannot train on 1x1 images"),
    (dict(phases=[{"scale": 0.75, "epochs": 2}, {"scale": 0.875, "epochs": 1}], **SMALL_AIRBENCH),
     r"its phases take 3 epochs of the run's 3; the last epoch at least must train at the full input size"),
    (dict(phases=[{"scale": 1.5, "epochs": 1}], **SMALL_AIRBENCH), r"a scale must be above 0 and at most 1; got 1.5"),
    (dict(phases=[{"scale": 0.75, "epochs": 0}], **SMALL_AIRBENCH), r"a phase lasts at least 1 epoch; got 0"),
    (dict(phases=[{"scale": 0.75, "epochs": 1, "fraction": 0.2}], **SMALL_AIRBENCH),
     r"a phase lasts its epochs \(.*\) or its fraction of the run's epochs \(.*\), not both"),
    (dict(phases=[{"scale": 0.75}], **SMALL_AIRBENCH),
     r"a phase lasts its epochs \(e.g. \{scale: 0.75, epochs: 5\}\) or its fraction of the run's epochs"),
    (dict(phases=[{"scale": 0.75, "fraction": 1.0}], **SMALL_AIRBENCH),
     r"a phase's fraction of the run's epochs must be above 0 and below 1; got 1.0"),
    (dict(phases=[{"scale": 0.5, "fraction": 0.5}, {"scale": 0.75, "fraction": 0.5}], **SMALL_AIRBENCH),
     r"the phases' fractions add up to 1; they must leave part of the run at the full input size"),
    (dict(phases=[{"scale": 0.5, "fraction": 0.5}, {"scale": 0.75, "epochs": 1}], **SMALL_AIRBENCH),
     r"give every phase in epochs or every phase in fractions of the run, not some of each"),
], ids=["dense-head", "too-small", "no-full-size-epoch", "scale-above-1", "no-epochs", "both", "neither",
        "whole-run", "fractions-fill-the-run", "epochs-and-fractions"])
def test_progressive_resizing_refuses_what_cannot_train_before_any_folder_is_made(tmp_path, options, message):
    phases = options.pop("phases")
    with pytest.raises(CnnlabError, match=f"data__progressive_resizing: .*{message}"):
        quick(tmp_path, "refused", data__progressive_resizing=phases, **options)
    assert not (tmp_path / "refused").exists()

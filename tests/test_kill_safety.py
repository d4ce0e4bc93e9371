"""Killed runs always resume: real training processes killed with SIGKILL at random moments
(before the run folder exists, before the first epoch ends, during checkpoint writes), then
``--resume``d to the end, must end with the history and weights of a run never stopped; no
temporary file survives the next start; best.pt and last.pt agree at every kill point; SIGTERM
behaves like Ctrl-C."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_checkpoint
from conftest import run_cli

# mlp has dropout and the augmentation draws random numbers: resuming must restore both streams
ARGS = ["--model", "mlp", "--data", "digits", "--image-size", "32x32", "--epochs", "4",
        "--augment", "pad_crop:2", "--batch-size", "32", "--seed", "3", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    run_cli("train", *ARGS, "--out", out, "--name", "r")
    return out / "r"


def start(out: Path, name: str, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *ARGS, *extra, "--out", out, "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def same_run(run: Path, reference: Path) -> None:
    got = json.loads((run / "history.json").read_text())
    want = json.loads((reference / "history.json").read_text())
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for a, b in zip(got, want, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
    for a, b in zip(load_checkpoint(run / "last.pt")["state_dict"].values(),
                    load_checkpoint(reference / "last.pt")["state_dict"].values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def consistent(run: Path) -> None:
    """best.pt never comes from an epoch last.pt does not know."""
    if (run / "best.pt").is_file():
        assert (run / "last.pt").is_file()
        assert load_checkpoint(run / "best.pt")["epoch"] <= load_checkpoint(run / "last.pt")["epoch"]


def kill_and_resume(out: Path, name: str, delay: float, extra: tuple[str, ...] = ()) -> Path:
    process = start(out, name, extra)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    run = out / name
    if not (run / "config.yaml").is_file():  # killed before the run had a folder: start again
        run_cli("train", *ARGS, *extra, "--out", out, "--name", name)
        return run
    consistent(run)
    run_cli("train", "--resume", run, "--quiet")
    assert not list(run.rglob("*.tmp")), "a temporary file survived the resume"
    return run


def kill_points(count: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(1.0, 12.0) for _ in range(count)]


# CI kills the process before its first epoch ends, by SIGTERM and mid-write below; the random
# moments run in the slow suite (25 of them) to keep `make test` within its minutes
@pytest.mark.slow
@pytest.mark.parametrize("delay", kill_points(1))
def test_sigkill_at_a_random_moment_resumes_exactly(tmp_path, reference, delay):
    same_run(kill_and_resume(tmp_path, "k", delay), reference)


@pytest.mark.slow
@pytest.mark.parametrize("delay", kill_points(25, seed=1))
def test_sigkill_at_many_random_moments(tmp_path, reference, delay):
    same_run(kill_and_resume(tmp_path, "k", delay), reference)


@pytest.mark.slow
@pytest.mark.parametrize("delay", kill_points(6, seed=2))
def test_sigkill_between_saves_within_epochs_resumes_exactly(tmp_path, reference, delay):
    """last.pt written within epochs every few steps: a kill anywhere resumes from the step it
    holds to the run never stopped."""
    same_run(kill_and_resume(tmp_path, "w", delay, ("--set", "checkpoint.within_epoch_minutes=0.002")), reference)


def test_stale_temporaries_are_removed_and_best_is_mended(tmp_path, reference):
    """What a kill inside a write leaves: a half-written temporary file; and a kill between
    last.pt and best.pt: a last.pt that knows a better epoch than best.pt holds."""
    run = tmp_path / "r"
    run_cli("train", *ARGS, "--epochs", "2", "--out", tmp_path, "--name", "r")
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (run / ".metrics.json.xyz.tmp").write_text("{")
    last = load_checkpoint(run / "last.pt")
    best_epoch = last["callbacks"][0]["monitor"]["best_epoch"] + 1
    if best_epoch == last["epoch"]:  # make best.pt lag behind, as a kill between the two would
        stale = load_checkpoint(run / "best.pt")
        stale["epoch"] = last["epoch"] - 1
        torch.save(stale, run / "best.pt")
    run_cli("train", "--resume", run, "--epochs", "4", "--quiet")  # on to the reference's 4
    assert not list(run.rglob("*.tmp"))
    history = json.loads((run / "history.json").read_text())
    best = max(history, key=lambda row: row["val_accuracy"])
    assert load_checkpoint(run / "best.pt")["epoch"] == best["epoch"]
    same_run(run, reference)


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not path.is_file() and time.time() < deadline:
        time.sleep(0.05)


@pytest.mark.slow  # 18 s; test_sigterm_behaves_like_ctrl_c keeps a killed-and-resumed run in CI
def test_killed_before_the_first_epoch_ends_starts_again(tmp_path, reference):
    process = start(tmp_path, "early")
    wait_for(tmp_path / "early" / "config.yaml")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not (tmp_path / "early" / "last.pt").is_file()
    log = run_cli("train", "--resume", tmp_path / "early").stdout
    assert "starts again from the beginning" in log
    same_run(tmp_path / "early", reference)


def test_sigterm_behaves_like_ctrl_c(tmp_path, reference):
    process = start(tmp_path, "term")
    last = tmp_path / "term" / "last.pt"
    wait_for(last)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "cnnlab: terminated"
    assert "continue with: cnnlab train --resume" in (tmp_path / "term" / "train.log").read_text()
    load_checkpoint(last)  # intact
    run_cli("train", "--resume", tmp_path / "term", "--quiet")
    same_run(tmp_path / "term", reference)


def test_an_output_path_under_a_regular_file_is_one_line(tmp_path, image_folder, reference, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file where a folder should be")
    commands = [
        (["data", "info", f"folder:{image_folder}"], {"CNNLAB_CACHE": str(blocker / "cache")}),
        (["data", "info", "digits", "--preview", blocker / "grid.png"], {}),
        (["compare", reference, "--out", blocker / "compare.html"], {}),
        (["export", reference, "--out", blocker / "model.onnx"], {}),
    ]
    for command, environment in commands:
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            result = run_cli(*command, check=False)
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr and str(blocker) in result.stderr, result.stderr


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    """torch.save turns the system's "No space left on device" into a RuntimeError of its own
    zip writer, which ended a training on a full disk in a traceback when its checkpoint did
    not fit (found on a 300 KB tmpfs). A disk that takes 100 KB a file stands in for one here;
    the half-written file is gone."""
    import cnnlab.io

    opened = os.fdopen

    class FillingDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 100_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.handle.close()

    monkeypatch.setattr(cnnlab.io.os, "fdopen", lambda fd, *args, **kwargs: FillingDisk(opened(fd, *args, **kwargs)))
    result = run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--subset", "200",
                     "--out", tmp_path, "--name", "r", check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(f"{tmp_path / 'r' / 'last.pt'}: cannot write it (No space left on device)")
    assert not [p.name for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_a_run_whose_checkpoints_cannot_fit_is_refused_before_it_trains(tmp_path, monkeypatch):
    """The full disk above costs the first epoch (its checkpoint is what did not fit): a run
    whose checkpoints cannot fit where it writes them is now refused before anything is
    decoded or trained, as the decode cache is, and so is a resume."""
    import shutil

    run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--subset", "200", "--out", tmp_path,
            "--name", "r")
    full = shutil.disk_usage(tmp_path)._replace(free=50_000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)
    for args, folder in [(["--model", "lenet5", "--data", "digits", "--out", tmp_path / "runs"], tmp_path),
                         (["--resume", tmp_path / "r", "--epochs", "2"], tmp_path / "r")]:
        result = run_cli("train", *args, check=False)
        assert result.returncode == 2, result.stderr
        assert f"{folder}: the run's checkpoints need about" in result.stderr and "48.8 KiB free" in result.stderr
    assert not (tmp_path / "runs").exists() and json.loads((tmp_path / "r" / "history.json").read_text())[-1]["epoch"] == 1
    # the range test writes no checkpoint
    run_cli("lr-find", "--model", "lenet5", "--data", "digits", "--steps", "20", cwd=tmp_path)


def test_a_signal_during_a_checkpoint_write_waits_for_the_file(tmp_path):
    """SIGTERM sent the moment last.pt appears used to land inside best.pt's torch.save, which
    turns the interruption into a RuntimeError (exit 1, best.pt lost). The signal now waits
    until the file is complete, then stops the run as usual."""
    from cnnlab.io import write_atomic

    class Interrupting(io.BytesIO):
        writes = 0

        def write(self, data):
            Interrupting.writes += 1
            if Interrupting.writes == 3:
                os.kill(os.getpid(), signal.SIGINT)
            return super().write(data)

    def save(handle):
        buffer = Interrupting()
        torch.save({"epoch": 3, "weights": torch.arange(100_000.0)}, buffer)
        handle.write(buffer.getvalue())

    path = tmp_path / "best.pt"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_atomic(path, save)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert load_checkpoint(path)["epoch"] == 3  # complete: the interruption came after the rename


def test_runs_started_in_the_same_second_get_a_folder_each(tmp_path):
    """Run names have a one-second timestamp, so a sweep launching trainings in parallel makes
    the same name at once: the one whose mkdir came second failed ("cannot create the run
    directory: File exists") where it should take the next free name."""
    from concurrent.futures import ThreadPoolExecutor

    from cnnlab.runs import RunDirectory

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: RunDirectory.create(tmp_path, "20261127-120000-mlp-digits").path, range(32)))
    assert len(set(made)) == 32 and all(path.is_dir() for path in made)


def test_a_run_being_trained_cannot_be_resumed_by_a_second_process(tmp_path, reference):
    """`train --resume RUN` typed in a second terminal (or a job started twice) trained the run
    beside the first process: both wrote its checkpoints and history, and the second deleted
    the first's half-written files as stale."""
    import fcntl
    import shutil

    run = tmp_path / "r"
    shutil.copytree(reference, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    with (run / ".lock").open("a") as held:  # what a process training the run holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        (run / ".last.pt.abc.tmp").write_bytes(b"the other process's checkpoint, half written")
        result = run_cli("train", "--resume", run, "--epochs", "5", check=False)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.strip().endswith(f"--resume {run}: another process is training this run now; "
                                              "wait for it to end (or stop it), then resume")
        assert (run / ".last.pt.abc.tmp").exists()
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == {
            **before, ".last.pt.abc.tmp": b"the other process's checkpoint, half written"}
    run_cli("train", "--resume", run, "--epochs", "5")  # released: it resumes
    assert json.loads((run / "history.json").read_text())[-1]["epoch"] == 5
    (run / ".lock").unlink()
    (run / ".lock").mkdir()  # a lock that cannot be opened is one line too
    blocked = run_cli("train", "--resume", run, "--epochs", "6", check=False)
    assert blocked.returncode == 2 and blocked.stderr.strip().endswith(
        f"{run / '.lock'}: cannot write there (Is a directory)"), blocked.stderr

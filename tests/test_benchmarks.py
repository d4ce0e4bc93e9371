"""Smoke tests: each benchmark runs on a tiny setting (their numbers go to docs, never into asserts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_throughput_runs():
    out = run("benchmarks/throughput.py", "--models", "lenet5", "--precisions", "fp32",
              "--steps", "1", "--repeats", "1")
    assert "lenet5" in out and "img/s" in out


KERAS_PYTHON = REPO / ".venv-bench" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_keras_reference_trains_the_same_networks():
    out = run("benchmarks/throughput.py", "--models", "alexnet-bn@150", "alexnet-mnist", "simple-cnn",
              "small-cnn", "alexnet", "vgg16", "--batch-size", "2", "--steps", "1", "--repeats", "1",
              "--keras-policies", "float32", "--precisions", "fp32", "--roofline-seconds", "0.05")
    assert "warning" not in out and "failed" not in out, out
    assert out.count("keras float32") >= 6


def test_time_to_accuracy_runs(tmp_path):
    out = run("benchmarks/time_to_accuracy.py", "--data", "digits", "--target", "0.5", "--epochs", "3",
              "--set", "data.subset=400", "--out", str(tmp_path))
    assert "val accuracy per epoch" in out and "training batches alone" in out


def test_profile_step_runs():
    out = run("benchmarks/profile_step.py", "--model", "lenet5", "--steps", "1", "--rows", "5")
    assert "img/s under the profiler" in out and "aten::" in out

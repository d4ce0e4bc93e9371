"""Smoke tests: each benchmark runs on a tiny setting (their numbers go to docs, never into asserts)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_throughput_runs():
    out = run("benchmarks/throughput.py", "--models", "lenet5", "--precisions", "fp32",
              "--steps", "1", "--repeats", "1")
    assert "lenet5" in out and "img/s" in out


def test_time_to_accuracy_runs(tmp_path):
    out = run("benchmarks/time_to_accuracy.py", "--data", "digits", "--target", "0.5", "--epochs", "3",
              "--set", "data.subset=400", "--out", str(tmp_path))
    assert "val accuracy per epoch" in out

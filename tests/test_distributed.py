"""Distributed training on torch.distributed (gloo on the CPU, two processes), the AlexNet
paper's two towers on two devices, and the GPU path (tests marked gpu skip without CUDA)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.models import create_model
from cnnlab.models.towers import split_towers
from conftest import run_cli

# plain SGD at a small step: training that floating-point order cannot tip into another path
# (with momentum 0.9 at lr 0.05, one process on 1 thread and on 2 already end 0.4 apart)
DIGITS = ["--model", "lenet5", "--data", "digits", "--batch-size", "32", "--optimizer", "sgd",
          "--lr", "0.02", "--momentum", "0", "--precision", "fp32", "--device", "cpu", "--quiet"]


def torchrun(*args, check: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m cnnlab ...``, as a user types it."""
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2", "-m", "cnnlab", *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["state_dict"]


@pytest.mark.slow  # 23 s; the launcher test below keeps two processes in CI
def test_two_processes_end_with_one_process_weights(tmp_path):
    """Global batch 32 as 2 x 16 (the last, uneven batch too): the same gradient as one
    process, so the same weights up to floating-point order."""
    torchrun("train", *DIGITS, "--epochs", "1", "--out", tmp_path, "--name", "two")
    run_cli("train", *DIGITS, "--epochs", "1", "--out", tmp_path, "--name", "one")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5)
    history = [json.loads((tmp_path / name / "history.json").read_text())[0] for name in ("one", "two")]
    assert history[1]["loss"] == pytest.approx(history[0]["loss"], rel=1e-5)


def test_cnnlab_launcher_makes_one_run_whose_metrics_equal_one_process(tmp_path):
    result = run_cli("train", *DIGITS, "--epochs", "1", "--nproc-per-node", "2", "--out", tmp_path,
                     fresh_process=True)
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and result.stdout.strip() == str(runs[0])  # one line, from rank 0
    [record] = json.loads((runs[0] / "trained_on.json").read_text())  # rank 0's: the img/s are the processes'
    assert record["epoch"] == 1 and " in each of 2 processes, on " in record["machine"]
    recorded = json.loads((runs[0] / "metrics.json").read_text())["val"]
    single = json.loads(run_cli("evaluate", runs[0], "--device", "cpu", "--format", "json").stdout)
    assert single["samples"] == recorded["samples"] == 179  # uneven over 2 ranks, nothing padded
    for key in ("accuracy", "loss", "mse", "top5_accuracy"):
        assert single[key] == pytest.approx(recorded[key], rel=1e-6, abs=1e-7)
    assert single["confusion_matrix"] == recorded["confusion_matrix"]


@pytest.mark.slow  # 46 s: three trainings; the launcher test above keeps two processes in CI
def test_terminate_and_resume_under_two_processes(tmp_path):
    args = [*DIGITS, "--epochs", "3", "--image-size", "28x28", "--out", tmp_path]
    # the uninterrupted reference in one process: two give its numbers (the test above)
    run_cli("train", *args, "--name", "full")
    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *args, "--nproc-per-node", "2",
                                "--name", "cut"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    last = tmp_path / "cut" / "last.pt"
    deadline = time.time() + 300
    while not last.is_file() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, out + err
    log = (tmp_path / "cut" / "train.log").read_text()
    assert log.count("continue with: cnnlab train --resume") == 1
    run_cli("train", "--resume", tmp_path / "cut", "--nproc-per-node", "2", "--quiet")
    # the launcher ran in this process (as from a notebook) and left its signal handlers as they were
    assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == handlers
    cut = json.loads((tmp_path / "cut" / "history.json").read_text())
    whole = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [row["epoch"] for row in cut] == [1, 2, 3]
    for a, b in zip(cut, whole, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)


@pytest.mark.slow  # 2 two-process trainings
def test_whitening_bias_fixed_mid_run_under_two_processes(tmp_path):
    """DDP syncs the parameters that needed gradients when it wrapped the model; fixing the
    whitening bias after epoch 1 wraps it again, and epoch 2 trains the rest with the bias as
    epoch 1 left it (a constant lr, so epoch 1 is the same in both runs)."""
    args = ["--model", "airbench", "--set", "model.options.widths=[4,8,8]", "--image-size", "16x16",
            *DIGITS[2:], "--schedule", "constant", "--set", "model.whiten_bias_epochs=1", "--out", tmp_path]
    torchrun("train", *args, "--epochs", "1", "--name", "one")
    torchrun("train", *args, "--epochs", "2", "--name", "two")
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert torch.equal(one["features.0.bias"], two["features.0.bias"])
    assert not torch.equal(one["features.2.weight"], two["features.2.weight"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_meet_by_c10d_rendezvous(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [subprocess.Popen([sys.executable, "-m", "cnnlab", "train", *DIGITS, "--epochs", "1",
                               "--nproc-per-node", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                               "--out", tmp_path, "--name", "nodes"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], results
    assert [p.name for p in tmp_path.iterdir()] == ["nodes"]
    assert json.loads((tmp_path / "nodes" / "metrics.json").read_text())["val"]["samples"] == 179


def test_towers_compute_what_the_grouped_network_computes():
    torch.manual_seed(0)
    grouped = create_model("alexnet", 10, 3, (67, 67)).eval()
    towers = split_towers(create_model("alexnet", 10, 3, (67, 67)), ["cpu", "cpu"]).eval()
    towers.load_state_dict(grouped.state_dict())
    assert towers.state_dict().keys() == grouped.state_dict().keys()
    x = torch.randn(3, 3, 67, 67) * 50  # large enough for LRN to bite at the tower boundary
    expected, got = grouped(x), towers(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert towers(x).dtype == grouped(x).dtype == torch.float32  # the output layer's logits, split or whole
    expected.square().sum().backward()
    got.square().sum().backward()
    grads = {name: p.grad for name, p in grouped.named_parameters()}
    joined = {}
    for name, p in towers.named_parameters():  # features.4.weights.1 -> features.4.weight
        layer, kind, _ = name.rsplit(".", 2)
        joined.setdefault(f"{layer}.{ {'weights': 'weight', 'biases': 'bias'}[kind]}", []).append(p.grad)
    assert joined.keys() == grads.keys()
    for name, parts in joined.items():  # equal up to the order of float sums: relative to the scale
        scale = grads[name].abs().max().item()
        torch.testing.assert_close(torch.cat(parts), grads[name], rtol=1e-4, atol=1e-5 * scale)
    grouped.load_state_dict(towers.state_dict())  # and back


@pytest.mark.slow  # 11 s; CI keeps the towers computing what the grouped network computes (above)
def test_towers_train_through_the_cli(tmp_path):
    run_cli("train", "--model", "alexnet", "--data", "digits", "--image-size", "67x67", "--channels", "3",
            "--towers", "cpu,cpu", "--epochs", "1", "--subset", "200", "--out", tmp_path, "--name", "t",
            "--quiet")
    evaluated = json.loads(run_cli("evaluate", tmp_path / "t", "--format", "json").stdout)
    recorded = json.loads((tmp_path / "t" / "metrics.json").read_text())["val"]
    assert evaluated["accuracy"] == pytest.approx(recorded["accuracy"])  # loads as the grouped net


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["auto", "fp16", "fp32"])
def test_gpu_training_with_mixed_precision(tmp_path, precision):
    run_cli("train", "--model", "resnet9", "--data", "digits", "--image-size", "32x32", "--epochs", "3",
            "--device", "cuda", "--precision", precision, "--augment", "rotate:10", "--augment", "mixup",
            "--out", tmp_path, "--name", "g", "--quiet")
    metrics = json.loads((tmp_path / "g" / "metrics.json").read_text())["val"]
    assert metrics["accuracy"] > 0.8
    config = (tmp_path / "g" / "train.log").read_text()
    assert "cuda" in config


@pytest.mark.gpu
def test_gpu_towers_on_one_card_match_the_grouped_network(monkeypatch):
    # in true fp32: with TF32 convolutions (cuDNN's default) the grouped and the split
    # convolutions round differently, ~4e-3 apart
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    grouped = create_model("alexnet", 10, 3, (99, 99)).eval().cuda()
    towers = split_towers(create_model("alexnet", 10, 3, (99, 99)), ["cuda:0", f"cuda:{torch.cuda.device_count() - 1}"]).eval()
    towers.load_state_dict(grouped.state_dict())
    x = torch.randn(2, 3, 99, 99, device="cuda") * 50
    torch.testing.assert_close(towers(x), grouped(x), rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_gpu_ddp_on_nccl_and_evaluation_agree_with_the_cpu(tmp_path):
    """One NCCL process under the launcher: the DDP path on a GPU; its best.pt evaluated on
    the GPU and on the CPU gives the same accuracy."""
    run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "2", "--device", "cuda",
            "--nproc-per-node", "1", "--out", tmp_path, "--name", "nccl", "--quiet", "--no-report")
    on_gpu = json.loads(run_cli("evaluate", tmp_path / "nccl", "--device", "cuda", "--format", "json").stdout)
    on_cpu = json.loads(run_cli("evaluate", tmp_path / "nccl", "--device", "cpu", "--format", "json").stdout)
    assert on_gpu["accuracy"] == pytest.approx(on_cpu["accuracy"], abs=1 / on_cpu["samples"])
    assert on_gpu["accuracy"] > 0.8

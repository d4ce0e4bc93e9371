"""Smoke tests: each benchmark runs on a tiny setting (their numbers go to docs, never into asserts)."""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_throughput_runs():
    out = run("benchmarks/throughput.py", "--models", "lenet5", "--precisions", "fp32",
              "--steps", "1", "--repeats", "2", "--roofline-seconds", "0.05", "--show-windows")
    assert "lenet5" in out and "img/s" in out and "(fastest " in out
    assert re.search(r"lenet5 28 cnnlab fp32( \(default\))? windows: [\d.]+, [\d.]+\n", out), out


KERAS_PYTHON = REPO / ".venv-bench" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_keras_reference_trains_the_same_networks():
    out = run("benchmarks/throughput.py", "--models", "alexnet-bn@150", "alexnet-half", "alexnet-mnist",
              "simple-cnn", "small-cnn", "alexnet", "vgg16", "--batch-size", "2", "--steps", "1", "--repeats", "1",
              "--keras-policies", "float32", "--precisions", "fp32", "--roofline-seconds", "0.05")
    assert "warning" not in out and "failed" not in out, out
    assert out.count("keras float32") >= 7 and "keras loop: fit" in out


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_throughput_can_set_cnnlab_against_keras_train_on_batch():
    out = run("benchmarks/throughput.py", "--models", "simple-cnn", "--batch-size", "2", "--steps", "1",
              "--repeats", "1", "--keras-policies", "float32", "--precisions", "fp32", "--roofline-seconds", "0.05",
              "--keras-loop", "train_on_batch")
    assert "keras loop: train_on_batch" in out and "cnnlab fp32 / keras float32's fastest" in out, out


@pytest.mark.slow
def test_keras_reference_runs_on_another_backend():
    """Where TensorFlow cannot be installed (a bf16 CPU's machine), the reference runs on JAX."""
    # checked here, not in a skipif: importing jax would cost every collection of this file
    if not KERAS_PYTHON.exists() or subprocess.run([str(KERAS_PYTHON), "-c", "import jax"],
                                                   capture_output=True).returncode != 0:
        pytest.skip("needs `make bench-env` with jax installed")
    worker = subprocess.run([str(KERAS_PYTHON), "worker.py"], cwd=REPO / "benchmarks" / "keras_reference",
                            input='{"op": "info"}\n{"op": "prepare", "key": "s", "model": "simple-cnn", '
                                  '"input": [32, 32, 3], "classes": 10, "policy": "mixed_bfloat16", "batch": 2, '
                                  '"steps": 1}\n', capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    info, prepared = (json.loads(line) for line in worker.stdout.splitlines())
    assert info["backend"] == "jax" and info["backend_version"]
    assert prepared["params"] > 0, prepared


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_keras_worker_measures_fit_and_train_on_batch_loops():
    requests = [{"op": "prepare", "key": "s", "model": "simple-cnn", "input": [32, 32, 3], "classes": 10,
                 "policy": "float32", "batch": 2, "steps": 2},
                {"op": "measure", "key": "s"}, {"op": "measure", "key": "s", "loop": "train_on_batch"},
                {"op": "measure", "key": "s", "loop": "scan"}]
    worker = subprocess.run([str(KERAS_PYTHON), "worker.py"], cwd=REPO / "benchmarks" / "keras_reference",
                            input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True,
                            timeout=300)
    prepared, fit, on_batch, unknown = (json.loads(line) for line in worker.stdout.splitlines())
    assert prepared["params"] > 0 and fit["images_per_second"] > 0 and on_batch["images_per_second"] > 0
    assert unknown == {"error": "ValueError: unknown loop 'scan'"}


def test_keras_python_is_found_as_a_shell_finds_it(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    throughput = importlib.import_module("throughput")
    interpreter = tmp_path / "bin" / "kpython"
    interpreter.parent.mkdir()
    interpreter.write_text("#!/bin/sh\n")
    interpreter.chmod(0o755)
    monkeypatch.setenv("PATH", str(interpreter.parent))
    monkeypatch.chdir(tmp_path)
    assert throughput.interpreter_path(Path("kpython")) == interpreter
    assert throughput.interpreter_path(Path("bin/kpython")) == interpreter  # relative to here
    assert throughput.interpreter_path(Path("missing")) == tmp_path / "missing"  # reported as not found


def test_modes_take_turns_window_by_window(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    throughput = importlib.import_module("throughput")
    calls = []

    def mode(name):
        return throughput.window(lambda: calls.append(name), steps=2, batch=8,
                                 before=lambda: calls.append(f"enter {name}"))

    rates = throughput.alternate({"a": mode("a"), "b": mode("b")}, windows=2)
    assert calls == ["enter a", "a", "a", "a", "enter b", "b", "b", "b"] * 2  # one untimed step each
    assert set(rates) == {"a", "b"} and all(rate > 0 for rate in rates.values())


def test_throughput_compares_like_with_like_and_each_precision_with_its_roofline(monkeypatch):
    """On a bf16 CPU cnnlab's default is bf16: its ratio against Keras' float32 is default for
    default, and fp32 and bf16 each meet the Keras policy and the roofline of their own precision.
    Keras' columns get their share of the roofline too: what 2x Keras would need is then in the
    table. Keras' fastest windows are set beside its medians, since TensorFlow's speed can jump
    between windows."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    throughput = importlib.import_module("throughput")
    row = {"model": "alexnet-bn 227", "batch": 64, "default": "cnnlab bf16 (default)", "gflop_per_image": 6.79,
           "img_s": {"cnnlab fp32": 58.5, "cnnlab bf16 (default)": 111.3, "keras float32": 48.6,
                     "keras mixed_bfloat16": 48.1},
           "fastest": {"cnnlab fp32": 59.0, "cnnlab bf16 (default)": 112.0, "keras float32": 58.5,
                       "keras mixed_bfloat16": 55.6}}
    roofs = {"fp32": 554.9, "bf16": 1006.4}
    line = throughput.format_row(row, roofs)
    for text in ("cnnlab fp32 / keras float32 1.20x", "cnnlab bf16 / keras mixed_bfloat16 2.31x",
                 "cnnlab default / keras float32 2.29x", "cnnlab fp32 / keras float32's fastest 1.00x",
                 "cnnlab bf16 / keras mixed_bfloat16's fastest 2.00x", "keras float32 48.6 (fastest 58.5)",
                 "cnnlab fp32 397 (72% of the fp32 roofline)",
                 "cnnlab bf16 (default) 756 (75% of the bf16 roofline)",
                 "keras float32 330 (59% of the fp32 roofline; fastest 397, 72%)",
                 "keras mixed_bfloat16 327 (32% of the bf16 roofline; fastest 378, 38%)"):
        assert text in line, line
    head, _, cells = throughput.markdown_table([row], roofs).splitlines()
    assert "cnnlab bf16 (default) GFLOP/s (share of the bf16 roofline)" in head
    assert "keras float32 GFLOP/s (share of the fp32 roofline)" in head
    assert "| 58.5 | 111.3 | 48.6 (58.5) | 48.1 (55.6) |" in cells, cells
    assert cells.endswith("| 1.20x | 2.31x | 2.29x | 1.00x | 2.00x | 397 (72%) | 756 (75%) | 330 (59%) (397, 72%) "
                          "| 327 (32%) (378, 38%) |"), cells
    fp32_only = {**row, "default": "cnnlab fp32", "img_s": {"cnnlab fp32": 58.5, "keras float32": 48.6}}
    assert "mixed_bfloat16" not in throughput.format_row(fp32_only, roofs)


@pytest.mark.slow  # compiles lenet5 with inductor: ~30 s
def test_step_levers_runs():
    out = run("benchmarks/step_levers.py", "--model", "lenet5", "--windows", "1", "--steps", "1")
    line = next(line for line in out.splitlines() if line.startswith("lenet5"))
    for variant in ("channels_last", "nchw", "compile", "no-onednn", "blas-dense", "conv-tiny-maps", "torch-flatten",
                    "torch-avgpool", "torch-lrn"):
        assert f"{variant} " in line, line
    assert "flags:" in out


@pytest.mark.slow  # 10 s in its own interpreter; the next test covers the layout function in-process
def test_step_levers_measures_layouts_per_layer_and_model_options():
    out = run("benchmarks/step_levers.py", "--model", "airbench", "--batch-size", "4", "--options", "widths=[8,8,8]",
              "--levers", "nchw-first:1", "options:widths=[8,16,16]", "scale:0.75", "fixed-whitening-bias",
              "--windows", "1", "--steps", "1")
    line = next(line for line in out.splitlines() if line.startswith("airbench"))
    for variant in ("channels_last", "nchw-first:1", "options:widths=[8,16,16]", "scale:0.75", "fixed-whitening-bias"):
        assert f"{variant} " in line, line


def test_the_torch_lrn_lever_runs_torchs_lrn_with_the_same_result(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    step_levers = importlib.import_module("step_levers")
    torch = pytest.importorskip("torch")
    from cnnlab.models import create_model
    from cnnlab.models.layers import LocalResponseNorm

    torch.manual_seed(0)
    reference = create_model("alexnet", input_size=(99, 99)).eval()
    levered = step_levers.with_torch_lrn(copy.deepcopy(reference))
    calls = []
    torch_lrn = torch.nn.functional.local_response_norm
    monkeypatch.setattr(torch.nn.functional, "local_response_norm", lambda *a, **k: calls.append(1) or torch_lrn(*a, **k))
    images = torch.randn(2, 3, 99, 99)
    torch.testing.assert_close(levered(images), reference(images))
    assert len(calls) == sum(isinstance(m, LocalResponseNorm) for m in levered.modules()) == 2


def test_the_fixed_whitening_bias_lever_trains_all_but_that_bias(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    step_levers = importlib.import_module("step_levers")
    throughput = importlib.import_module("throughput")
    torch = pytest.importorskip("torch")
    from cnnlab.models import create_model
    from cnnlab.models.layers import fix_whitening_biases

    torch.manual_seed(0)
    model = fix_whitening_biases(create_model("airbench", widths=[8, 8, 8]).train())
    before = {name: value.detach().clone() for name, value in model.named_parameters()}
    step_levers.bare_training_step(model, throughput.Case.parse("airbench", 4))()
    changed = {name for name, value in model.named_parameters() if not torch.equal(value, before[name])}
    assert changed == set(before) - {"features.0.bias"}


def test_first_convolutions_in_nchw_change_the_layout_not_the_result(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    step_levers = importlib.import_module("step_levers")
    torch = pytest.importorskip("torch")
    from cnnlab.models import create_model

    torch.manual_seed(0)
    reference = create_model("airbench", widths=[8, 8, 8]).eval().to(memory_format=torch.channels_last)
    mixed = step_levers.first_convolutions_nchw(copy.deepcopy(reference), 2)
    seen = []
    for conv in (m for m in mixed.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_hook(lambda module, args, output: seen.append(args[0].is_contiguous()))
    images = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(mixed(images), reference(images))
    assert seen == [True, True] + [False] * (len(seen) - 2) and len(seen) == 7  # whitening + 6 convolutions
    with pytest.raises(Exception, match="nchw-first:K"):
        step_levers.lever("nchw-first:0")
    for refused in ("scale:0", "scale:1.5", "scale:big"):
        with pytest.raises(Exception, match=r"scale:F \(0 < F <= 1\)"):
            step_levers.lever(refused)
    case = step_levers.Case.parse("airbench", 4)
    assert step_levers.scaled_case(case, 0.75).input == (24, 24, 3)


@pytest.mark.parametrize(("script", "args", "message"), [
    ("time_to_accuracy.py", ["--data", "digits", "--target", "0.5", "--set", "optimizer.lrr=1"],
     "unknown key 'optimizer.lrr'"),
    # one script's refusal is enough for the fast suite: each starts its own interpreter twice
    pytest.param("step_levers.py", ["--model", "airbench", "--options", "widths=2", "--levers", "nchw"],
                 "model airbench: option 'widths' must be a list; got 2", marks=pytest.mark.slow),
])
def test_a_refused_input_ends_a_benchmark_in_one_line(script, args, message):
    result = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 2 and line.startswith(f"{script}: error: ") and message in line, result.stderr


@pytest.mark.slow
def test_time_to_accuracy_runs(tmp_path):
    out = run("benchmarks/time_to_accuracy.py", "--data", "digits", "--target", "0.5", "--epochs", "3",
              "--evaluate-from", "2", "--tta", "flip-shift", "--set", "data.subset=400", "--out", str(tmp_path))
    assert "val accuracy per epoch, from epoch 2:" in out and "training batches alone" in out
    assert "flags:" in out


@pytest.mark.slow  # 15 s in its own interpreter; CI's clean run neared its 8 minutes
def test_time_to_accuracy_measures_the_weights_the_run_keeps(tmp_path):
    """With an EMA of the weights, the accuracy it reports is the averaged weights' (those
    best.pt keeps and the run's own evaluation reads), not the raw model's."""
    out = run("benchmarks/time_to_accuracy.py", "--data", "digits", "--model", "mlp", "--target", "0.999",
              "--epochs", "1", "--set", "ema=0.99", "--set", "data.subset=400", "--set", "report=false",
              "--out", str(tmp_path))
    reported = float(out.split("from epoch 1: ", 1)[1].split()[0])
    (run_dir,) = tmp_path.iterdir()
    assert reported == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["val"]["accuracy"])


@pytest.mark.slow  # a benchmark's smoke test, like the others here: 11 s
def test_cifar10_method_study_runs(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / split / name / f"{i}.jpg")
    out = run("benchmarks/cifar10_method_study.py", str(tmp_path), "--device", "cpu",
              "recipe epochs=1 batch=4", "muon preset=muon epochs=2 batch=4 whiten_bias_epochs=1")
    lines = out.strip().splitlines()
    assert "flags:" in lines[0]
    results = [json.loads(line) for line in lines[1:]]
    assert [r["run"] for r in results] == ["recipe", "muon"]
    assert all(0 <= r[views] <= 1 for r in results for views in ("none", "flip", "six"))
    assert results[1]["settings"]["optimizer"] == "muon"


@pytest.mark.parametrize(("tokens", "message"), [(["lr=0.1", "colour=red"], "colour=red: unknown setting"),
                                                 (["preset=fast"], "preset=fast: unknown setting"),
                                                 (["lr=fast"], "lr=fast: lr takes a number")])
def test_cifar10_method_study_refuses_bad_settings(monkeypatch, tokens, message):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    study = importlib.import_module("cifar10_method_study")
    with pytest.raises(ValueError, match=message):
        study.settings(tokens)
    assert study.settings(["preset=muon", "batch=64"])["optimizer"] == "muon"


@pytest.mark.slow  # two interpreter starts with the training stack: 15 s for 4 steps
def test_dropout_masks_runs():
    out = run("benchmarks/dropout_masks.py", "--model", "alexnet-mnist", "--windows", "1", "--steps", "1",
              "--precision", "bf16")
    assert "alexnet-mnist 28, batch 64: torch " in out and "cnnlab, 16-bit masks " in out and "flags:" in out
    assert "8-bit masks against 16-bit" in out and "bf16" in out


@pytest.mark.slow
def test_matmul_paths_lists_the_layers_that_take_onednn_matmul():
    out = run("benchmarks/matmul_paths.py", "--model", "mlp", "simple-cnn", "lenet5", "--windows", "1", "--steps", "1")
    lines = [line for line in out.splitlines() if "GFLOP/s" in line]
    assert [line.split(" (")[0] for line in lines] == [
        "mlp 28 classifier.0", "mlp 28 classifier.3", "simple-cnn 32 features.12", "simple-cnn 32 classifier.0"], out
    assert "flags:" in out


@pytest.mark.slow
def test_profile_step_runs():
    out = run("benchmarks/profile_step.py", "--model", "lenet5", "--steps", "1", "--rows", "5")
    assert "img/s under the profiler" in out and "aten::" in out


def test_resized_gtsrb_test_keeps_the_original_boxes(tmp_path):
    from PIL import Image

    source, run_dir = tmp_path / "gtsrb", tmp_path / "run"
    (source / "Train" / "1").mkdir(parents=True)
    run_dir.mkdir()
    lines = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for i in range(3):
        Image.new("RGB", (40 + i, 50), (i, 0, 0)).save(source / "Train" / "1" / f"{i}.png")
        lines.append(f"{40 + i},50,5,6,30,40,1,Train/1/{i}.png")
    (source / "Train.csv").write_text("\n".join(lines) + "\n")
    (run_dir / "split.json").write_text('{"train": ["Train/1/0.png"], "val": ["Train/1/1.png", "Train/1/2.png"]}')
    run("benchmarks/resized_gtsrb_test.py", str(run_dir), str(source), str(tmp_path / "out"))
    rows = (tmp_path / "out" / "Test.csv").read_text().splitlines()
    assert rows[1:] == ["41,50,5,6,30,40,1,Test/00000.png", "42,50,5,6,30,40,1,Test/00001.png"]
    assert Image.open(tmp_path / "out" / "Test" / "00001.png").size == (32, 32)


def test_hub_parquet_writes_a_folder_as_the_hub_stores_it(tmp_path):
    from cnnlab.data import load_dataset
    from conftest import make_image_folder

    make_image_folder(tmp_path / "images" / "train")
    make_image_folder(tmp_path / "images" / "test")
    run("benchmarks/hub_parquet.py", str(tmp_path / "images"), str(tmp_path / "hub"))
    assert sorted(p.name for p in (tmp_path / "hub" / "plain_text").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    files = load_dataset(f"folder:{tmp_path / 'images'}", (16, 16), None, 0.0, 0)
    tables = load_dataset(f"hf:{tmp_path / 'hub'}", (16, 16), None, 0.0, 0)
    assert tables.classes == files.classes
    for split in ("train", "test"):
        np.testing.assert_array_equal(tables.splits[split].labels, files.splits[split].labels)
        np.testing.assert_array_equal(tables.splits[split].pixels(), files.splits[split].pixels())


@pytest.mark.slow
def test_inference_speed_runs(tmp_path):
    pytest.importorskip("onnxruntime")
    from conftest import make_image_folder, run_cli

    images = make_image_folder(tmp_path / "images", classes=3, per_class=6)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{images}", "--image-size", "20x20",
            "--epochs", "1", "--out", tmp_path, "--name", "r", "--quiet")
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    out = run("benchmarks/inference_speed.py", str(tmp_path / "r"), str(images), "--repeats", "1")
    assert "onnxruntime" in out and "18 images" in out and "img/s" in out
    import torch

    from cnnlab.runtime import resolve_precision

    # the model alone is timed as evaluate runs it: in the run's precision, bf16 where auto chose it
    assert f"PyTorch in {resolve_precision('auto', torch.device('cpu'))} (the run's precision" in out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before  # the run is left alone

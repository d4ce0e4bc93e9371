"""The package's structure as promised in the README: imports point down its layers and never
in a circle; start-up imports only what a command needs; the run directory owns its files."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import Augment, BatchLoader, Preprocessing, Split
from conftest import REPO, run_cli

PACKAGE = REPO / "src" / "cnnlab"
# bottom to top; a module may import its own layer's modules of the same package, and lower layers
LAYERS = [
    {"errors", "io", "registry", "config", "runtime", "checkpoint", "launcher"},
    {"data", "models"},
    {"runs"},
    {"reports"},
    {"evaluation"},
    {"training", "export"},
    {"api", "cli", "completion", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The cnnlab modules ``path`` imports, at any depth of its code, as absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("cnnlab"):
                modules = [f"{target}.{alias.name}" for alias in node.names]
                found.update(m if (PACKAGE.parent / (m.replace(".", "/") + ".py")).is_file()
                             or (PACKAGE.parent / m.replace(".", "/")).is_dir() else target
                             for m in modules)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cnnlab"))
    found.discard(name)
    return found


def test_imports_point_down_the_layers_and_never_in_a_circle():
    graph = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}
    upward = [(a, b) for a, targets in graph.items() for b in targets
              if b in graph and layer_of(b) > layer_of(a)]
    assert not upward, f"imports that climb back up: {upward}"
    # no cycles among modules (a package's __init__ re-exporting its own modules is not one)
    edges = {a: {b for b in targets if b in graph and a != b.rsplit(".", 1)[0]}
             for a, targets in graph.items()}
    seen, stack = {}, []

    def visit(node):
        seen[node] = "open"
        stack.append(node)
        for nxt in edges[node]:
            if seen.get(nxt) == "open":
                raise AssertionError(f"import cycle: {stack[stack.index(nxt):] + [nxt]}")
            if nxt not in seen:
                visit(nxt)
        stack.pop()
        seen[node] = "done"

    for node in edges:
        if node not in seen:
            visit(node)


def python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_help_and_version_do_not_import_torch():
    code = ("import sys\nfrom cnnlab.cli import main\n"
            "for argv in (['--version'], ['--help'], ['train', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_the_python_api_is_what_completion_lists_and_import_loads_no_torch():
    """The API is loaded on first use (so the CLI can choose its allocator before torch), and
    dir(cnnlab), which a notebook's tab completion lists, showed CnnlabError, TYPE_CHECKING,
    annotations and errors: none of train, evaluate, predict."""
    code = ("import sys, cnnlab\nprint(' '.join(name for name in dir(cnnlab) if not name.startswith('_')))\n"
            "print('torch' in sys.modules)")
    result = python(code)
    assert result.returncode == 0, result.stderr
    listed, torch_loaded = result.stdout.strip().splitlines()[-2:]
    import cnnlab

    assert listed.split() == sorted(cnnlab.__all__) and torch_loaded == "False"
    assert all(callable(getattr(cnnlab, name)) for name in cnnlab.__all__)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--image-size",
            "32x32", "--crop", "28x28", "--out", out, "--name", "r", "--quiet")
    return out / "r"


def test_predict_imports_neither_scikit_learn_nor_matplotlib_and_main_keeps_the_process(digits_run, tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8), 90).save(image)
    code = ("import os, sys\nfrom cnnlab.cli import main\npid = os.getpid()\n"
            f"code = main(['predict', {str(digits_run)!r}, {str(image)!r}, '--format', 'json'])\n"
            "print(code, os.getpid() == pid, 'sklearn' in sys.modules, 'matplotlib' in sys.modules)")
    # no LD_PRELOAD: where tcmalloc is installed, a console run would restart itself here
    result = python(code, LD_PRELOAD="", CNNLAB_ALLOCATOR="tcmalloc")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 True False False"


@pytest.mark.parametrize("choice, looked_for_tcmalloc, warned", [
    ("system", False, False), ("System", False, False), ("tcmalloc", True, False), ("bogus", True, True)])
def test_the_allocator_choice_is_read_or_named(monkeypatch, capsys, choice, looked_for_tcmalloc, warned):
    from cnnlab import launcher

    looked = []
    monkeypatch.setenv("CNNLAB_ALLOCATOR", choice)
    monkeypatch.setattr(launcher, "fast_allocator", lambda: looked.append(True))  # None: no restart
    launcher.reexec_with_fast_allocator(["models"])
    assert bool(looked) == looked_for_tcmalloc
    expected = f"cnnlab: warning: CNNLAB_ALLOCATOR={choice}: expected tcmalloc or system; using tcmalloc\n"
    assert capsys.readouterr().err == (expected if warned else "")


def test_export_of_a_cropped_run_takes_the_crop(digits_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = run_cli("export", digits_run, "--out", tmp_path / "m.onnx").stdout.strip()
    session = ort.InferenceSession(path)
    assert session.get_inputs()[0].shape[1:] == [1, 28, 28]
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["input_size"]) == [28, 28, 1] and json.loads(meta["decode_size"]) == [32, 32]
    logits = session.run(None, {"images": np.zeros((2, 1, 28, 28), dtype=np.float32)})[0]
    assert logits.shape == (2, 10)


def test_run_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        run_cli("train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--out", tmp_path,
                "--name", "r", "--quiet", report=True)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert {"report.html", "metrics.json", "best.pt", "last.pt", "curves.png"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_a_bad_monitor_fails_before_any_decoding_or_folder(tmp_path, image_folder, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    result = run_cli("train", "--data", f"folder:{image_folder}", "--image-size", "20x20",
                     "--set", "checkpoint.monitor=val_acc", "--out", tmp_path / "runs", check=False)
    assert result.returncode == 2
    assert "checkpoint.monitor: 'val_acc' is not a logged metric; choose from: loss, accuracy" in result.stderr
    assert not (tmp_path / "runs").exists() and not cache.exists()


def tiny_split(count=10, size=12):
    images = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return Split(images, np.arange(count) % 3, [str(i) for i in range(count)])


def test_batches_of_any_epoch_come_from_the_seed_alone():
    split = tiny_split()
    preprocessing = Preprocessing([0.5] * 3, [0.25] * 3, (10, 10))
    augment = Augment(hflip=True, rotate=10.0, brightness=0.1)
    walked = BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=7)
    for epoch in range(3):
        walked.set_epoch(epoch)
        batches = list(walked)
    fresh = BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=7)
    fresh.set_epoch(2)
    for (x, y), (x2, y2) in zip(batches, fresh, strict=True):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    other = BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=8)
    assert not torch.equal(next(iter(other))[0], next(iter(fresh))[0])


def test_ranks_share_each_batch_exactly():
    split = tiny_split(11)
    preprocessing = Preprocessing([0.5] * 3, [0.25] * 3, (10, 10))
    augment = Augment(hflip=True, pad_crop=2, translate=0.1)
    whole = list(BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=3))
    ranks = [list(BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=3, rank=r,
                              world_size=2)) for r in range(2)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *ranks, strict=True):
        torch.testing.assert_close(torch.cat([x0, x1]), x)
        assert torch.equal(torch.cat([y0, y1]), y)

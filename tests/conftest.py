from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from PIL import Image

from cnnlab.training.callbacks import Callback

# CI (.ci/run) draws the same examples every run, so that a red run is the change's and not a
# new draw's; elsewhere hypothesis draws new ones each run, which is how it finds bugs
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CNNLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
MNIST = SHARED / "mnist"


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu skip, saying why, on a machine without CUDA (CI's)."""
    if torch.cuda.is_available():
        return
    no_cuda = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(no_cuda)


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST} (set CNNLAB_SHARED_DATASETS)")
    return MNIST


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, fresh_process: bool = False,
            report: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``cnnlab`` command line: in this process (its ``main``, as a Python caller
    would; seconds of imports saved per call) or, with ``fresh_process``, as ``python -m
    cnnlab`` in a new one. Training skips the pictures and report.html unless ``report``."""
    args = [str(a) for a in args]
    if args[:1] == ["train"] and not report and "--no-report" not in args:
        args.append("--no-report")
    if fresh_process:
        result = subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=cwd, capture_output=True,
                                text=True, errors="surrogateescape", timeout=600)
    else:
        result = _run_main(args, cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"cnnlab {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def _run_main(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess:
    from cnnlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    # warnings shown once per place in a process would hide them from every later call
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.simplefilter("default")
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os.chdir(previous)
    return subprocess.CompletedProcess(["cnnlab", *args], code, out.getvalue(), err.getvalue())


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def make_image_folder(root: Path, classes: int = 3, per_class: int = 12, size: int = 20,
                      seed: int = 0) -> Path:
    """Class folders of PNGs whose class is visible in the pixels (a bright band per class)."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            band = slice(c * size // classes, (c + 1) * size // classes)
            pixels[band, :, :] = 230
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_raises():
    """A shell starts a background job (``make test &``) with Ctrl-C ignored, and Python keeps
    an ignored SIGINT ignored: the tests that press Ctrl-C saw nothing happen and failed. They
    test cnnlab's answer to Ctrl-C, so the suite takes Python's own handler whoever started it
    (CLI subprocesses then start with the default one too)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True, scope="session")
def private_decode_cache(tmp_path_factory):
    """Each test session decodes into its own cache, and keeps arrays and extracted archives in
    its own data home (CLI subprocesses inherit both). Session-wide, so that module fixtures,
    which run before any test's own fixtures, never write into the user's (they did: 145
    caches in ~/.cache/cnnlab after a day of test runs). The Hugging Face cache that ``hf:NAME``
    reads is the session's too, empty: a test never reads what the machine downloaded."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "decode-cache"))
        patch.setenv("CNNLAB_DATA", str(tmp_path_factory.getbasetemp() / "data-home"))
        patch.setenv("HF_HUB_CACHE", str(tmp_path_factory.getbasetemp() / "hf-hub-cache"))
        yield


class EpochSnapshots(Callback):
    """A copy of ``read(trainer)`` (a tensor) when training begins and after every epoch."""

    def __init__(self, read):
        self.read = read
        self.values = []

    def on_train_begin(self, trainer):
        self.values.append(self.read(trainer).detach().clone())

    def on_epoch_end(self, trainer, epoch, logs):
        self.values.append(self.read(trainer).detach().clone())


@pytest.fixture
def file_server(tmp_path):
    """A plain HTTP server of a folder on 127.0.0.1, as a data set's or a model's web page is
    (tests never touch the network): (the folder, its URL)."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "www"
    served.mkdir()
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda self, *args: None})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()

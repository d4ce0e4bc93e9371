from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CNNLAB_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
MNIST = SHARED / "mnist"


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST files not found in {MNIST} (set CNNLAB_SHARED_DATASETS)")
    return MNIST


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real ``cnnlab`` command in a fresh process."""
    result = subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"cnnlab {' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


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


@pytest.fixture(autouse=True)
def private_decode_cache(tmp_path_factory, monkeypatch):
    """Each test session decodes into its own cache (CLI subprocesses inherit it)."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "decode-cache"))

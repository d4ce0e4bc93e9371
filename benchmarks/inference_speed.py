"""Evaluation and prediction speed: a run's model on a folder of images, in images per second,
against onnxruntime on the same model exported by `cnnlab export`.

    python benchmarks/inference_speed.py RUN FOLDER [--data SPEC]

Rows, all on the same images: the whole commands as users type them (`cnnlab predict RUN
FOLDER`, and `cnnlab evaluate RUN --data SPEC`, by default folder:FOLDER, with an empty decode
cache: start-up, decoding, the model, metrics and pictures); decoding alone (Pillow, every
core); and the model alone on standardised batches already in memory: PyTorch eager as
trained, and with its BatchNorms folded (as evaluate and predict run it), against onnxruntime,
the reference measured in the same run. The run is copied to a temporary folder first, so its
own files are never touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from throughput import exit_on_refused_input

from cnnlab.data import BatchLoader, Split
from cnnlab.data.images import decode_many
from cnnlab.evaluation.artifacts import inference_model, load_artifacts
from cnnlab.evaluation.predict import expand_inputs
from cnnlab.export import export_onnx
from cnnlab.runtime import cpu_text


def best_of(repeats: int, work) -> float:
    """The median seconds of ``repeats`` calls, after one untimed warm-up call."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def command_seconds(*args: str, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnlab", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("folder", type=Path, help="images (searched recursively)")
    parser.add_argument("--data", help="the same images as a data source for evaluate (default folder:FOLDER)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    try:
        import onnxruntime
    except ImportError:
        sys.exit("inference_speed.py: needs onnxruntime (pip install 'cnnlab[onnx]')")

    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("evaluations", "*.onnx"))
        env = {**os.environ, "CNNLAB_CACHE": str(Path(scratch) / "cache")}
        paths = [path for path, _ in expand_inputs([str(args.folder)])]
        count = len(paths)
        artifacts = load_artifacts(run)
        prep = artifacts.preprocessing

        rows = {}
        rows["cnnlab predict RUN FOLDER (whole command)"] = command_seconds(
            "predict", str(run), str(args.folder), "--format", "csv", env=env)
        rows["cnnlab evaluate RUN --data SPEC (whole command, empty cache)"] = command_seconds(
            "evaluate", str(run), "--data", args.data or f"folder:{args.folder}", "--format", "json", env=env)
        images = None

        def decode():
            nonlocal images
            images, kept, _ = decode_many(paths, prep.image_size, prep.channels)
            images = images[kept]

        rows["decoding alone (Pillow, every core)"] = best_of(1, decode)
        split = Split(images, np.zeros(len(images), dtype=np.int64), [str(i) for i in range(len(images))])
        batches = [batch for batch, _ in BatchLoader(split, args.batch_size, prep)]
        plain = artifacts.model.to(memory_format=torch.channels_last).eval()
        folded, runtime = inference_model(artifacts, "cpu")

        def torch_model(model):
            with torch.inference_mode(), runtime.autocast():  # in the run's precision, as evaluate runs it
                for batch in batches:
                    model(batch)

        session = onnxruntime.InferenceSession(str(export_onnx(run, Path(scratch) / "m.onnx")),
                                               providers=["CPUExecutionProvider"])
        arrays = [batch.contiguous().numpy() for batch in batches]

        def onnx_model():
            for array in arrays:
                session.run(None, {"images": array})

        rows["model alone: PyTorch eager, as trained"] = best_of(args.repeats, lambda: torch_model(plain))
        model_torch = best_of(args.repeats, lambda: torch_model(folded))
        model_onnx = best_of(args.repeats, onnx_model)
        rows["model alone: PyTorch eager, BatchNorm folded (what evaluate and predict run)"] = model_torch
        rows["model alone: onnxruntime on the exported model (reference)"] = model_onnx

    print(f"CPU {cpu_text()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"allocator: {'tcmalloc' if 'tcmalloc' in os.environ.get('LD_PRELOAD', '') else 'glibc'}")
    print(f"{count} images of {args.folder}, model {artifacts.checkpoint['model']['name']} at "
          f"{prep.input_size[0]}x{prep.input_size[1]}x{prep.channels}, batch {args.batch_size}, PyTorch in "
          f"{runtime.precision} (the run's precision, as evaluate and predict run it; onnxruntime in fp32)")
    print("| what | seconds | img/s |")
    print("|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.2f} | {count / seconds:,.0f} |")
    print(f"PyTorch (folded) / onnxruntime, model alone: {model_onnx / model_torch:.2f}x the reference's speed")


if __name__ == "__main__":
    exit_on_refused_input(main)

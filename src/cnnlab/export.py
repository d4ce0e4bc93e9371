"""Export of a run's best model: ONNX (dynamic batch axis; class names and preprocessing in the
metadata, so the file alone is enough to serve the model; the input is what the model takes:
the crop of a run trained on crops, not the decoded image), and safetensors (the weights in a
format that holds tensors only, with the model's spec, classes and preprocessing as metadata:
`--weights FILE.safetensors` reads it back)."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from . import runs
from .config import normalization_text
from .errors import CnnlabError
from .evaluation.artifacts import load_artifacts
from .io import write_atomic

OPSETS = (7, 20)
"""The ONNX opsets torch's TorchScript exporter writes (torch.onnx's ONNX_MIN_OPSET and
ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET; above them it warns, then writes or fails)."""


def export_onnx(run_path: str | Path, out: str | Path | None = None, opset: int = 17) -> Path:
    """Write ``model.onnx`` (input ``images``: normalised float N x C x H x W; output ``logits``)."""
    try:
        import onnx
    except ImportError:
        raise CnnlabError("export --format onnx: needs the onnx package (pip install 'cnnlab[onnx]')") from None
    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise CnnlabError.about("opset", f" {opset}: torch's ONNX exporter writes opsets {OPSETS[0]} to {OPSETS[1]}")
    artifacts = load_artifacts(run_path)
    run, model, prep = artifacts.run, artifacts.model, artifacts.preprocessing
    out = runs.refuse_run_file(out or run.directory.file(runs.ONNX), "an ONNX model", (".onnx",), own=(runs.ONNX,))
    height, width = prep.input_size
    example = torch.zeros(1, prep.channels, height, width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter needs no extra packages; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        # opsets up to 8 keep the weights as graph inputs, which the exporter announces
        warnings.filterwarnings("ignore", message="Setting 'keep_initializers_as_inputs=False'")
        try:
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        except RuntimeError as exc:  # the opset lacks one of the model's operators
            raise CnnlabError.about("opset", f" {opset}: torch's ONNX exporter cannot write it: "
                                    f"{str(exc).strip().splitlines()[0]}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "classes": json.dumps(run.classes),
        "descriptions": json.dumps(run.descriptions),
        "mean": json.dumps(list(prep.mean)),
        "std": json.dumps(list(prep.std)),
        "normalize": prep.normalize,
        "input": f"float32 NCHW, {normalization_text(prep.normalize, prep.mean, prep.std)}",
        "input_size": json.dumps([height, width, prep.channels]),
        "decode_size": json.dumps(list(prep.image_size)),
        "model": artifacts.checkpoint["model"]["name"],
        "loss": artifacts.loss.name,
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    return write_atomic(out, lambda handle: handle.write(data))


def export_safetensors(run_path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.safetensors``: the best weights, and as metadata the model (name, options,
    classes, input), the class names and their descriptions, and the preprocessing, each as JSON."""
    try:
        from safetensors.torch import save
    except ImportError:
        raise CnnlabError("export --format safetensors: needs the safetensors package "
                          "(pip install 'cnnlab[safetensors]')") from None
    artifacts = load_artifacts(run_path)
    out = runs.refuse_run_file(out or artifacts.run.directory.file(runs.SAFETENSORS), "a weights file", (".safetensors",),
                               own=(runs.SAFETENSORS,))
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in artifacts.model.state_dict().items()}
    metadata = {"format": "cnnlab-safetensors/1", "model": json.dumps(artifacts.checkpoint["model"]),
                "classes": json.dumps(artifacts.classes),
                "descriptions": json.dumps(artifacts.run.descriptions),
                "preprocessing": json.dumps(artifacts.preprocessing.to_dict()),
                "loss": json.dumps(artifacts.loss.spec())}
    data = save(state, metadata=metadata)
    return write_atomic(out, lambda handle: handle.write(data))

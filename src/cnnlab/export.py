"""ONNX export of a run's best model: dynamic batch axis, class names and preprocessing in the
metadata, so the file alone is enough to serve the model."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from ..errors import CnnlabError
from ..io import write_atomic


def export_onnx(run_path: str | Path, out: str | Path | None = None, opset: int = 17) -> Path:
    """Write ``model.onnx`` (input ``images``: normalised float N x C x H x W; output ``logits``)."""
    from ..runs import load_run

    try:
        import onnx
    except ImportError:
        raise CnnlabError("export --format onnx: needs the onnx package (pip install 'cnnlab[onnx]')") from None
    run = load_run(run_path)
    model, checkpoint = run.load_model()
    prep = checkpoint["preprocessing"]
    height, width = prep["image_size"]
    example = torch.zeros(1, prep["channels"], height, width)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter needs no extra packages; the dynamo one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "classes": json.dumps(run.classes),
        "mean": json.dumps(prep["mean"]),
        "std": json.dumps(prep["std"]),
        "input": "float32 NCHW, pixels/255 normalised with mean and std",
        "image_size": json.dumps([height, width, prep["channels"]]),
        "model": checkpoint["model"]["name"],
        "loss": checkpoint["loss"]["name"],
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    target = Path(out) if out else run.path / "model.onnx"
    return write_atomic(target, lambda handle: handle.write(proto.SerializeToString()))

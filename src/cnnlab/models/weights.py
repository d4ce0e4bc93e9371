"""Loading weights: a run's checkpoint or a plain state dict (torchvision's VGG-16 file loads
into the convolutional base by name). Keys and shapes are checked; the classifier head is
re-initialised when only its class count differs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import CnnlabError
from ..training.checkpoint import load_checkpoint
from .registry import create_model

CHECKPOINT_FORMAT = "cnnlab-checkpoint/1"


def model_spec(model: nn.Module, name: str, options: dict) -> dict:
    return {"name": name, "options": dict(options), "num_classes": model.num_classes,
            "in_channels": model.in_channels, "input_size": list(model.input_size)}


def model_from_checkpoint(checkpoint: dict, path: Path) -> nn.Module:
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CnnlabError(f"{path}: not a cnnlab run checkpoint")
    spec = checkpoint["model"]
    model = create_model(spec["name"], spec["num_classes"], spec["in_channels"],
                         tuple(spec["input_size"]), **spec["options"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    payload = load_checkpoint(path)
    state = payload.get("state_dict", payload) if payload.get("format") == CHECKPOINT_FORMAT else payload
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CnnlabError(f"{path}: not a state dict (expected parameter names mapped to tensors)")
    return state


def load_weights(model: nn.Module, path: str | Path, log: Callable[[str], None] = print) -> None:
    """Copy the tensors of ``path`` into ``model``.

    Every key of the model outside the classifier head must be in the file with the same shape,
    otherwise the load fails listing all mismatches. Head tensors that are missing or of
    another shape (another class count) keep their fresh initialisation, and the log says so.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    heads = model.head_prefixes() if hasattr(model, "head_prefixes") else ()
    in_head = lambda key: key.startswith(heads)  # noqa: E731
    problems, skipped_head, loaded = [], [], {}
    for key, tensor in own.items():
        if key not in state:
            (skipped_head if in_head(key) else problems).append(f"missing {key}")
        elif state[key].shape != tensor.shape:
            message = f"{key}: file {tuple(state[key].shape)}, model {tuple(tensor.shape)}"
            (skipped_head if in_head(key) else problems).append(message)
        else:
            loaded[key] = state[key]
    unexpected = [k for k in state if k not in own and not in_head(k)]
    problems += [f"unexpected {k}" for k in unexpected]
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CnnlabError(f"--weights {path}: does not fit the model ({len(problems)} mismatches): {shown}")
    if skipped_head:
        # a half-loaded head would pair new and old layers: start the whole head fresh
        loaded = {k: v for k, v in loaded.items() if not in_head(k)}
        log(f"weights {path}: the classifier head does not match ({skipped_head[0]}); "
            "it is re-initialised and the rest is loaded")
    model.load_state_dict({**own, **loaded})
    log(f"weights {path}: loaded {len(loaded)} of {len(own)} tensors")

"""Loading weights: a run's checkpoint or a plain state dict (torchvision's VGG-16 file loads
into the convolutional base by name). Keys and shapes are checked; the output layer is
re-initialised when only the class count differs, the whole classifier when its dense layers do."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..data.download import Remote, fetch_url, md5_of
from ..data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, check_normalize
from ..errors import CnnlabError, listed
from . import keras_weights
from .factory import create_model

CHECKPOINT_FORMAT = "cnnlab-checkpoint/1"


def model_spec(model: nn.Module, name: str, options: dict) -> dict:
    return {"name": name, "options": dict(options), "num_classes": model.num_classes,
            "in_channels": model.in_channels, "input_size": list(model.input_size)}


def model_from_checkpoint(checkpoint: dict, path: Path) -> nn.Module:
    """The model a run checkpoint describes, with its weights, in evaluation mode."""
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CnnlabError(f"{path}: not a cnnlab run checkpoint")
    try:
        spec = checkpoint["model"]
        size = tuple(int(v) for v in spec["input_size"])
        model = create_model(spec["name"], int(spec["num_classes"]), int(spec["in_channels"]),
                             size, **dict(spec["options"]))
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"{path}: damaged checkpoint, its model cannot be rebuilt ({first})") from None
    if getattr(model, "features_frozen", False):
        # a frozen base is how the run trained, not what the model computes: to fine-tune it
        # further, the model trains whole
        model.freeze_features(False)
    return model.eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Parameter names -> tensors from a state dict, a cnnlab checkpoint or a safetensors file
    (each read without running code)."""
    if Path(path).suffix == ".safetensors":
        return read_safetensors(Path(path))
    payload = load_checkpoint(path)
    state = payload.get("state_dict", payload) if payload.get("format") == CHECKPOINT_FORMAT else payload
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CnnlabError(f"{path}: not a state dict (expected parameter names mapped to tensors)")
    return state


_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
KERAS_IMAGENET = {
    "vgg16": Remote(_KERAS_APPLICATIONS + "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                    "64373286793e3c8b2b4e3219cbf3544b"),
    "vgg16-transfer": Remote(_KERAS_APPLICATIONS + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                             "6d6bbae143d832006294945121d1f1fc"),
}
"""The ImageNet weights Keras' applications download (``VGG16(weights="imagenet")``, with
and without the classifier) and the md5 Keras checks them by, by the cnnlab models they load
into."""


@dataclass(frozen=True)
class InputNormalization:
    """How the inputs of pretrained weights were standardised: ``mode`` as ``data.normalize``
    names it, with the per-channel mean and std of pixels on the 0-1 scale where it has them;
    ``published``: a published file's, which every run from it takes unless told otherwise."""
    mode: str
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    published: bool = False


IMAGENET_TORCHVISION = InputNormalization("imagenet", IMAGENET_MEAN, IMAGENET_STD, published=True)
"""torchvision's ImageNet models: pixels/255 standardised with ImageNet's mean and std."""
# Keras' VGG16 preprocess_input ("caffe"): BGR pixels minus ImageNet's mean on the 0-255 scale,
# not scaled. keras_weights turns the first convolution of these files to RGB, so the same
# input is (x/255 - mean/255) / (1/255) in RGB.
IMAGENET_CAFFE = InputNormalization("weights", (123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3,
                                    published=True)
PUBLISHED_NORMALIZATION = {
    "vgg16-397923af.pth": IMAGENET_TORCHVISION,
    "vgg16_bn-6c64b313.pth": IMAGENET_TORCHVISION,
    **{remote.filename: IMAGENET_CAFFE for remote in KERAS_IMAGENET.values()},
}
"""The input normalisation of published weight files cnnlab loads, by the name they are
published under (as timm's pretrained configs and Keras' ``preprocess_input`` record it)."""


def published_normalization(path: Path) -> InputNormalization | None:
    """The input normalisation of a published weight file: by its published name, or, for a
    Keras file under another name (saved as imagenet.h5, or by a downloader under the URL's
    hash), by the md5 Keras checks it by, since its first convolution takes BGR pixels."""
    if path.name in PUBLISHED_NORMALIZATION:
        return PUBLISHED_NORMALIZATION[path.name]
    if path.suffix.lower() not in (".h5", ".hdf5") or not path.is_file():  # as Keras publishes them
        return None
    status = path.stat()
    md5 = _file_md5(path.resolve(), status.st_size, status.st_mtime_ns)
    return next((PUBLISHED_NORMALIZATION[remote.filename] for remote in KERAS_IMAGENET.values() if remote.md5 == md5),
                None)


@functools.lru_cache(maxsize=8)
def _file_md5(path: Path, size: int, modified_ns: int) -> str:
    """``path``'s md5, once for a file of this size and time (a run's start asks for its
    normalisation and loads its weights)."""
    return md5_of(path)


def input_normalization(path: str | Path) -> InputNormalization | None:
    """How the weights in ``path`` expect their inputs: a published file's normalisation (by
    its name, or a Keras file's md5), a Keras model's own scaling (a whole model's first
    Rescaling or Normalization layer), a cnnlab run's own (its checkpoint, or the safetensors
    file it exported), or None where the file does not say. A file that cannot be read says
    nothing here: loading it says what is wrong."""
    path = Path(path).expanduser()
    if path.suffix.lower() in keras_weights.SUFFIXES or path.name in PUBLISHED_NORMALIZATION:
        return published_normalization(path) or keras_model_normalization(path)
    preprocessing = cnnlab_record(path).get("preprocessing")
    if not isinstance(preprocessing, dict):
        return None
    mode = preprocessing.get("normalize", "dataset")
    try:
        if mode in ("dataset", "weights", "given"):  # the pixels the run's weights learnt from
            return InputNormalization("weights", tuple(map(float, preprocessing["mean"])),
                                      tuple(map(float, preprocessing["std"])))
        return InputNormalization(check_normalize(str(mode)))
    except (KeyError, TypeError, ValueError, CnnlabError):  # a damaged record, or a mode this version lacks
        return None


def keras_model_normalization(path: Path) -> InputNormalization | None:
    """A Keras model's own scaling of its inputs (a first Rescaling or Normalization layer),
    where the file holds the whole model; cnnlab's preprocessing takes it over, since the model
    was trained on what that layer gave."""
    scaling = keras_weights.input_scaling(path)
    return None if scaling is None else InputNormalization("weights", *scaling, published=True)


def trained_classes(path: str | Path) -> list[str] | None:
    """The classes the weights in ``path`` were trained on, where the file says (a cnnlab
    checkpoint, or the safetensors file a run exported)."""
    classes = cnnlab_record(Path(path).expanduser()).get("classes")
    return classes if isinstance(classes, list) and all(isinstance(c, str) for c in classes) else None


def cnnlab_record(path: Path) -> dict:
    """What a cnnlab checkpoint, or the safetensors file a run exported, records beside its
    tensors (its preprocessing, its classes); nothing for other files, or for one that cannot
    be read (loading it says what is wrong)."""
    if path.suffix.lower() in keras_weights.SUFFIXES:
        return {}
    if path.suffix == ".safetensors":
        return _exported_record(path)
    try:
        record = load_checkpoint(path, lazily=True)
    except CnnlabError:
        return {}
    return record if record.get("format") == CHECKPOINT_FORMAT else {}


def _exported_record(path: Path) -> dict:
    """The preprocessing and classes a safetensors file exported by cnnlab records in its
    metadata, as JSON text each."""
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        return {}
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        return {key: json.loads(metadata[key]) for key in ("preprocessing", "classes") if key in metadata}
    except (SafetensorError, OSError, ValueError):
        return {}


def resolve_weights(given: str, model_name: str) -> str:
    """The file a --weights value names: a path as given, an http(s) URL downloaded once into
    the data home, or ``imagenet``: the file Keras' applications use for the model, read from
    ~/.keras/models where Keras keeps it, else downloaded from where Keras does."""
    if given.lower() == "imagenet":
        if model_name not in KERAS_IMAGENET:
            raise CnnlabError.about("weights", f" imagenet: Keras publishes ImageNet weights for {' and '.join(KERAS_IMAGENET)} "
                                    f"among cnnlab's models, not {model_name}; give a weights file")
        remote = KERAS_IMAGENET[model_name]
        kept = Path.home() / ".keras" / "models" / remote.filename
        return str(kept if kept.is_file() else fetch_url(remote, "the local copy's path as the weights"))
    if given.startswith(("http://", "https://")):
        return str(fetch_url(Remote(given), "the local copy's path as the weights"))
    return given


def weights_for(model: nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict a --weights file gives ``model``: read as it is, or converted from a
    Keras .h5 file by the model's layer order."""
    path = Path(path).expanduser()  # a recipe's ~/weights.pt: only a shell expands ~
    if path.suffix.lower() in keras_weights.SUFFIXES:
        return keras_weights.keras_state_dict(path, model, bgr=published_normalization(path) is IMAGENET_CAFFE)
    return read_state_dict(path)


def load_weights(model: nn.Module, path: str | Path, log: Callable[[str], None] = print,
                 classes: Sequence[str] | None = None) -> str | None:
    """Copy the tensors of ``path`` into ``model``.

    Every key of the model outside the classifier must be in the file with the same shape,
    otherwise the load fails listing all mismatches. Where the file says it was trained on
    ``classes`` among others (a cnnlab run's), the output layer keeps their rows, each class its
    own. Where only the class count differs, or the file was trained on other classes, the
    output layer keeps its fresh initialisation and every other layer is loaded, as fine-tuning
    to new classes does; where the classifier's hidden layers differ too, the whole classifier
    starts afresh. The log says which, and so does the value returned (None where every
    tensor was loaded as the file holds it).
    """
    own = model.state_dict()
    loaded, afresh = matching_weights(model, weights_for(model, path), path, classes)
    note = f"weights {path}: {afresh}" if afresh else None
    if note:
        log(note)
    model.load_state_dict({**own, **loaded})
    log(f"weights {path}: loaded {len(loaded)} of {len(own)} tensors")
    return note


def matching_weights(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path,
                     classes: Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of ``state`` to load into ``model`` (shapes only are read, so a model on
    the meta device checks a file before any training starts), and what of the classifier
    starts afresh, in words (None where everything fits). Any mismatch outside the classifier
    is an error listing them all. ``classes``: the model's, against those the file says its
    weights were trained on: where the file's include them all, each class keeps its row of
    the output layer (the same classes, in another order, or some of them); else it starts
    afresh."""
    own = model.state_dict()
    heads = model.head_prefixes() if hasattr(model, "head_prefixes") else ()
    in_head = lambda key: key.startswith(heads)  # noqa: E731
    problems, head_mismatches, loaded = [], {}, {}
    for key, tensor in own.items():
        if key not in state:
            message = f"missing {key}"
        elif state[key].shape != tensor.shape:
            message = f"{key}: file {tuple(state[key].shape)}, model {tuple(tensor.shape)}"
        else:
            loaded[key] = state[key]
            continue
        if in_head(key):
            head_mismatches[key] = message
        else:
            problems.append(message)
    unexpected = [k for k in state if k not in own and not in_head(k)]
    problems += [f"unexpected {k}" for k in unexpected]
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise CnnlabError.about("weights", f" {path}: does not fit the model ({len(problems)} mismatches): {shown}")
    output = model.output_prefix() if hasattr(model, "output_prefix") else None
    only_output = output and all(key.startswith(output) for key in head_mismatches)
    trained = trained_classes(path) if classes is not None and only_output else None
    if trained is not None and trained != list(classes):
        outputs = {key: tensor for key, tensor in state.items() if key.startswith(output)}
        rows = [trained.index(name) for name in classes if name in trained]  # each class keeps the row that scored it
        kept = {key: tensor[rows] for key, tensor in outputs.items() if len(tensor) == len(trained)}
        if len(rows) == len(classes) and kept.keys() == outputs.keys() == {
                key for key in own if key.startswith(output)} and all(kept[k].shape == own[k].shape for k in kept):
            loaded.update(kept)
            return loaded, (f"the output layer was trained on {len(trained)} classes ({listed(trained, 5)}); "
                            f"the rows of these classes are kept ({listed(list(classes), 5)})")
        return ({k: v for k, v in loaded.items() if not k.startswith(output)},
                f"the output layer was trained on other classes ({listed(trained, 5)}; these: {listed(list(classes), 5)}); "
                "it is re-initialised and the rest is loaded")
    if not head_mismatches:
        return loaded, None
    if only_output:
        fresh, what = (output,), "the output layer"
    else:
        # old dense layers fed by new ones would learn from noise: the classifier starts whole
        fresh, what = heads, "the classifier"
    loaded = {k: v for k, v in loaded.items() if not k.startswith(fresh)}
    first = next(iter(head_mismatches.values()))
    return loaded, f"{what} does not match ({first}); it is re-initialised and the rest is loaded"


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise CnnlabError.about("weights", f" {path}: reading safetensors needs the safetensors package "
                                "(pip install 'cnnlab[safetensors]')") from None
    if not path.is_file():
        raise CnnlabError.about("weights", f" {path}: no such file")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CnnlabError.about("weights", f" {path}: not a readable safetensors file ({exc})") from None
    if not state:
        raise CnnlabError.about("weights", f" {path}: holds no tensors")
    return state

"""Keras HDF5 weight files as cnnlab state dicts: the Keras 2 layout of the files in
~/.keras/models (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, ``model.save_weights``
to ``.h5``), Keras 3's ``.weights.h5``, and the weights in Keras 3's ``.keras`` archive (what
``model.save`` and ``ModelCheckpoint`` write), for the networks Keras also builds (the VGG-16 base
and full network, the tutorials' nets). Layers are matched in order, kind by kind (convolution,
dense, BatchNorm), and their tensors converted: convolution kernels from (height, width, in,
out) to (out, in, height, width), dense kernels transposed, and the first dense layer after a
flatten reordered from Keras' channels-last flattening to PyTorch's channels-first one."""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CnnlabError

SUFFIXES = (".h5", ".hdf5", ".keras")
ARCHIVE_WEIGHTS = "model.weights.h5"
"""Where a .keras archive holds the weights, beside the model's config.json and metadata.json."""
LARGEST_WEIGHTS = 4 * 2**30
"""More than any network cnnlab builds holds (VGG-16: 0.55 GB in fp32): an archive's weights
are read into memory, so a larger member is refused, not inflated."""
NESTED_MODELS = ("Sequential", "Functional", "Model")
LARGEST_CONFIG = 16 * 2**20
"""A model's config.json is kilobytes (a VGG-16's: about 20 KB); a larger one is not read."""


def model_config(path: Path) -> dict:
    """A Keras model's config, where the file holds the whole model (a .keras archive's
    config.json; a legacy .h5 file of model.save, its model_config); else empty."""
    if path.suffix.lower() == ".keras":
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo("config.json").file_size > LARGEST_CONFIG:
                return {}
            return json.loads(archive.read("config.json"))
    try:
        import h5py
    except ImportError:
        return {}
    with h5py.File(path, "r") as handle:
        text = handle.attrs.get("model_config")
    return json.loads(text) if isinstance(text, str | bytes) else {}


@np.errstate(all="raise")  # a scale of 0 is no scaling to take over, not a warning
def input_scaling(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The mean and std, of pixels on the 0-1 scale, that a Keras model saved whole scales its
    0-255 inputs by itself, where its first layer does (the tutorials' Rescaling(1/255), or
    Normalization with its mean and variance in its config or, adapted, in its weights; random
    augmentation, Resizing and CenterCrop layers before it are looked past); else, or for a
    file that cannot be read, None (loading its weights says what is wrong)."""
    try:
        config = model_config(path)
        if not config:
            return None
        layer = _first_computing_layer(config["config"]["layers"])
        if layer is None:
            return None
        settings = layer["config"]
        if layer["class_name"] == "Rescaling":  # x * scale + offset = (x / 255 - mean) / std
            scale, offset = np.broadcast_arrays(np.atleast_1d(settings["scale"]).astype(float),
                                                np.atleast_1d(settings.get("offset", 0.0)).astype(float))
            mean, std = 0.0 - offset / (255 * scale), 1 / (255 * scale)  # 0.0 -: no -0 in a log line
        elif layer["class_name"] == "Normalization" and not settings.get("invert"):
            statistics = ((settings["mean"], settings["variance"]) if settings.get("mean") is not None
                          else _adapted_statistics(path, config, settings.get("name")))
            if statistics is None:
                return None
            mean, variance = np.broadcast_arrays(*(np.atleast_1d(np.asarray(s, dtype=float).ravel()) for s in statistics))
            mean, std = mean / 255, np.sqrt(variance) / 255
        else:
            return None
        if mean.ndim == 1 and np.isfinite([*mean, *std]).all() and (std > 0).all():
            return tuple(map(float, mean)), tuple(map(float, std))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError, RecursionError,
            KeyError, IndexError, TypeError, ValueError, AttributeError, FloatingPointError,  # h5py's among them
            CnnlabError):
        pass
    return None


def _adapted_statistics(path: Path, config: dict, name: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and variance an adapted Normalization layer (``Normalization().adapt(x)``, its
    config without them) keeps among its weights: in the legacy .h5 file under its name (as
    ``name/mean``, in its own group or a nested model's); in a .keras archive under a path of
    class names, not its own (``layers/normalization/vars``), so there only for the model's one
    Normalization layer. None where the file holds none."""
    try:
        import h5py
    except ImportError:  # loading the weights says h5py is needed
        return None
    with h5py.File(_weights_file(path), "r") as handle:
        if "layers" in handle:
            if _count_layers(config["config"]["layers"], "Normalization") != 1:
                return None
            found = []
            handle["layers"].visititems(lambda key, item: found.append(item) if re.search(
                r"(^|/)normalization/vars$", key) and isinstance(item, h5py.Group) else None)
            if len(found) == 1 and {"0", "1"} <= set(found[0]):
                return np.asarray(found[0]["0"]), np.asarray(found[0]["1"])
            return None
        root, arrays = handle.get("model_weights", handle), {}
        for group in root.values():  # a nested model's group lists its layers' weights: "norm/mean"
            for key in group.attrs.get("weight_names", []) if isinstance(group, h5py.Group) else ():
                key = key.decode() if isinstance(key, bytes) else str(key)
                *_, layer, weight = [""] + key.split(":")[0].split("/")
                if layer == name and weight in ("mean", "variance"):
                    arrays.setdefault(weight, []).append(group[key])
        if [len(arrays.get(weight, ())) for weight in ("mean", "variance")] == [1, 1]:
            return np.asarray(arrays["mean"][0]), np.asarray(arrays["variance"][0])
    return None


def _count_layers(layers: list[dict], kind: str) -> int:
    """How many layers of a Keras model's config are of class ``kind``, nested models' too."""
    return sum(_count_layers(layer["config"]["layers"], kind) if layer["class_name"] in NESTED_MODELS
               else layer["class_name"] == kind for layer in layers)


def _first_computing_layer(layers: list[dict]) -> dict | None:
    """The first layer of a Keras model's config that changes the values of an image's pixels
    at inference, looking into nested models (a data_augmentation Sequential): random
    augmentation layers pass an image unchanged then, and Resizing or CenterCrop keep its
    scale (cnnlab's decoding sizes the images itself)."""
    for layer in layers:
        name = layer["class_name"]
        if name in NESTED_MODELS:
            inner = _first_computing_layer(layer["config"]["layers"])
            if inner is not None:
                return inner
        elif name not in ("InputLayer", "Resizing", "CenterCrop") and not name.startswith("Random"):
            return layer
    return None


def _weights_file(path: Path) -> Path | io.BytesIO:
    """The HDF5 file of ``path``: itself, or a .keras archive's weights, read into memory."""
    if path.suffix.lower() != ".keras":
        return path
    try:
        with zipfile.ZipFile(path) as archive:
            if ARCHIVE_WEIGHTS not in archive.namelist():
                raise CnnlabError.about("weights", f" {path}: a Keras archive without {ARCHIVE_WEIGHTS} (files: "
                                        f"{', '.join(archive.namelist()[:5]) or 'none'})")
            member = archive.getinfo(ARCHIVE_WEIGHTS)
            if member.file_size > LARGEST_WEIGHTS:
                raise CnnlabError.about("weights", f" {path}: its {ARCHIVE_WEIGHTS} claims {member.file_size:,} "
                                        "bytes, more than any network cnnlab builds holds")
            return io.BytesIO(archive.read(member))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        raise CnnlabError.about("weights", f" {path}: not a readable Keras archive ({exc})") from None


def _natural(name: str) -> list:
    """conv2d_2 before conv2d_10 (Keras numbers layers of one kind in the order it made them)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def keras_layers(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """(layer name, its weight arrays in Keras' order) for every layer with weights, in the
    model's order."""
    try:
        import h5py
    except ImportError:
        raise CnnlabError.about("weights", f" {path}: Keras .h5 files need the h5py package "
                                "(pip install 'cnnlab[keras]')") from None
    try:
        with h5py.File(_weights_file(path), "r") as handle:
            if "layer_names" in handle.attrs or "model_weights" in handle:  # Keras 2
                root = handle.get("model_weights", handle)
                layers = []
                for raw in root.attrs["layer_names"]:
                    name = raw.decode() if isinstance(raw, bytes) else str(raw)
                    group = root[name]
                    names = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
                    if names:
                        layers.append((name, [np.asarray(group[w]) for w in names]))
                return layers
            if "layers" in handle:  # Keras 3: layers/<name>/vars/<index>
                found = []

                def visit(name, item):
                    if isinstance(item, h5py.Group) and name.endswith("/vars") and len(item):
                        arrays = [np.asarray(item[key]) for key in sorted(item, key=int)]
                        found.append((name[: -len("/vars")], arrays))

                handle["layers"].visititems(visit)
                return sorted(found, key=lambda entry: _natural(entry[0]))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py: RuntimeError for a damaged object header
        raise CnnlabError.about("weights", f" {path}: not a readable Keras weight file ({exc})") from None
    raise CnnlabError.about("weights", f" {path}: an HDF5 file without Keras layers (no layer_names, no layers/)")


def _kind(arrays: list[np.ndarray]) -> str:
    if arrays and arrays[0].ndim == 4:
        return "conv"
    if arrays and arrays[0].ndim == 2:
        return "dense"
    if len(arrays) == 4 and all(a.ndim == 1 for a in arrays):
        return "batchnorm"
    return "other"


def keras_state_dict(path: Path, model: nn.Module, bgr: bool = False) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` from the Keras file ``path`` (tensors of the head that do not
    fit are left for the caller to re-initialise). ``bgr``: the file's first convolution takes
    BGR pixels (Keras' applications' ImageNet weights, trained with caffe's preprocessing); it
    is turned to take RGB, as cnnlab's images come."""
    layers = [(name, arrays, _kind(arrays)) for name, arrays in keras_layers(path)]
    ours = [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d | nn.Linear | nn.modules.batchnorm._BatchNorm)]
    kind_of = lambda m: "conv" if isinstance(m, nn.Conv2d) else "dense" if isinstance(m, nn.Linear) else "batchnorm"  # noqa: E731
    state: dict[str, torch.Tensor] = {}
    for kind in ("conv", "dense", "batchnorm"):
        theirs = [(n, a) for n, a, k in layers if k == kind]
        mine = [(n, m) for n, m in ours if kind_of(m) == kind]
        if len(theirs) > len(mine):
            raise CnnlabError.about("weights", f" {path}: {len(theirs)} {kind} layers in the file, "
                                    f"{len(mine)} in the model")
        for (keras_name, arrays), (name, module) in zip(theirs, mine, strict=False):
            state.update(_convert(kind, arrays, name, module, model, path, keras_name))
    first = next((name for name, module in ours if isinstance(module, nn.Conv2d)), None)
    if bgr and f"{first}.weight" in state and state[f"{first}.weight"].shape[1] == 3:
        state[f"{first}.weight"] = state[f"{first}.weight"].flip(1)
    return state


def _convert(kind: str, arrays: list[np.ndarray], name: str, module: nn.Module, model: nn.Module,
             path: Path, keras_name: str) -> dict[str, torch.Tensor]:
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).float() for a in arrays]
    if kind == "conv":
        converted = {"weight": tensors[0].permute(3, 2, 0, 1)}
    elif kind == "dense":
        kernel = tensors[0]
        if name == _first_dense(model) and _flattened(model) is not None:
            channels, height, width = _flattened(model)
            if kernel.shape[0] == channels * height * width:
                # Keras flattened (height, width, channels); PyTorch flattens (channels, height, width)
                kernel = kernel.reshape(height, width, channels, -1).permute(2, 0, 1, 3).reshape(kernel.shape)
        converted = {"weight": kernel.T}
    else:
        gamma, beta, mean, variance = tensors
        converted = {"weight": gamma, "bias": beta, "running_mean": mean, "running_var": variance}
        if "num_batches_tracked" in module.state_dict():  # Keras keeps no count; only momentum=None reads it
            converted["num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    if kind != "batchnorm" and len(tensors) > 1:
        converted["bias"] = tensors[1]
    own = dict(module.state_dict())
    result = {}
    for key, tensor in converted.items():
        if key in own and tuple(own[key].shape) != tuple(tensor.shape) and not name.startswith(_head_prefixes(model)):
            raise CnnlabError.about("weights", f" {path}: Keras layer {keras_name} {key} has shape "
                                    f"{tuple(tensor.shape)}; {name}.{key} needs {tuple(own[key].shape)}")
        result[f"{name}.{key}"] = tensor
    return result


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    return model.head_prefixes() if hasattr(model, "head_prefixes") else ()


def _first_dense(model: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)


def _flattened(model: nn.Module) -> tuple[int, int, int] | None:
    """(channels, height, width) of the feature maps a ConvNet flattens, or None (shapes only:
    a model on the meta device works too)."""
    features = getattr(model, "features", None)
    if features is None or not len(features) or not hasattr(model, "input_size"):
        return None
    probe = torch.zeros(1, model.in_channels, *model.input_size, device=next(model.parameters()).device)
    was_training = features.training
    features.eval()  # BatchNorm must not learn from the probe
    try:
        with torch.no_grad():
            out = features(probe)
    finally:
        features.train(was_training)
    return (out.shape[1], out.shape[2], out.shape[3]) if out.dim() == 4 else None

"""Weights from elsewhere: Keras HDF5 files (the Keras 2 layout of ~/.keras/models and Keras 3's
.weights.h5 and .keras archives) and safetensors, in and out."""

from __future__ import annotations

import json
import os
import random
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.models import create_model
from cnnlab.models.weights import load_weights
from conftest import REPO, run_cli

h5py = pytest.importorskip("h5py")


def keras_arrays(model: torch.nn.Module) -> list[tuple[str, list[np.ndarray]]]:
    """The model's weights as Keras would store them, layer by layer (the inverse of cnnlab's
    conversion, flatten order included)."""
    layers, kinds = [], {"conv": 0, "dense": 0, "bn": 0}
    first_dense = True
    flat = model.features(torch.zeros(1, model.in_channels, *model.input_size)).shape[1:]
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            arrays = [module.weight.detach().permute(2, 3, 1, 0).numpy(), module.bias.detach().numpy()]
            kind = "conv2d"
        elif isinstance(module, torch.nn.Linear):
            weight = module.weight.detach()
            if first_dense:
                channels, height, width = flat
                weight = weight.reshape(-1, channels, height, width).permute(0, 2, 3, 1).reshape(weight.shape)
                first_dense = False
            arrays = [weight.T.numpy(), module.bias.detach().numpy()]
            kind = "dense"
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            arrays = [t.detach().numpy() for t in (module.weight, module.bias, module.running_mean,
                                                   module.running_var)]
            kind = "batch_normalization"
        else:
            continue
        index = kinds.setdefault(kind, 0)
        kinds[kind] += 1
        layers.append((f"{kind}_{index}" if index else kind, arrays))
    return layers


def write_keras2(path, layers):
    with h5py.File(path, "w") as handle:
        keras2_layers(handle, layers)


def keras2_layers(root, layers):
    """Keras 2's layout of weights, in an HDF5 file or group."""
    root.attrs["layer_names"] = [name.encode() for name, _ in layers]
    for name, arrays in layers:
        group = root.create_group(name)
        parts = {4: ["gamma", "beta", "moving_mean", "moving_variance"], 3: ["mean", "variance", "count"]}.get(
            len(arrays), ["kernel", "bias"])
        names = [f"{name}/{part}:0" for part in parts]
        group.attrs["weight_names"] = [n.encode() for n in names]
        for n, array in zip(names, arrays, strict=True):
            group.create_dataset(n, data=array)


def write_keras_model(path, layers, config: str):
    """A whole Keras model as model.save writes it: a .keras archive, or (legacy) a .h5 file
    with its config in an attribute and its weights in Keras 2's layout under model_weights."""
    if path.suffix == ".keras":
        write_keras_archive(path, layers, config)
        return
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = config
        keras2_layers(handle.create_group("model_weights"), layers)


def write_keras3(path, layers):
    with h5py.File(path, "w") as handle:
        for name, arrays in layers:
            group = handle.create_group(f"layers/{name}/vars")
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)


def keras_config(*layers) -> str:
    """A .keras archive's config.json, as Keras 3 writes it for a Sequential model of these
    (class name, config) layers after its InputLayer."""
    entry = lambda name, config: {"module": "keras.layers", "class_name": name, "config": config}  # noqa: E731
    return json.dumps({"module": "keras", "class_name": "Sequential", "config": {"name": "m", "layers": [
        entry("InputLayer", {"batch_shape": [None, 28, 28, 1]}), *(entry(name, config) for name, config in layers)]}})


def write_keras_archive(path, layers, config: str | None = None):
    """Keras 3's model.save("model.keras"): a zip of the model's config, metadata and weights."""
    config = config or keras_config(("Conv2D", {"filters": 6}))
    weights = path.parent / "model.weights.h5"
    write_keras3(weights, layers)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.15.1"}')
        archive.writestr("config.json", config)
        archive.write(weights, "model.weights.h5")
    weights.unlink()


AUGMENTATION = ("Sequential", {"name": "data_augmentation", "layers": [
    {"class_name": "InputLayer", "config": {}}, {"class_name": "RandomFlip", "config": {"mode": "horizontal"}},
    {"class_name": "RandomRotation", "config": {"factor": 0.1}}]})


@pytest.mark.parametrize("layers, mean, std", [
    ([("Rescaling", {"scale": 1 / 255, "offset": 0.0})], (0.0,), (1.0,)),
    ([("Rescaling", {"scale": 1 / 127.5, "offset": -1.0})], (0.5,), (0.5,)),
    ([AUGMENTATION, ("Rescaling", {"scale": 1 / 255, "offset": 0.0})], (0.0,), (1.0,)),
    ([("Normalization", {"mean": [120.0, 110.0, 100.0], "variance": [3600.0, 2500.0, 1600.0], "axis": [-1],
                         "invert": False})], (120 / 255, 110 / 255, 100 / 255), (60 / 255, 50 / 255, 40 / 255)),
    ([("Conv2D", {"filters": 6})], None, None),
    ([AUGMENTATION, ("Conv2D", {"filters": 6}), ("Rescaling", {"scale": 2.0, "offset": 0.0})], None, None),
    # TensorFlow's data augmentation tutorial: resize_and_rescale = Sequential([Resizing, Rescaling])
    ([("Sequential", {"name": "resize_and_rescale", "layers": [
        {"class_name": "Resizing", "config": {"height": 28, "width": 28, "interpolation": "bilinear"}},
        {"class_name": "Rescaling", "config": {"scale": 1 / 255, "offset": 0.0}}]}), AUGMENTATION], (0.0,), (1.0,)),
    ([("CenterCrop", {"height": 28, "width": 28}), ("Rescaling", {"scale": 1 / 127.5, "offset": -1.0})],
     (0.5,), (0.5,)),
])
def test_a_keras_models_own_input_scaling_is_how_its_inputs_were_standardised(tmp_path, layers, mean, std):
    """The tutorials' Keras models scale their own inputs: Rescaling(1/255) (after random
    augmentation layers, which pass an image unchanged at inference, and after Resizing or
    CenterCrop, which keep its scale: found taken as no scaling) or Normalization(mean,
    variance). cnnlab leaves that to its preprocessing, so a .keras model given as --weights
    was fed standardised inputs it was never trained on unless the user added --mean 0 --std 1.
    Now the model's config says, as a published file's name does: in a .keras archive, and in
    the legacy .h5 file model.save writes."""
    from cnnlab.models.weights import input_normalization

    arrays = keras_arrays(create_model("lenet5", 10, 1, (28, 28)))
    for path in (tmp_path / "model.keras", tmp_path / "model.h5"):
        write_keras_model(path, arrays, keras_config(*layers))
        found = input_normalization(path)
        if mean is None:
            assert found is None, path
        else:
            assert found.mode == "weights" and found.published, path
            np.testing.assert_allclose(found.mean, mean)
            np.testing.assert_allclose(found.std, std)
        load_weights(create_model("lenet5", 10, 1, (28, 28)), path, log=lambda m: None)


def test_an_adapted_keras_normalization_standardises_as_its_statistics_say(tmp_path):
    """Normalization().adapt(x_train) keeps the mean and variance it measured in its weights,
    not its config (the Keras examples' ViT, ConvMixer), so such a model was taken as not
    scaling its inputs and fed standardised ones. Its statistics are now read from the
    file's weights, where the layer's name (the legacy .h5 file) or its being the only one (a
    .keras archive, which stores it under its class's name) says which they are."""
    from cnnlab.models.weights import input_normalization

    mean, variance = np.array([120.0, 110.0, 100.0], np.float32), np.array([3600.0, 2500.0, 1600.0], np.float32)
    statistics = {"mean": mean, "variance": variance, "count": np.array(50)}
    adapted = ("Normalization", {"name": "norm", "mean": None, "variance": None, "axis": [-1]})
    arrays = keras_arrays(create_model("simple-cnn", 10, 3, (32, 32)))

    def legacy_h5(path, config, group, names):
        """model.save("x.h5"): tf.keras 2 names a weight "norm/mean:0" in the layer's group;
        Keras 3 "norm/mean", in the group of the model the layer is nested in."""
        write_keras_model(path, arrays, config)
        with h5py.File(path, "a") as handle:
            root = handle["model_weights"]
            root.attrs["layer_names"] = [group.encode(), *root.attrs["layer_names"].astype(bytes)]
            root.create_group(group).attrs["weight_names"] = [name.encode() for name in names]
            for name, value in zip(names, statistics.values(), strict=True):
                root[group].create_dataset(name, data=value)

    for nested in (False, True):
        config = keras_config(*([AUGMENTATION, adapted] if not nested else [
            ("Sequential", {"name": "preprocessing", "layers": [{"class_name": adapted[0], "config": adapted[1]}]})]))
        write_keras_model(tmp_path / "model.keras", [("sequential/layers/normalization" if nested else "normalization",
                                                      list(statistics.values()))] + arrays, config)
        legacy_h5(tmp_path / "keras2.h5", config, "preprocessing" if nested else "norm",
                  [f"norm/{weight}{'' if nested else ':0'}" for weight in statistics])
        write_keras_model(tmp_path / "unadapted.h5", arrays, config)
        for file in ("model.keras", "keras2.h5", "unadapted.h5"):
            found = input_normalization(tmp_path / file)
            if file == "unadapted.h5":
                assert found is None
                continue
            assert found.mode == "weights" and found.published, file
            np.testing.assert_allclose(found.mean, mean / 255, rtol=1e-6)
            np.testing.assert_allclose(found.std, np.sqrt(variance) / 255, rtol=1e-6)
            load_weights(create_model("simple-cnn", 10, 3, (32, 32)), tmp_path / file, log=lambda m: None)
    twice = keras_config(adapted, ("Normalization", {**adapted[1], "name": "norm_1"}))
    write_keras_model(tmp_path / "model.keras", [("normalization", list(statistics.values()))] + arrays, twice)
    assert input_normalization(tmp_path / "model.keras") is None  # which stored statistics are whose is not said


def test_a_run_from_a_keras_model_takes_its_inputs_as_the_model_did(tmp_path):
    path = tmp_path / "tutorial.keras"
    write_keras_archive(path, keras_arrays(create_model("lenet5", 10, 1, (28, 28))),
                        keras_config(AUGMENTATION, ("Rescaling", {"scale": 1 / 255, "offset": 0.0})))
    run_cli("train", "--model", "lenet5", "--data", "digits", "--weights", path, "--epochs", "1", "--subset", "100",
            "--out", tmp_path, "--name", "r")
    assert "normalize: weights" in (tmp_path / "r" / "config.yaml").read_text()
    preprocessing = torch.load(tmp_path / "r" / "best.pt", weights_only=True)["preprocessing"]
    assert (preprocessing["mean"], preprocessing["std"]) == ([0.0], [1.0])
    assert "inputs standardised as theirs were, mean (0), std (1)" in (tmp_path / "r" / "train.log").read_text()


KERAS_WRITERS = [(write_keras2, "weights.h5"), (write_keras3, "model.weights.h5"), (write_keras_archive, "model.keras")]


@pytest.mark.parametrize("writer, file", KERAS_WRITERS)
@pytest.mark.parametrize("name, size", [("simple-cnn", 32), ("alexnet-bn", 99)])
def test_keras_layouts_load_with_converted_kernels_and_flatten_order(tmp_path, writer, file, name, size):
    """Keras 2's .h5, Keras 3's .weights.h5 and (found missing: the tutorials' model.save and
    ModelCheckpoint write it) Keras 3's whole-model .keras archive."""
    torch.manual_seed(0)
    source = create_model(name, 10, 3, (size, size)).eval()
    for module in source.modules():  # BatchNorm statistics away from their defaults
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / file
    writer(path, keras_arrays(source))
    target = create_model(name, 10, 3, (size, size)).eval()
    load_weights(target, path, log=lambda m: None)
    x = torch.randn(2, 3, size, size)
    torch.testing.assert_close(target(x), source(x))


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a readable Keras archive"),
    ({"config.json": "{}"}, "a Keras archive without model.weights.h5"),
    ({"model.weights.h5": "not HDF5"}, "not a readable Keras weight file"),
])
def test_a_keras_archive_that_cannot_be_read_is_one_line(tmp_path, content, message):
    path = tmp_path / "model.keras"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            for name, text in content.items():
                archive.writestr(name, text)
    result = run_cli("train", "--model", "simple-cnn", "--data", "digits", "--weights", path, "--check", check=False)
    assert result.returncode == 2 and f"--weights {path}: {message}" in result.stderr, result.stderr


def fuzz_keras_files(tmp: Path, numbers) -> None:
    """Keras files of each layout with their bytes mutated, or a .keras archive whose weights
    member is, given as --weights: loaded, or one line naming the file. ``numbers``: which
    cases of the seed (CNNLAB_FUZZ_SEED)."""
    from test_fuzz import SEED, call, check, mutate_bytes

    layers = keras_arrays(create_model("lenet5", 10, 1, (28, 28)))
    seeds = {}
    for writer, file in KERAS_WRITERS:
        writer(tmp / file, layers)
        seeds[file] = (tmp / file).read_bytes()
    # whole models that scale their inputs, for keras_model_normalization to read: by the
    # config (Rescaling), or by an adapted Normalization's statistics among the weights
    write_keras_model(tmp / "legacy.h5", layers, keras_config(AUGMENTATION, ("Rescaling", {"scale": 1 / 255})))
    adapted = keras_config(AUGMENTATION, ("Normalization", {"name": "norm", "mean": None, "variance": None}))
    statistics = [("normalization", [np.array([33.0]), np.array([6400.0]), np.array(60)])]
    write_keras_model(tmp / "model.keras", statistics + layers, adapted)
    for file in ("model.keras", "legacy.h5"):
        seeds[file] = (tmp / file).read_bytes()
    write_keras3(tmp / "inner.weights.h5", statistics + layers)
    inner = (tmp / "inner.weights.h5").read_bytes()
    for n in numbers:
        rng = random.Random(f"{SEED}-keras-{n}")
        file = rng.choice(sorted(seeds))
        path = tmp / f"case{n}-{file}"
        if file.endswith(".keras") and rng.random() < 0.5:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("config.json", adapted)
                archive.writestr("model.weights.h5", mutate_bytes(inner, rng))
        else:
            path.write_bytes(mutate_bytes(seeds[file], rng))
        check(call(["train", "--model", "lenet5", "--data", "digits", "--weights", path, "--check"]), path.name)


KERAS_FINDS = [88]
"""A case of the slow run (seed 0) that ended in a traceback: h5py's RuntimeError for a damaged
object header ("bad object header version number"), let out of .h5 and .weights.h5 files (the
first run found it as case 19, before the seeds held a whole legacy model)."""


def test_fuzz_keras_files(tmp_path):
    fuzz_keras_files(tmp_path, [*range(8), *KERAS_FINDS])


@pytest.mark.slow
def test_fuzz_keras_files_larger_budget(tmp_path):
    fuzz_keras_files(tmp_path, range(120))


def vgg16_notop(path):
    """A file of the layout and names of Keras' vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5,
    and the VGG-16 whose convolutions it holds."""
    source = create_model("vgg16", 17, 3, (32, 32))
    convs = [m for m in source.features if isinstance(m, torch.nn.Conv2d)]
    names = [f"block{b + 1}_conv{i + 1}" for b, count in enumerate([2, 2, 3, 3, 3]) for i in range(count)]
    write_keras2(path, [(n, [c.weight.detach().permute(2, 3, 1, 0).numpy(), c.bias.detach().numpy()])
                        for n, c in zip(names, convs, strict=True)])
    return path, source


def test_vgg16_notop_file_loads_into_the_transfer_base(tmp_path):
    """The layout and names of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    path, source = vgg16_notop(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    target = create_model("vgg16-transfer", 5, 3, (32, 32))
    messages = []
    load_weights(target, path, log=messages.append)
    # Keras' ImageNet weights take BGR pixels; cnnlab's images are RGB
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight.flip(1))
    torch.testing.assert_close(target.features[2].weight, source.features[2].weight)
    torch.testing.assert_close(target.features[28].bias, source.features[28].bias)
    assert any("re-initialised" in m for m in messages)


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
"""What Keras' vgg16.preprocess_input subtracts from BGR pixels (its "caffe" mode)."""


def test_keras_imagenet_weights_under_another_name_still_take_bgr_pixels(tmp_path, monkeypatch):
    """Keras' ImageNet file was known by its published name only: a renamed copy (imagenet.h5,
    a download saved under the URL's hash) loaded with its colours swapped and was standardised
    with the new data's statistics. Now Keras' files are also known by the md5 Keras checks
    them by; a file of another name and content is as before."""
    from cnnlab.data.download import Remote, md5_of
    from cnnlab.models import weights

    path, source = vgg16_notop(tmp_path / "imagenet.h5")
    published = "https://example.org/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    monkeypatch.setitem(weights.KERAS_IMAGENET, "vgg16-transfer", Remote(published, md5_of(path)))
    target = create_model("vgg16-transfer", 5, 3, (32, 32))
    load_weights(target, path, log=lambda m: None)
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight.flip(1))
    assert weights.input_normalization(path) is weights.IMAGENET_CAFFE
    other, source = vgg16_notop(tmp_path / "mine.h5")
    load_weights(target, other, log=lambda m: None)
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight)
    assert weights.input_normalization(other) is None


def test_keras_imagenet_weights_see_images_as_preprocess_input_gives_them(tmp_path):
    """Keras' ImageNet VGG16 was trained on preprocess_input's pixels: BGR, minus ImageNet's
    mean, unscaled. cnnlab standardised them with the new data's mean and std, in RGB, so the
    pretrained base saw inputs some 60 times smaller than it learnt from, its colours swapped.
    Now the run's inputs are what the weights expect: the base computes on an RGB image what
    Keras' computes on preprocess_input of it."""
    from cnnlab.data.preprocessing import Preprocessing
    from cnnlab.models.weights import input_normalization

    path, source = vgg16_notop(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    target = create_model("vgg16-transfer", 5, 3, (32, 32)).eval()
    load_weights(target, path, log=lambda m: None)
    expected = input_normalization(path)
    preprocessing = Preprocessing(expected.mean, expected.std, normalize=expected.mode)
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    caffe = pixels.flip(1) - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        ours, keras = target.features(preprocessing.standardize(pixels)), source.eval().features(caffe)
    torch.testing.assert_close(ours, keras, rtol=1e-4, atol=1e-4 * keras.abs().max().item())


def test_torchvision_imagenet_file_gives_imagenet_statistics(tmp_path):
    """torchvision's ImageNet VGG-16, by the name it is published under: its inputs were
    standardised with ImageNet's mean and std, and a run started from it uses them."""
    torch.save(create_model("vgg16-transfer", 5, 3, (32, 32)).state_dict(), tmp_path / "vgg16-397923af.pth")
    result = run_cli("train", "--model", "vgg16-transfer", "--data", "digits", "--channels", "3", "--image-size",
                     "32x32", "--weights", tmp_path / "vgg16-397923af.pth", "--check")
    assert ("inputs standardised as theirs were, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) on the 0-1 "
            "scale (data.normalize imagenet)") in result.stdout + result.stderr


def test_normalize_imagenet_as_fastai_imagenet_stats(tmp_path):
    """ImageNet's mean and std by name, for ImageNet weights under another name (fastai's
    imagenet_stats); colour images only."""
    run_cli("train", "--model", "lenet5", "--data", "digits", "--channels", "3", "--normalize", "imagenet",
            "--epochs", "1", "--subset", "100", "--out", tmp_path, "--name", "r", "--quiet")
    preprocessing = torch.load(tmp_path / "r" / "best.pt", weights_only=True)["preprocessing"]
    assert preprocessing["normalize"] == "imagenet"
    np.testing.assert_allclose(preprocessing["mean"], [0.485, 0.456, 0.406])
    np.testing.assert_allclose(preprocessing["std"], [0.229, 0.224, 0.225])
    grey = run_cli("train", "--model", "lenet5", "--data", "digits", "--normalize", "imagenet", "--check", check=False)
    assert grey.returncode == 2 and grey.stderr.strip().endswith(
        "--normalize imagenet: ImageNet's mean and std are for colour images; digits gives 1 channel (--channels 3 "
        "reads them as colour)"), grey.stderr


def test_safetensors_export_and_import(tmp_path):
    pytest.importorskip("safetensors")
    run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--out", tmp_path,
            "--name", "r", "--quiet")
    path = run_cli("export", tmp_path / "r", "--format", "safetensors").stdout.strip()
    from safetensors import safe_open

    with safe_open(path, "pt") as handle:
        meta = handle.metadata()
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]
    assert json.loads(meta["model"])["name"] == "lenet5"
    run_cli("train", "--model", "lenet5", "--data", "digits", "--epochs", "1", "--weights", path,
            "--out", tmp_path, "--name", "again", "--subset", "100", "--normalize", "weights", "--quiet")
    # the exported file says how its inputs were standardised, as the run's checkpoint does
    trained_with, again = (torch.load(tmp_path / run / "best.pt", weights_only=True)["preprocessing"]
                           for run in ("r", "again"))
    assert again["normalize"] == "weights" and (again["mean"], again["std"]) == (trained_with["mean"],
                                                                                   trained_with["std"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    result = run_cli("train", "--data", "digits", "--weights", bad, "--check", check=False)
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr


KERAS_PYTHON = REPO / ".venv-bench" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
@pytest.mark.parametrize("name, size, channels", [("simple-cnn", 32, 3), ("alexnet-bn", 99, 3),
                                                  ("alexnet-mnist", 28, 1), ("alexnet", 99, 3),
                                                  ("small-cnn", 64, 3)])
def test_keras_weights_give_keras_outputs(tmp_path, name, size, channels):
    """Weights saved by Keras itself (model.save_weights, model.save's .keras archive and its
    legacy .h5 file), loaded by cnnlab: the same outputs on the same input."""
    subprocess.run([str(KERAS_PYTHON), str(REPO / "benchmarks" / "keras_reference" / "save_weights.py"),
                    name, str(size), str(size), str(channels), "10", str(tmp_path)], check=True,
                   capture_output=True, cwd=REPO / "benchmarks" / "keras_reference")
    from cnnlab.data.preprocessing import Preprocessing
    from cnnlab.models.weights import input_normalization

    reference = np.load(tmp_path / "reference.npz")
    pixels = torch.from_numpy(reference["x"]).permute(0, 3, 1, 2)
    # the tutorial's Rescaling(1/255) layer, which cnnlab's preprocessing takes over: given as
    # --mean 0 --std 1 for a .weights.h5 file, read from a whole model's config
    rescaled = Preprocessing((0.0,) * channels, (1.0,) * channels, normalize="given").standardize(pixels)
    whole_models = [file for file in ("model.keras", "model.h5") if (tmp_path / file).exists()]
    assert len(whole_models) == (1 if name == "alexnet" else 2)  # Keras' legacy .h5 cannot hold its LRN
    for whole in whole_models:
        scaling = input_normalization(tmp_path / whole)
        if name == "small-cnn":
            assert (scaling.mode, scaling.mean, scaling.std) == ("weights", (0.0,), (1.0,)), whole
        else:
            assert scaling is None, whole
    for file in ("model.weights.h5", *whole_models):
        model = create_model(name, 10, channels, (size, size)).eval()
        load_weights(model, tmp_path / file, log=lambda m: None)
        with torch.no_grad():
            probabilities = torch.softmax(model(rescaled if name == "small-cnn" else pixels), 1).numpy()
        np.testing.assert_allclose(probabilities, reference["y"], atol=1e-4, err_msg=file)


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_an_adapted_keras_normalization_gives_keras_outputs(tmp_path):
    """A model Keras saved whole with a Normalization layer adapted to its (0-255) inputs: the
    statistics cnnlab reads from either file standardise the pixels as that layer did."""
    subprocess.run([str(KERAS_PYTHON), str(REPO / "benchmarks" / "keras_reference" / "save_weights.py"),
                    "simple-cnn", "32", "32", "3", "10", str(tmp_path), "adapted"], check=True,
                   capture_output=True, cwd=REPO / "benchmarks" / "keras_reference")
    from cnnlab.data.preprocessing import Preprocessing
    from cnnlab.models.weights import input_normalization

    reference = np.load(tmp_path / "reference.npz")
    pixels = torch.from_numpy(reference["x"]).permute(0, 3, 1, 2)
    for whole in ("model.keras", "model.h5"):
        scaling = input_normalization(tmp_path / whole)
        assert scaling.mode == "weights" and len(scaling.mean) == 3, whole
        model = create_model("simple-cnn", 10, 3, (32, 32)).eval()
        load_weights(model, tmp_path / whole, log=lambda m: None)
        standardised = Preprocessing(scaling.mean, scaling.std, normalize="given").standardize(pixels)
        with torch.no_grad():
            probabilities = torch.softmax(model(standardised), 1).numpy()
        np.testing.assert_allclose(probabilities, reference["y"], atol=1e-4, err_msg=whole)


@pytest.mark.slow
@pytest.mark.skipif(not KERAS_PYTHON.exists(), reason="the Keras reference needs `make bench-env`")
def test_caffe_mean_is_what_keras_preprocess_input_subtracts():
    script = ("import numpy as np; from keras.applications.vgg16 import preprocess_input; "
              "x = np.array([[[[10., 20., 30.]]]]); print(*preprocess_input(x.copy())[0, 0, 0].tolist())")
    printed = subprocess.run([str(KERAS_PYTHON), "-c", script], check=True, capture_output=True, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
    values = [float(v) for v in printed.strip().splitlines()[-1].split()]
    np.testing.assert_allclose(values, [30 - CAFFE_MEAN_BGR[0], 20 - CAFFE_MEAN_BGR[1], 10 - CAFFE_MEAN_BGR[2]],
                               rtol=1e-5)


def test_weights_imagenet_as_keras_applications_take_it(tmp_path, file_server, monkeypatch):
    """VGG16(weights="imagenet") is how the tutorials start transfer learning; --weights
    imagenet said "imagenet: no such checkpoint file". It reads the file Keras keeps in
    ~/.keras/models, else downloads Keras' own once; the run records the file it read."""
    from cnnlab.models import weights

    served, base = file_server
    name = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    vgg16_notop(served / name)
    from cnnlab.data.download import Remote, md5_of

    monkeypatch.setitem(weights.KERAS_IMAGENET, "vgg16-transfer", Remote(f"{base}/{name}", md5_of(served / name)))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = ["train", "--model", "vgg16-transfer", "--data", "digits", "--image-size", "32x32", "--channels", "3",
            "--weights", "imagenet", "--epochs", "1", "--batch-size", "64", "--subset", "64", "--out", tmp_path / "runs"]
    run_cli(*args, "--name", "downloaded")
    recorded = (tmp_path / "runs" / "downloaded" / "config.yaml").read_text()
    assert "/urls/" in recorded and recorded.count(name) == 1
    # trained on preprocess_input's pixels: ImageNet's mean subtracted, unscaled
    assert "normalize: weights" in recorded
    preprocessing = torch.load(tmp_path / "runs" / "downloaded" / "best.pt", weights_only=True)["preprocessing"]
    np.testing.assert_allclose(np.array(preprocessing["mean"]) * 255, CAFFE_MEAN_BGR[::-1])
    np.testing.assert_allclose(np.array(preprocessing["std"]) * 255, [1, 1, 1])
    kept = tmp_path / "home" / ".keras" / "models" / name
    kept.parent.mkdir(parents=True)
    vgg16_notop(kept)
    (served / name).unlink()  # Keras' copy is read, nothing downloaded
    run_cli(*args, "--name", "kept", "--check")
    other = run_cli("train", "--model", "alexnet", "--weights", "imagenet", "--check", check=False)
    assert other.returncode == 2 and other.stderr.strip().endswith(
        "--weights imagenet: Keras publishes ImageNet weights for vgg16 and vgg16-transfer among cnnlab's models, "
        "not alexnet; give a weights file")


def test_weights_may_be_a_url(tmp_path, file_server):
    served, base = file_server
    model = create_model("mlp", 10, 1, (8, 8))
    torch.save(model.state_dict(), served / "mlp.pt")
    run_cli("train", "--model", "mlp", "--data", "digits", "--weights", f"{base}/mlp.pt", "--epochs", "1",
            "--out", tmp_path, "--name", "r")
    assert "urls/" in (tmp_path / "r" / "config.yaml").read_text()


def test_a_checkpoint_whose_preprocessing_cannot_be_read_says_nothing_of_its_inputs(tmp_path):
    """A run's record of a normalisation this version lacks, or a damaged one, is no
    normalisation to follow (the weights' load says what else is wrong)."""
    from cnnlab.models.weights import CHECKPOINT_FORMAT, input_normalization

    for number, preprocessing in enumerate(({"normalize": "local", "mean": [0.5], "std": [0.2]},
                                            {"normalize": "dataset", "mean": "grey", "std": None},
                                            {"normalize": "dataset"})):
        torch.save({"format": CHECKPOINT_FORMAT, "preprocessing": preprocessing}, tmp_path / f"{number}.pt")
        assert input_normalization(tmp_path / f"{number}.pt") is None
    torch.save({"format": CHECKPOINT_FORMAT, "preprocessing": {"normalize": "per_image", "mean": [0.5], "std": [0.2]}},
               tmp_path / "per-image.pt")
    assert input_normalization(tmp_path / "per-image.pt").mode == "per_image"

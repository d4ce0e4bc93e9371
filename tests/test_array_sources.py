"""npz: and csv: sources, and arrays given to train() (data users already hold)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import api
from cnnlab.data.sources import read_source
from cnnlab.errors import CnnlabError, CnnlabWarning, ConfigError, DataError
from conftest import make_image_folder, run_cli


def keras_arrays(count=40, size=8, channels=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (count, size, size) if channels is None else (count, size, size, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 4, count)


def test_npz_reads_keras_load_data_shapes(tmp_path):
    x, y = keras_arrays(channels=3)
    xt, yt = keras_arrays(10, channels=3, seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y[:, None], x_test=xt, y_test=yt)
    data = read_source(f"npz:{tmp_path / 'd.npz'}")
    assert set(data.splits) == {"train", "test"}
    assert np.array_equal(data.splits["train"].images, x)
    assert np.array_equal(data.splits["train"].labels, y)
    assert data.channels == 3 and data.classes == [str(c) for c in range(int(max(y.max(), yt.max())) + 1)]


def test_npz_takes_one_hot_labels_as_keras_to_categorical_writes_them(tmp_path):
    """Keras tutorials one-hot their labels (to_categorical) before fit(); those arrays were
    refused as "expected 40 labels, one per image; got shape (40, 4)"."""
    x, y = keras_arrays()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.eye(4, dtype=np.float32)[y])
    assert np.array_equal(read_source(f"npz:{tmp_path / 'd.npz'}").splits["train"].labels, y)
    soft = np.full((len(y), 4), 0.25, np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=soft)
    with pytest.raises(DataError, match=r"y_train: 2-D labels must be one-hot rows \(a single 1 in each, as Keras' "
                                        r"to_categorical writes\), or give class indices; got shape \(40, 4\)"):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def test_npz_scales_unit_floats_and_adds_the_channel(tmp_path):
    x, y = keras_arrays()
    np.savez(tmp_path / "d.npz", x_train=x / 255.0, y_train=y)
    images = read_source(f"npz:{tmp_path / 'd.npz'}").splits["train"].images
    assert images.shape == (*x.shape, 1) and np.array_equal(images[..., 0], x)


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.full((4, 8, 8), 300), "y_train": np.zeros(4, int)}, "0..255"),
    ({"x_train": np.full((4, 8, 8), np.nan), "y_train": np.zeros(4, int)}, "finite"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.full(4, 0.5)}, "whole numbers"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int)}, "4 labels"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8)}, "x_train without y_train"),
    ({"images": np.zeros((4, 8, 8), np.uint8)}, r"needs x_train and y_train \(or x_test and y_test"),
    ({"x_train": np.zeros((4, 8, 8, 5), np.uint8), "y_train": np.zeros(4, int)}, "expected images"),
    ({"x_train": np.zeros((0, 8, 8), np.uint8), "y_train": np.zeros(0, int)}, "x_train: holds no images"),
])
def test_npz_refuses_what_it_would_otherwise_cast(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def test_npz_never_unpickles(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.array([object()], dtype=object), y_train=np.zeros(1, int))
    with pytest.raises(DataError, match="not a readable"):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def write_listing(root, rows):
    for file, _, _ in rows:
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 10), (200, 10, 10)).save(root / file)
    lines = ["path,label,split"] + [",".join(row) for row in rows]
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def test_npz_whose_header_claims_terabytes_is_refused(tmp_path):
    """A member's header can claim any shape; numpy then fails to allocate it (MemoryError)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                   "shape": (10**7, 1000, 1000)})
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + bytes(100))
    with pytest.raises(DataError, match=r"d.npz: not a readable .npz of arrays \(Unable to allocate"):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def test_a_single_npy_given_as_npz_is_one_line(tmp_path):
    """np.load reads a .npy as a bare array, which ended in TypeError (no context manager)."""
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"x.npy: not a readable .npz of arrays \(File is not a zip file\)$"):
        read_source(f"npz:{tmp_path / 'x.npy'}")


def test_npz_larger_than_the_machines_memory_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    """Zeros compress about 1000:1, so a 30 MB .npz can hold 30 GB of arrays: the process was
    killed for memory (a header's claim alone is the test above; this one has the bytes)."""
    from cnnlab.data.readers import arrays

    np.savez_compressed(tmp_path / "d.npz", x_train=np.zeros((64, 32, 32, 3), np.uint8), y_train=np.zeros(64, int))
    monkeypatch.setattr(arrays, "machine_memory", lambda: 250_000)
    read_source(f"npz:{tmp_path / 'd.npz'}")  # its members unpack to 197,376 bytes
    monkeypatch.setattr(arrays, "machine_memory", lambda: 150_000)
    with pytest.raises(DataError, match=r"^data npz:\S+d.npz: its arrays take 192.8 KiB unpacked; this machine has "
                                        r"146.5 KiB of memory$"):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def test_npz_labels_that_skip_a_class_name_it(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 2, 0, 2]))
    result = run_cli("train", "--model", "mlp", "--data", f"npz:{tmp_path / 'd.npz'}", "--epochs", "1",
                     "--out", tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("class '1' has no images at all; add some, or leave the class out")


def test_csv_paths_are_relative_to_the_listing(tmp_path):
    listing = write_listing(tmp_path, [("a/1.png", "cat", "train"), ("b/2.png", "dog", ""),
                                       ("c/3.png", "cat", "test")])
    data = read_source(f"csv:{listing}")
    assert data.classes == ["cat", "dog"]
    assert data.splits["train"].ids == ["a/1.png", "b/2.png"]
    assert list(data.splits["train"].labels) == [0, 1]
    assert data.splits["test"].paths == [tmp_path / "c/3.png"]


def test_a_csv_listing_of_test_rows_alone_is_a_test_set(tmp_path):
    """A listing of test images was refused ('no training rows'), though it is what evaluate takes."""
    listing = write_listing(tmp_path, [("a/1.png", "cat", "test"), ("b/2.png", "dog", "test")])
    assert list(read_source(f"csv:{listing}").splits) == ["test"]
    result = run_cli("train", "--model", "mlp", "--data", f"csv:{listing}", "--image-size", "8x8", "--check", check=False)
    assert result.returncode == 2 and "holds only a test split, no training images" in result.stderr


def test_csv_paths_written_on_windows_are_read(tmp_path):
    """A listing made on Windows separates folders with backslashes: every row was an unreadable
    file named 'a\\1.png'. They are separators (and '..\\' is refused as '../' is)."""
    listing = write_listing(tmp_path, [("a/1.png", "cat", "train"), ("b/2.png", "dog", "train")])
    listing.write_text(listing.read_text().replace("a/1.png", "a\\1.png").replace("b/2.png", "b\\2.png"))
    data = read_source(f"csv:{listing}")
    assert data.splits["train"].paths == [tmp_path / "a" / "1.png", tmp_path / "b" / "2.png"]
    listing.write_text("path,label\n..\\x.png,cat\n")
    with pytest.raises(DataError, match="would be outside"):
        read_source(f"csv:{listing}")


@pytest.mark.parametrize("row, message", [
    (("../x.png", "cat", "train"), "outside"),
    (("a.png", "cat", "holdout"), "split must be"),
    (("a.txt", "cat", "train"), "not an image"),
    (("a.png", " ", "train"), "needs a path and a label"),
])
def test_csv_bad_rows_name_the_line(tmp_path, row, message):
    (tmp_path / "list.csv").write_text("path,label,split\n" + ",".join(row) + "\n")
    with pytest.raises(DataError, match=rf"line 2: .*{message}|line 2.*{message}"):
        read_source(f"csv:{tmp_path / 'list.csv'}")


def test_csv_trains_from_the_cli(tmp_path):
    rows = [(f"{c}/{i}.png", c, "train") for c in ("red", "blue") for i in range(6)]
    listing = write_listing(tmp_path / "pics", rows)
    run_cli("train", "--model", "mlp", "--data", f"csv:{listing}", "--image-size", "8x8",
            "--epochs", "1", "--out", tmp_path / "runs", "--name", "csv", "--no-report", "--quiet")
    assert (tmp_path / "runs" / "csv" / "best.pt").is_file()


def write_pixel_table(path, images, labels=None, first=0, label_last=False):
    """A CSV of pixels as Kaggle's MNIST and Fashion-MNIST come: a label column and one column
    per pixel (pixel0..pixel783, or pixel1..pixel784), a row per image; no label column in a
    competition's test.csv."""
    pixels = [f"pixel{first + i}" for i in range(images[0].size)]
    header = pixels + ["label"] if label_last else ["label", *pixels] if labels is not None else pixels
    rows = [",".join(header)]
    for index, image in enumerate(images):
        values = [str(v) for v in image.reshape(-1)]
        if labels is not None:
            values = values + [str(labels[index])] if label_last else [str(labels[index]), *values]
        rows.append(",".join(values))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_csv_of_pixels_as_kaggle_gives_mnist_is_read(tmp_path):
    """Kaggle's Digit Recognizer (train.csv: label, pixel0..pixel783) and Fashion-MNIST's CSVs
    (label, pixel1..pixel784) are how many tutorials get their images; --data train.csv said it
    expected a header with path and label columns. A CSV whose other columns are all pixels is
    now a table of square greyscale images, each row one, its labels the class names."""
    x, y = keras_arrays(40, size=8, seed=3)
    train = write_pixel_table(tmp_path / "train.csv", x, y)
    data = read_source(f"csv:{train}")
    assert data.channels == 1 and list(data.splits) == ["train"]
    assert data.classes == [str(c) for c in sorted(set(y.tolist()))]
    np.testing.assert_array_equal(data.splits["train"].images[..., 0], x)
    assert [data.classes[i] for i in data.splits["train"].labels] == [str(v) for v in y]
    moved = write_pixel_table(tmp_path / "fashion.csv", x, y, first=1, label_last=True)
    np.testing.assert_array_equal(read_source(f"csv:{moved}").splits["train"].images[..., 0], x)
    run_cli("train", "--model", "mlp", "--data", f"csv:{train}", "--image-size", "8x8", "--epochs", "1",
            "--out", tmp_path / "runs", "--name", "pixels", "--no-report", "--quiet")
    some = write_pixel_table(tmp_path / "test.csv", x[y > 0][:6], y[y > 0][:6])
    result = json.loads(run_cli("evaluate", tmp_path / "runs" / "pixels", "--data", f"csv:{some}",
                                "--format", "json", "--no-report").stdout)
    assert result["samples"] == 6 and result["split"] == "all"


def test_predict_classifies_a_kaggle_test_csv_of_pixels(tmp_path):
    """A competition's test.csv (pixel columns, no labels) is what a Kaggle submission
    classifies: predict read it as one unreadable image. Each row is an image now, named by
    the file and its row number (Kaggle's ImageId), classified as the same pixels in memory are."""
    x, y = keras_arrays(40, size=8, seed=3)
    run_cli("train", "--model", "mlp", "--data", f"csv:{write_pixel_table(tmp_path / 'train.csv', x, y)}",
            "--epochs", "1", "--out", tmp_path / "runs", "--name", "pixels", "--no-report", "--quiet")
    run = tmp_path / "runs" / "pixels"
    test = write_pixel_table(tmp_path / "test.csv", x[:5])
    printed = run_cli("predict", run, test, "--format", "csv", "--top-k", "1").stdout.splitlines()
    assert [line.split(",")[0] for line in printed[1:]] == [f"{test}:{row}" for row in range(1, 6)]
    expected = api.predict(run, x[:5], top_k=1)
    assert [line.split(",")[1] for line in printed[1:]] == [p.top[0][0] for p in expected.predictions]
    result = api.predict(run, [str(test)])
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-6)
    mixed = run_cli("predict", run, test, tmp_path / "train.csv", check=False)  # labelled: its labels are left
    assert mixed.returncode == 0 and f"{tmp_path / 'train.csv'}:40 " in mixed.stdout
    (tmp_path / "a.png").write_bytes(b"")
    other = run_cli("predict", run, test, tmp_path / "a.png", check=False)
    assert other.returncode == 2 and "a table of pixels is predicted on its own" in other.stderr


@pytest.mark.parametrize("text, message", [
    ("pixel0,pixel1,pixel2,pixel3\n0,1,2,3\n", "no label column (a competition's test.csv): nothing to train or"),
    ("label,pixel0,pixel1,pixel2\n1,0,1,2\n", "3 pixel columns, not a square image's"),
    ("label,pixel0,pixel1,pixel2,pixel3\n1,0,1,2,300\n", "pixel values must be 0..255"),
    ("label,pixel0,pixel1,pixel2,pixel3\n1,0,1,2\n", "line 2"),
    ("label,pixel0,pixel1,pixel2,pixel3\n1,0,x,2,3\n", "line 2"),
    ("label,pixel0,pixel1,pixel2,pixel3\n", "holds no images"),
])
def test_a_bad_csv_of_pixels_is_one_line_naming_it(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    result = run_cli("data", "info", f"csv:{tmp_path / 't.csv'}", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(tmp_path / "t.csv") in result.stderr and message in result.stderr, result.stderr


def test_train_accepts_arrays_and_evaluate_finds_them_later(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    x, y = keras_arrays(60, seed=2)
    xv, yv = keras_arrays(20, seed=3)
    run = api.train(model="mlp", data=((x, y), (xv, yv)), image_size=[8, 8], epochs=1,
                    out=str(tmp_path / "runs"), name="arrays", quiet=True, report=False)
    assert run.config.data.spec.startswith("npz:") and str(tmp_path / "home") in run.config.data.spec
    metrics = api.evaluate(run)
    assert metrics["samples"] == 20 and sum(map(sum, metrics["confusion_matrix"])) == 20
    # the same arrays are saved once, whatever run uses them
    again = api.train(model="mlp", data=((x, y), (xv, yv)), image_size=[8, 8], epochs=1,
                      out=str(tmp_path / "runs"), name="again", quiet=True, report=False)
    assert again.config.data.spec == run.config.data.spec
    assert len(list((tmp_path / "home" / "arrays").iterdir())) == 1
    one_hot = api.train(model="mlp", data=((x, np.eye(4)[y]), (xv, np.eye(4)[yv])), image_size=[8, 8],
                        epochs=1, out=str(tmp_path / "runs"), name="one-hot", quiet=True, report=False)
    # the labels they stand for: the same training
    assert [row["loss"] for row in one_hot.history] == [row["loss"] for row in again.history]


def test_train_refuses_arrays_of_the_wrong_shape(tmp_path):
    with pytest.raises(DataError, match="data="):
        api.train(model="mlp", data=(np.zeros(3),), epochs=1, out=str(tmp_path))


def test_train_refuses_labels_of_one_class_naming_the_arrays(tmp_path):
    """train(data=(x, y)) with every label 0 was refused as "--data npz:<the data home's copy>:
    holds one class ... give the folder that holds the class folders": a file and a folder the
    user never gave."""
    x = np.zeros((6, 8, 8), np.uint8)
    with pytest.raises(DataError, match=r"^data= y_train: every label is 0: one class; a classifier needs two or more$"):
        api.train(model="mlp", data=(x, np.zeros(6, np.int64)), epochs=1, out=str(tmp_path))
    with pytest.raises(DataError, match=r"^data= y_train: every label is 0"):
        api.train(model="mlp", data=((x, np.zeros(6, np.int64)), (x, np.arange(6) % 2)), epochs=1, out=str(tmp_path))


def test_an_npz_of_one_class_is_refused_without_a_folders_hint(tmp_path):
    """A one-class npz was told to "give the folder that holds the class folders"."""
    x = np.zeros((6, 8, 8), np.uint8)
    np.savez(tmp_path / "one.npz", x_train=x, y_train=np.zeros(6, np.int64))
    result = run_cli("train", "--model", "mlp", "--data", f"npz:{tmp_path / 'one.npz'}", "--check", check=False)
    assert result.returncode == 2 and result.stderr.strip().endswith(
        f"--data npz:{tmp_path / 'one.npz'}: holds one class (0); a classifier needs two or more"), result.stderr


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A run on 3-channel 8x8 arrays, and the files of four images it can predict."""
    tmp = tmp_path_factory.mktemp("colour")
    x, y = keras_arrays(60, channels=3, seed=4)
    run = api.train(model="mlp", data=(x, y), image_size=[8, 8], epochs=2, out=str(tmp / "runs"),
                    name="colour", quiet=True, report=False)
    pixels = keras_arrays(4, size=16, channels=3, seed=5)[0]
    files = []
    for index, image in enumerate(pixels):
        files.append(tmp / f"{index}.png")
        Image.fromarray(image).save(files[-1])
    return run, pixels, files


def tops(result):
    """The classes in order, and their probabilities to float32's rounding."""
    return [[(name, round(probability, 5)) for name, probability in p.top] for p in result.predictions]


def test_predict_takes_the_images_users_hold_in_memory(colour_run):
    """predict() took file paths only: a NumPy array (Keras' model.predict(x)) or a PIL image
    (fastai's learn.predict) was read as a file name, 'File name too long'. In-memory images are
    resized to the run's input as their files are, and predicted alike."""
    run, pixels, files = colour_run
    from_files = api.predict(run, [str(f) for f in files], top_k=4)
    expected = tops(from_files)
    for images in (pixels, pixels / 255.0, list(pixels), [Image.open(f) for f in files], torch.from_numpy(pixels)):
        result = api.predict(run, images, top_k=4)
        assert [p.path for p in result.predictions] == ["[0]", "[1]", "[2]", "[3]"]
        assert tops(result) == expected
    assert tops(api.predict(run, pixels[2], top_k=4)) == expected[2:3]  # one (H, W, C) image
    assert tops(api.predict(run, Image.open(files[1]), top_k=4)) == expected[1:2]
    # all the classes' probabilities, as Keras' model.predict returns them
    probabilities = from_files.probabilities
    assert probabilities.shape == (4, 4) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert [run.classes[i] for i in probabilities.argmax(axis=1)] == [top[0][0] for top in expected]
    assert np.allclose(api.predict(run, pixels).probabilities, probabilities, atol=1e-6)
    # how long each took, and with what (the table of `cnnlab predict` ends with it)
    in_memory = api.predict(run, pixels)
    for result in (from_files, in_memory):
        assert result.seconds > 0 and result.machine == from_files.machine
    assert from_files.machine.startswith("cpu ") and ", on " in from_files.machine


def test_predict_takes_grayscale_arrays_for_a_colour_run(colour_run):
    run, pixels, _ = colour_run
    gray = np.asarray([np.asarray(Image.fromarray(p).convert("L")) for p in pixels])
    as_files = api.predict(run, [Image.fromarray(g) for g in gray], top_k=2)
    assert len(api.predict(run, gray, top_k=2).predictions) == 4  # (N, H, W): Keras' MNIST shape
    assert tops(api.predict(run, gray[..., None], top_k=2)) == tops(as_files)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 3, 8, 8), np.uint8), r"channels first; give \(N, H, W, C\)"),
    (np.full((2, 8, 8, 3), 255.0), r"float pixels must be finite and in \[0, 1\]"),
    (np.zeros((2, 8, 8, 4), np.uint8), r"expected images shaped"),
    ([np.zeros((8, 8, 3), np.uint8), "0.png"], r"inputs\[1\]: a file path among in-memory images"),
    ([object()], r"inputs\[0\]: not an image"),
    (np.zeros((0, 8, 8, 3), np.uint8), "holds no images"),
])
def test_predict_refuses_images_it_cannot_read_with_one_line(colour_run, images, message):
    with pytest.raises(DataError, match=message):
        api.predict(colour_run[0], images)


def test_load_model_gives_the_trained_module_and_what_it_expects(colour_run):
    """Keras' load_model, timm's create_model(checkpoint_path=...): the trained nn.Module, in
    evaluation mode, with its classes and preprocessing; fed as they say, it predicts as
    predict() does."""
    run, pixels, _ = colour_run
    model = api.load_model(run)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.classes == run.classes and model.preprocessing.image_size == (8, 8)
    small = np.asarray([np.asarray(Image.fromarray(p).resize((8, 8), Image.Resampling.BILINEAR)) for p in pixels])
    with torch.no_grad():
        logits = model(model.preprocessing.standardize(torch.from_numpy(small).permute(0, 3, 1, 2).float()))
    # predict runs the run's precision: bf16 where the CPU has it
    assert np.allclose(logits.softmax(1).numpy(), api.predict(run, pixels).probabilities, atol=2e-3)
    last = api.load_model(run.path, which="last")
    saved = run.checkpoint("last")["state_dict"]
    assert all(torch.equal(value, saved[name]) for name, value in last.state_dict().items())
    with pytest.raises(CnnlabError, match="which: 'best' or 'last'"):
        api.load_model(run, which="first")


def test_a_damaged_history_leaves_the_model_usable(colour_run, tmp_path):
    """load_model and predict need the model, not the history: a damaged history.json refused
    them. load_run still refuses the run at once (whole=True), or when its history is first
    read (whole=False)."""
    copy = tmp_path / "run"
    shutil.copytree(colour_run[0].path, copy)
    (copy / "history.json").write_text("[{")
    assert api.load_model(copy).classes == colour_run[0].classes
    assert api.predict(copy, colour_run[1][:2]).probabilities.shape == (2, len(colour_run[0].classes))
    with pytest.raises(CnnlabError, match="history.json: unreadable JSON"):
        api.load_run(copy)
    run = api.load_run(copy, whole=False)
    assert run.classes == colour_run[0].classes
    with pytest.raises(CnnlabError, match="history.json: unreadable JSON"):
        run.history  # noqa: B018 - the reading is the point
    (copy / "metrics.json").write_text("{")
    assert "val_accuracy=unreadable" in repr(api.load_run(copy, whole=False))


def test_a_run_shown_in_a_notebook_is_its_table_row_and_curves(colour_run, tmp_path):
    """A Run as a notebook cell's value showed Run('runs/x', model='mlp', val_accuracy=0.6):
    what `cnnlab runs` says of it and the curves the run drew, as fastai's recorder and Keras'
    history plots are what a notebook user looks at, need a cell of their own."""
    import base64

    copy = tmp_path / "run"
    shutil.copytree(colour_run[0].path, copy)
    shown = api.load_run(copy)._repr_html_()
    accuracy = api.load_run(copy).metrics["val"]["accuracy"]
    for text in ("mlp", "arrays", "2/2", f"{accuracy:.2%}", "finished", str(copy)):
        assert text in shown, text
    assert "<img" not in shown and "report.html" not in shown  # trained with report=False
    Image.new("RGB", (4, 3)).save(copy / "curves.png")
    (copy / "report.html").write_text("<html></html>")
    shown = api.load_run(copy)._repr_html_()
    assert base64.b64encode((copy / "curves.png").read_bytes()).decode() in shown and "report.html" in shown
    (copy / "metrics.json").write_text("{")
    assert "metrics.json: unreadable JSON" in api.load_run(copy, whole=False)._repr_html_()


def test_evaluate_takes_arrays_as_keras_model_evaluate_does(tmp_path, monkeypatch):
    """Keras' model.evaluate(x_test, y_test): labels are indices of the run's classes (or
    one-hot rows), whatever the classes are called; the results go to their own folder."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    folder = make_image_folder(tmp_path / "pics", classes=3, per_class=10, size=12)
    run = api.train(model="mlp", data=f"folder:{folder}", image_size=[12, 12], epochs=3, out=str(tmp_path / "runs"),
                    name="named", quiet=True, report=False)
    files = sorted(folder.rglob("*.png"))
    x = np.asarray([np.asarray(Image.open(f)) for f in files])
    y = np.asarray([run.classes.index(f.parent.name) for f in files])
    own_metrics = (run.path / "metrics.json").read_text()
    copy = shutil.copytree(folder, tmp_path / "same-pictures")  # other data: every image evaluated
    on_folder = api.evaluate(run, data=f"folder:{copy}", report=False)
    for labels in (y, np.eye(3)[y]):
        on_arrays = api.evaluate(run, data=(x, labels), report=False)
        assert on_arrays["samples"] == 30 and on_arrays["accuracy"] == on_folder["accuracy"]
        assert on_arrays["confusion_matrix"] == on_folder["confusion_matrix"]
        assert "evaluations" in on_arrays["saved_to"]
    assert (run.path / "metrics.json").read_text() == own_metrics
    with pytest.raises(DataError, match=r"data= y_test: labels must be indices of the 3 classes \(0-2\); found 3"):
        api.evaluate(run, data=(x, y + 1), report=False)


def test_an_npz_of_a_test_set_alone_evaluates_a_run(tmp_path, colour_run):
    """Keras users keep (x_test, y_test) apart: an npz of those alone was refused ("needs
    x_train"), though it is what evaluate takes."""
    run, _, _ = colour_run
    x, y = keras_arrays(12, channels=3, seed=7)
    np.savez(tmp_path / "test.npz", x_test=x, y_test=y)
    assert api.evaluate(run, data=f"npz:{tmp_path / 'test.npz'}", report=False)["samples"] == 12


def test_npz_may_name_its_classes(tmp_path):
    x, y = keras_arrays(channels=3)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, classes=np.array(["ant", "bee", "cat", "dog"]))
    assert read_source(f"npz:{tmp_path / 'd.npz'}").classes == ["ant", "bee", "cat", "dog"]
    for classes, message in ((["ant", "bee", "cat"], "names 3 classes; the labels go up to 3"),
                             (["a", "a", "b", "c"], "names a class twice: a"), ([1, 2, 3, 4], "class names must be text")):
        np.savez(tmp_path / "d.npz", x_train=x, y_train=y, classes=np.array(classes))
        with pytest.raises(DataError, match=message):
            read_source(f"npz:{tmp_path / 'd.npz'}")


def test_evaluate_refuses_a_batch_of_no_images(colour_run):
    """evaluate(run, batch_size=0) evaluated in the run's batch size: a 0 was taken for "not
    given"."""
    run = colour_run[0]
    with pytest.raises(ConfigError, match=r"^batch_size: must be at least 1; got 0$"):
        api.evaluate(run, batch_size=0)
    assert api.evaluate(run, batch_size=7)["samples"] > 0


@pytest.mark.parametrize("labels, message", [
    (np.array(list("aabbcc")), r"labels of type <U1; give class indices, whole numbers from 0"),
    (np.array([0, 1, 0, 1, 0, 1.5]), r"labels must be whole numbers \(class indices\); found 1.5"),
    (np.array([0, 1, 0, 1, 0, np.nan]), r"labels must be whole numbers \(class indices\); found nan"),
    (np.array([0, 1, 0, 1, 0, -1]), r"labels must be 0 or more \(class indices\); found -1"),
    (np.array([0, 1, 0, 1, 0, 10**9]), r"a label of 1,000,000,000 would make 1,000,000,001 classes; at most 100,000"),
])
def test_labels_that_are_no_class_indices_are_refused_saying_why(tmp_path, labels, message):
    """Every one of these said "labels must be whole numbers from 0 (class indices)", also of a
    whole number too large and of a negative one."""
    np.savez(tmp_path / "d.npz", x_train=np.zeros((6, 8, 8), np.uint8), y_train=labels)
    with pytest.raises(DataError, match=f"d.npz: y_train: {message}$"):
        read_source(f"npz:{tmp_path / 'd.npz'}")


def test_labels_stored_as_whole_floats_are_class_indices(tmp_path):
    """Labels kept in a float array (pandas, a float32 y as Keras' fit takes it) were refused
    as not whole numbers."""
    np.savez(tmp_path / "d.npz", x_train=np.zeros((6, 8, 8), np.uint8), y_train=np.array([0.0, 1, 2, 0, 1, 2]))
    source = read_source(f"npz:{tmp_path / 'd.npz'}")
    assert source.classes == ["0", "1", "2"] and source.splits["train"].labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_train_takes_a_path_object_and_refuses_a_mapping_of_arrays(tmp_path):
    """train(data=Path(...)) was refused as "data: expected text, got PosixPath(...)", though
    train() takes str or Path; data={"x": x, "y": y} ended in a KeyError traceback."""
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=5)
    with pytest.warns(CnnlabWarning, match=f"data {folder}: a folder, read as folder:{folder}"):
        run = api.train(model="mlp", data=folder, image_size=[8, 8], epochs=1, out=str(tmp_path / "runs"),
                        quiet=True, report=False)
    assert run.config.data.spec == f"folder:{folder}"
    x, y = keras_arrays(20)
    with pytest.raises(DataError, match=r"^data=: give \(x, y\) or \(\(x, y\), \(x_val, y_val\)\) as arrays$"):
        api.train(model="mlp", data={"x": x, "y": y}, epochs=1, out=str(tmp_path / "runs"))

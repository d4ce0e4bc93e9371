from __future__ import annotations

import io
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance, ImageOps

from cnnlab.data import Augment, BatchLoader, Preprocessing, Split, load_dataset, parse_spec
from cnnlab.data.augment import STRENGTHS, SWITCHES, Augmenter
from cnnlab.data.images import CHUNK, StoredImage, decode_image, decode_many
from cnnlab.data.preprocessing import equalized
from cnnlab.data.split import stratified_split, stratified_subset
from cnnlab.errors import CnnlabError, CnnlabWarning, ConfigError, DataError
from conftest import make_image_folder, run_cli, write_idx


def make_idx_folder(root, train=60, test=20, compress=True, size=28):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        suffix = ".gz" if compress else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}",
                  rng.integers(0, 256, (count, size, size)), 2051, compress)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, 2049, compress)
    return root


@pytest.mark.parametrize("compress", [True, False])
def test_idx_gzip_and_raw(tmp_path, compress):
    data = load_dataset(f"mnist:{make_idx_folder(tmp_path / 'm', compress=compress)}", val_split=0.2)
    # 6 per class, round(0.2 * 6) = 1 held out per class
    assert len(data.splits["train"]) == 50 and len(data.splits["val"]) == 10
    assert len(data.splits["test"]) == 20
    assert data.splits["train"].images.shape[1:] == (28, 28, 1)
    assert data.classes == [str(i) for i in range(10)]


def test_idx_bad_magic_and_truncated(tmp_path):
    root = make_idx_folder(tmp_path / "m")
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(60), 2051)
    with pytest.raises(DataError, match="train-labels.*magic 2051, expected 2049"):
        load_dataset(f"mnist:{root}")
    root = make_idx_folder(tmp_path / "t")
    blob = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (60, 28, 28)) + b"\0" * 100
    (root / "train-images-idx3-ubyte.gz").write_bytes(blob)
    with pytest.raises(DataError, match="truncated IDX"):
        load_dataset(f"mnist:{root}")


def test_idx_missing_file(tmp_path):
    root = make_idx_folder(tmp_path / "m")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        load_dataset(f"mnist:{root}")


def test_spec_errors():
    with pytest.raises(CnnlabError, match="unknown data source 'minst'.*did you mean 'mnist'"):
        parse_spec("minst:/x")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset("mnist:/definitely/not/here")
    with pytest.raises(DataError, match="give the local copy as folder:PATH"):
        load_dataset("folder")
    with pytest.raises(DataError, match="digits: takes no path"):
        load_dataset("digits:/x")


@pytest.mark.parametrize("spec", ["", "  "])
def test_an_empty_data_spec_is_refused_not_read_as_the_working_folder(tmp_path, spec):
    """`--data ""` (an unset shell variable: --data "$DATA") read the working folder as a folder
    of classes: run in /tmp, 80 classes of whatever was there, 73,391 images to decode."""
    with pytest.raises(DataError, match=r"^data: empty; give a source name \(digits\), SOURCE:PATH or a folder of "
                                        r"class sub-folders$"):
        load_dataset(spec)
    result = run_cli("train", "--data", spec, "--check", cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "cnnlab train: error: --data: empty; give a source name (digits), SOURCE:PATH or a folder of class "
        "sub-folders"), result.stderr


def test_a_path_given_as_data_that_is_no_folder_is_named_as_a_path(tmp_path):
    """`--data /data/gtsrb-typo` said "unknown data source '/data/gtsrb-typo'; choose from ...",
    and `--data arrays.npz` the same of a file that is there."""
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataError, match=f"^data {missing}: no such folder \\(a data SPEC is a source name, "
                                        "SOURCE:PATH, or a folder of class sub-folders\\)$"):
        parse_spec(str(missing))
    other = tmp_path / "arrays.bin"
    other.write_bytes(b"")
    with pytest.raises(DataError, match=f"^data {other}: a file; a data SPEC is a source name, SOURCE:PATH"):
        parse_spec(str(other))
    with pytest.raises(DataError, match="^data ./x.bin: no such folder"):
        parse_spec("./x.bin")


def test_a_bare_path_to_an_npz_or_csv_file_is_read_by_its_source(tmp_path):
    """Keras keeps MNIST as ~/.keras/datasets/mnist.npz (x_train, y_train, x_test, y_test):
    `--data mnist.npz` was refused with "a file; name its source: npz:mnist.npz"."""
    arrays = tmp_path / "mnist.npz"
    np.savez(arrays, x_train=np.zeros((6, 8, 8), np.uint8), y_train=np.arange(6) % 3,
             x_test=np.zeros((3, 8, 8), np.uint8), y_test=np.arange(3))
    listing = tmp_path / "list.csv"
    for name in ("a", "b"):
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / f"{name}{i}.png")
    listing.write_text("path,label\na0.png,a\na1.png,a\nb0.png,b\nb1.png,b\n")
    for path, source in ((arrays, "npz"), (listing, "csv")):
        with pytest.warns(CnnlabWarning, match=f"^data {path}: a file, read as {source}:{path}$"):
            assert parse_spec(str(path)) == (source, path)
        with pytest.warns(CnnlabWarning):
            assert len(load_dataset(str(path), (8, 8), val_split=0.0).classes) in (2, 3)


def test_runs_written_into_the_data_folder_are_not_read_as_a_class(tmp_path, image_folder):
    """`cd photos && cnnlab train --data .` writes its run into ./runs (the default --out); the
    next training read runs/ as a fourth class, of the first run's pictures."""
    from cnnlab.cli import main

    assert main(["train", "--model", "lenet5", "--data", f"folder:{image_folder}", "--image-size", "20x20",
                 "--epochs", "1", "--quiet", "--out", str(image_folder / "runs")]) == 0
    assert list((image_folder / "runs").rglob("*.png"))
    with pytest.warns(UserWarning, match=f"{image_folder / 'runs'}: left out: it holds cnnlab runs "
                                         "\\(train --out\\), not images of a class"):
        data = load_dataset(f"folder:{image_folder}", (12, 12), val_split=0.0)
    assert data.classes == ["class_0", "class_1", "class_2"] and len(data.splits["train"]) == 36


@pytest.mark.parametrize("spec, name", [
    ("csv:/data/list.csv", "csv-list"), ("npz:/data/arrays.npz", "npz-arrays"),
    ("cifar10:/data/cifar-10-python.tar.gz", "cifar10-cifar-10-python"), ("gtsrb:/data/GTSRB.zip", "gtsrb-GTSRB"),
    ("folder:/data/my.photos", "folder-my-photos"), ("mnist:/data/mnist", "mnist"), ("digits", "digits"),
    ("hf:/data/test-00000-of-00001.parquet", "hf-test-00000-of-00001"), ("hf:/data/cifar10-train.arrow", "hf-cifar10-train"),
    (f"hf:/root/.cache/huggingface/hub/datasets--ylecun--mnist/snapshots/{'0a' * 20}", "hf-ylecun-mnist"),
    (f"hf:/h/datasets--uoft-cs--cifar10/snapshots/{'0a' * 20}/plain_text", "hf-uoft-cs-cifar10-plain-text"),
])
def test_runs_and_evaluations_are_named_by_the_data_without_its_file_suffix(spec, name):
    """A run on csv:list.csv was named ...-csv-list-csv; one on hf:ylecun/mnist, read from the
    Hugging Face cache's snapshot, by the snapshot's commit (hf-0a0a0a...)."""
    from cnnlab.runs import data_name

    assert data_name(spec) == name


def test_digits_resized_and_three_channels():
    data = load_dataset("digits", image_size=(28, 28), channels=3, val_split=0.1)
    assert data.splits["train"].images.shape[1:] == (28, 28, 3)
    assert data.splits["train"].images.dtype == np.uint8
    assert len(data.splits["train"]) + len(data.splits["val"]) == 1797


@pytest.mark.parametrize("arguments, message", [
    (dict(channels=0), "channels: must be 1 or 3; got 0"),
    (dict(channels=2), "channels: must be 1 or 3; got 2"),
    (dict(val_split=1.0), "val_split: must be at least 0 and below 1; got 1.0"),
])
def test_load_dataset_refuses_what_it_cannot_decode_or_split(arguments, message):
    """load_dataset("digits", channels=0) decoded the source's own channels: a 0 was taken for
    "not given"."""
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_dataset("digits", progress=False, **arguments)


def test_folder_classes_sorted_and_bad_files(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=2, per_class=6)
    (root / "class_0" / "notes.txt").write_text("not an image")  # ignored
    (root / "class_0" / "empty.jpg").write_bytes(b"")  # zero-byte
    (root / "class_1" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    good = np.asarray(Image.open(root / "class_1" / "000.png"))
    Image.fromarray(good).save(root / "class_1" / "truncated.jpg")
    data_bytes = (root / "class_1" / "truncated.jpg").read_bytes()
    (root / "class_1" / "truncated.jpg").write_bytes(data_bytes[: len(data_bytes) // 3])
    Image.fromarray(good[..., 0]).save(root / "class_1" / "gray.png")
    Image.fromarray(good).convert("CMYK").save(root / "class_1" / "cmyk.jpg")
    Image.fromarray(good).convert("RGBA").save(root / "class_1" / "rgba.png")
    Image.fromarray(good).convert("P").save(root / "class_1" / "palette.gif")
    (root / "z_empty").mkdir()
    with (pytest.warns(UserWarning, match="empty class folder"),
          pytest.raises(DataError, match=r"class 'z_empty' has no images at all; add some, or leave the class out$")):
        load_dataset(f"folder:{root}", (16, 16), val_split=0.2)
    (root / "z_empty").rmdir()
    data = load_dataset(f"folder:{root}", (16, 16), val_split=0.2)
    assert data.classes == ["class_0", "class_1"]
    assert set(data.unreadable) == {str(root / "class_0" / "empty.jpg"),
                                    str(root / "class_1" / "corrupt.png"),
                                    str(root / "class_1" / "truncated.jpg")}
    total = sum(len(s) for s in data.splits.values())
    assert total == 6 + 6 + 4  # gray, cmyk, rgba and palette images all decode
    assert data.splits["train"].images.shape[1:] == (16, 16, 3)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_any_mode(tmp_path, mode, channels):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (9, 7, 3), dtype=np.uint8))
    image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    array = decode_image(path, (5, 4), channels)
    assert array.shape == (5, 4, channels) and array.dtype == np.uint8


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("size", [None, (12, 8)])
def test_photos_decode_upright_as_their_exif_orientation_says(tmp_path, orientation, size):
    """A phone stores a portrait photo sideways with an EXIF orientation that every viewer
    follows; cnnlab trained on and predicted from the sideways pixels."""
    from PIL import ImageOps

    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :20] = (250, 30, 30)  # a red left third, a green top band: any turn shows
    pixels[:8, :, 1] = 250
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    with Image.open(tmp_path / "photo.jpg") as stored:
        upright = ImageOps.exif_transpose(stored).convert("RGB")
    if size is not None:
        upright = upright.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    decoded = decode_image(tmp_path / "photo.jpg", size, 3)
    assert decoded.shape == np.asarray(upright).shape
    assert np.abs(decoded.astype(int) - np.asarray(upright, dtype=int)).max() <= 40


def test_a_photo_with_damaged_exif_decodes_without_a_warning(image_folder):
    """Reading the orientation parses the EXIF block, and Pillow warns of each damaged one
    ("Corrupt EXIF data..."): a folder of such photos printed a line per photo."""
    import io

    exif = Image.Exif()
    exif[0x0112] = 6
    encoded = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(encoded, "JPEG", exif=exif)
    data = bytearray(encoded.getvalue())
    data[data.find(b"Exif") + 10] = 0xFF  # the offset of its first directory, far past the end
    (image_folder / "class_0" / "damaged.jpg").write_bytes(bytes(data))
    result = run_cli("data", "verify", f"folder:{image_folder}")
    assert result.returncode == 0 and "warning" not in result.stderr.lower(), result.stderr


def test_float_images_decode_to_their_range_not_to_black(tmp_path):
    """A 32-bit float TIFF (microscopy, remote sensing) of values in [0, 1] decoded all black:
    Pillow's conversion to 8 bits truncates each value to 0 or 1."""
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    ramp[0, 0] = np.nan
    Image.fromarray(ramp, mode="F").save(tmp_path / "x.tiff")
    gray = decode_image(tmp_path / "x.tiff", None, 1)[:, :, 0]
    np.testing.assert_array_equal(gray.ravel()[1:], np.round(ramp.ravel()[1:] * 255).astype(np.uint8))
    assert gray[0, 0] == 0


class Table:
    """A table of PNGs' bytes (an ImageStore), recording each bulk read it was asked for."""

    def __init__(self, path: Path, pixels: list[np.ndarray | None]):
        self.path, self.identity, self.pixels, self.reads = path, b"table", pixels, []

    def images(self, rows):
        self.reads.append(list(rows))
        for row in rows:
            if self.pixels[row] is None or isinstance(self.pixels[row], bytes):
                yield self.pixels[row] or "no image bytes"
                continue
            buffer = io.BytesIO()
            Image.fromarray(self.pixels[row]).save(buffer, format="PNG")
            yield buffer.getvalue()


def test_images_kept_in_tables_decode_beside_files_each_table_read_once_in_order(tmp_path):
    """Stored images are read in bulk, a table's rows in ascending order whatever order they are
    asked in (more than a chunk of them), and land in their own rows of the output."""
    rng = np.random.default_rng(0)
    stored = [rng.integers(0, 256, (6, 6, 3), dtype=np.uint8) for _ in range(CHUNK + 3)]
    stored[5], stored[7] = None, b"not an image"
    table = Table(tmp_path / "train.parquet", stored)
    file_pixels = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(file_pixels).save(tmp_path / "a.png")
    rows = [len(stored) - 1 - i for i in range(len(stored))]  # asked last row first
    items = [StoredImage(table, rows[0]), tmp_path / "a.png", *[StoredImage(table, row) for row in rows[1:]]]
    out, kept, unreadable = decode_many(items, (6, 6), 3)
    assert table.reads == [sorted(rows)]
    # named as a file is in Pillow's message, not as <_io.BytesIO object at 0x7f...>
    assert unreadable == {f"{table.path}:5": "no image bytes",
                          f"{table.path}:7": f"UnidentifiedImageError: cannot identify image file '{table.path}:7'"}
    assert kept == [i for i, item in enumerate(items) if str(item) not in unreadable]
    np.testing.assert_array_equal(out[1], file_pixels)
    for index, item in enumerate(items):
        if isinstance(item, StoredImage) and item.row not in (5, 7):
            np.testing.assert_array_equal(out[index], stored[item.row])


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` x ``height`` pixels and holds none: a decompression
    bomb as Pillow sees it on opening."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.mark.parametrize("command", [["data", "info"], ["data", "verify"]])
def test_a_decompression_bomb_is_named_as_unreadable_not_a_crash(image_folder, command):
    png_header_only(image_folder / "class_1" / "bomb.png", 20_000, 20_000)
    result = run_cli(*command, f"folder:{image_folder}", check=False)
    assert "Traceback" not in result.stderr, result.stderr
    if command[1] == "verify":  # exit 1: some file is unreadable
        assert result.returncode == 1 and "bomb.png: DecompressionBombError" in result.stdout
    else:
        assert result.returncode == 0 and "class_1" in result.stdout



def test_empty_validation_split_is_left_out_with_a_warning(tmp_path):
    root = make_image_folder(tmp_path / "one-each", classes=3, per_class=1)
    with pytest.warns(UserWarning, match=r"the val split would be empty \(val_split=0.1 of 3 samples"):
        data = load_dataset(f"folder:{root}", (12, 12), val_split=0.1)
    assert set(data.splits) == {"train"} and "val split would be empty" in data.notes[-1]


def test_folder_with_train_val_test(tmp_path):
    for split in ("train", "val", "test"):
        make_image_folder(tmp_path / "d" / split, classes=2, per_class=4)
    data = load_dataset(f"folder:{tmp_path / 'd'}", (12, 12))
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "val": 8, "test": 8}
    assert data.splits["val"].ids[0].startswith("val/")


@pytest.mark.parametrize("splits", [["test"], ["val", "test"]])
def test_a_folder_of_split_folders_without_train_is_a_test_set(tmp_path, splits):
    """data/test/<class>/ alone (the test part of the train/ val/ test/ layout) was read as one
    class named 'test'."""
    for split in splits:
        make_image_folder(tmp_path / "d" / split, classes=2, per_class=3)
    data = load_dataset(f"folder:{tmp_path / 'd'}", (12, 12), val_split=0.0)
    assert list(data.splits) == splits and data.classes == ["class_0", "class_1"]
    # beside a folder of images, the folder is one of classes (a class may be called test), as before
    (tmp_path / "d" / "cats").mkdir()
    Image.new("RGB", (12, 12)).save(tmp_path / "d" / "cats" / "1.png")
    assert load_dataset(f"folder:{tmp_path / 'd'}", (12, 12), val_split=0.0).classes == sorted(["cats", *splits])


def test_recorded_split_is_reproduced(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=3, per_class=10)
    first = load_dataset(f"folder:{root}", (12, 12), val_split=0.3, seed=5)
    again = load_dataset(f"folder:{root}", (12, 12), val_split=0.5, seed=99,
                         split_ids=first.split_ids())
    assert again.split_ids() == first.split_ids()
    np.testing.assert_array_equal(again.splits["val"].pixels(), first.splits["val"].pixels())


labels_strategy = st.lists(st.integers(0, 5), min_size=2, max_size=300).map(np.asarray)


@settings(max_examples=60, deadline=None)
@given(labels=labels_strategy, fraction=st.floats(0.0, 0.9), seed=st.integers(0, 2**31))
def test_split_disjoint_complete_stratified_deterministic(labels, fraction, seed):
    kept, held = stratified_split(labels, fraction, seed)
    assert set(kept).isdisjoint(held)
    assert sorted([*kept, *held]) == list(range(len(labels)))
    for label in np.unique(labels):
        count = (labels == label).sum()
        in_held = (labels[held] == label).sum()
        assert abs(in_held - fraction * count) <= 1 or count < 2
        if count >= 2 and fraction > 0:
            assert 1 <= in_held <= count - 1
    again = stratified_split(labels, fraction, seed)
    assert all(np.array_equal(a, b) for a, b in zip((kept, held), again, strict=True))


@settings(max_examples=30, deadline=None)
@given(labels=labels_strategy, size=st.integers(1, 400))
def test_subset_size(labels, size):
    subset = stratified_subset(labels, size, 0)
    assert len(set(subset)) == len(subset)
    assert abs(len(subset) - min(size, len(labels))) <= len(np.unique(labels))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 9), height=st.integers(6, 20), width=st.integers(6, 20),
       channels=st.sampled_from([1, 3]), pad=st.integers(0, 3), flip=st.booleans(),
       crop=st.integers(0, 3), resized=st.booleans(), lighting=st.booleans(), erasing=st.booleans(),
       seed=st.integers(0, 1000))
def test_augment_keeps_shape_and_value_range(n, height, width, channels, pad, flip, crop,
                                             resized, lighting, erasing, seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, height, width, channels), dtype=torch.uint8, generator=generator)
    split = Split(images.numpy(), np.zeros(n, dtype=np.int64), [str(i) for i in range(n)])
    augment = Augment(hflip=flip, pad_crop=min(pad, height - crop - 1, width - crop - 1),
                      random_resized_crop=0.3 if resized else 0.0,
                      pca_lighting=0.1 if lighting and channels == 3 else 0.0,
                      random_erasing=0.5 if erasing else 0.0)
    pca = {"eigval": [0.2, 0.02, 0.002], "eigvec": np.eye(3).tolist()}
    preprocessing = Preprocessing([0.0] * channels, [1.0] * channels, (height - crop, width - crop), pca=pca)
    loader = BatchLoader(split, 4, preprocessing, training=True, augment=augment, seed=seed)
    batches = [x for x, _ in loader]
    out = torch.cat(batches)
    assert out.shape == (n, channels, height - crop, width - crop)
    assert all(b.is_contiguous(memory_format=torch.channels_last) for b in batches)
    slack = 0.2 * 3 * 0.2 * 4 if augment.pca_lighting else 1e-5  # lighting shifts colours slightly
    assert out.min() >= -slack and out.max() <= 1 + slack
    if not (pad or crop or resized or augment.pca_lighting or erasing):  # flips only permute pixels
        ordered = BatchLoader(split, n, Preprocessing([0.0] * channels, [1.0] * channels))
        pixels = next(iter(ordered))[0]
        assert torch.allclose(out.flatten(1).sort(1).values.sort(0).values,
                              pixels.flatten(1).sort(1).values.sort(0).values)


def test_augment_parse():
    assert Augment.parse(["hflip", "pad_crop:2"]) == Augment(hflip=True, pad_crop=2)
    assert Augment.parse(["pad_crop"]).pad_crop == 4
    assert Augment.parse(["random_resized_crop", "pca_lighting:0.2"]) == Augment(
        random_resized_crop=0.08, pca_lighting=0.2)
    with pytest.raises(CnnlabError, match="unknown augmentation 'solarize'"):
        Augment.parse(["solarize"])


@pytest.mark.parametrize("name", [*SWITCHES, *STRENGTHS])
def test_a_process_share_is_augmented_as_those_rows_of_the_whole_batch(name):
    """Distributed training augments each process's rows of a batch; they must be what one
    process augmenting the whole batch gives them, for every augmentation there is."""
    pca = {"eigval": [0.2, 0.02, 0.002], "eigvec": np.eye(3).tolist()}
    images = torch.randint(0, 256, (8, 3, 20, 20), generator=torch.Generator().manual_seed(1)).float()
    augment = Augment.parse([name])
    whole = Augmenter(augment, (16, 16), pca, torch.Generator().manual_seed(7))(images)
    share = Augmenter(augment, (16, 16), pca, torch.Generator().manual_seed(7), slice(3, 6), 8)(images[3:6])
    torch.testing.assert_close(share, whole[3:6])


@pytest.mark.gpu
@pytest.mark.parametrize("name", [*SWITCHES, *STRENGTHS])
def test_gpu_augments_a_batch_as_the_cpu_does(name):
    """On a GPU the loader augments batches on the card from the random numbers the CPU draws:
    the same seed gives the CPU's batch, to float rounding, for every augmentation there is."""
    pca = {"eigval": [0.2, 0.02, 0.002], "eigvec": np.eye(3).tolist()}
    images = torch.randint(0, 256, (8, 3, 20, 20), generator=torch.Generator().manual_seed(1)).float()
    augment = Augment.parse([name])
    on_cpu = Augmenter(augment, (16, 16), pca, torch.Generator().manual_seed(7))(images)
    on_gpu = Augmenter(augment, (16, 16), pca, torch.Generator().manual_seed(7))(images.cuda())
    assert on_gpu.is_cuda
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=0.05)


def test_gamma_raises_each_images_levels_to_one_power_in_its_range():
    """gamma:F (albumentations' RandomGamma): each image's levels on the 0-1 scale raised to one
    power, log-uniform within 1/(1+F) .. 1+F; black and white stay, the levels' order is kept,
    and per-image standardisation does not undo it as it undoes brightness and contrast."""
    levels = torch.arange(256.0).view(1, 1, 16, 16).repeat(400, 1, 1, 1)
    out = Augmenter(Augment.parse(["gamma:1"]), (16, 16), None, torch.Generator().manual_seed(0))(levels)
    power = torch.log(out[:, 0, 8, 0] / 255) / math.log(128 / 255)  # from level 128's result
    torch.testing.assert_close(out, 255 * (levels / 255) ** power.view(-1, 1, 1, 1))
    assert 0.5 - 1e-4 <= power.min() < 0.55 and 1.9 < power.max() <= 2 + 1e-4
    assert 0.4 < (power < 1).float().mean() < 0.6  # log-uniform: as many brighter as darker
    assert (out[:, 0, 0, 0] == 0).all() and (out[:, 0, 15, 15] == 255).all()
    assert (out.flatten(1).diff(dim=1) >= 0).all()
    assert Augment.parse(["gamma"]).gamma == 0.5 and not Augment().gamma
    standardize = Preprocessing([0.0], [1.0], normalize="per_image").standardize
    shifted = Augmenter(Augment.parse(["brightness:0.1", "contrast:0.1"]), (16, 16), None,
                        torch.Generator().manual_seed(0))(64 + levels / 2)
    torch.testing.assert_close(standardize(shifted), standardize(64 + levels / 2), rtol=1e-4, atol=1e-4)
    assert (standardize(out) - standardize(levels)).abs().amax((1, 2, 3)).max() > 0.3


def test_random_erasing_replaces_one_box_of_each_chosen_image_with_noise():
    """Random erasing (Zhong et al., 2020; timm's --reprob): with probability P an image gets
    one box of 2-33% of its area, aspect 0.3-3.3, filled with noise; the rest stays as it was."""
    n, side = 64, 40
    flat = torch.full((n, 3, side, side), 7.0)  # a value the noise repeats in all three channels rarely
    erased = Augmenter(Augment.parse(["random_erasing:1"]), (side, side), None,
                       torch.Generator().manual_seed(0))(flat)
    assert erased.shape == flat.shape and erased.min() >= 0 and erased.max() <= 255
    changed = (erased != flat).any(1)
    shapes = set()
    for box in changed:
        rows, cols = torch.nonzero(box, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width  # one solid box
        assert 0.02 * 0.8 <= height * width / side**2 <= 1 / 3 * 1.2
        assert 0.3 * 0.7 <= height / width <= 3.3 / 0.7
        shapes.add((height, width))
    assert len(shapes) > n // 2  # sizes and aspects vary
    assert len({tuple(erased[k, :, side // 2, side // 2].tolist()) for k in range(n)}) > 1
    sometimes = Augmenter(Augment.parse(["random_erasing"]), (side, side), None,
                          torch.Generator().manual_seed(0))(torch.full((400, 1, side, side), 7.0))
    share = (sometimes != 7.0).flatten(1).any(1).float().mean()
    assert Augment.parse(["random_erasing"]).random_erasing == 0.25 and 0.17 < share < 0.33
    assert torch.equal(Augmenter(Augment(), (side, side), None, torch.Generator())(flat), flat)


PILLOW_OPERATIONS = {
    "brightness": lambda image, s: ImageEnhance.Brightness(image).enhance(1 + 0.99 * s),
    "color": lambda image, s: ImageEnhance.Color(image).enhance(1 + 0.99 * s),
    "contrast": lambda image, s: ImageEnhance.Contrast(image).enhance(1 + 0.99 * s),
    "sharpness": lambda image, s: ImageEnhance.Sharpness(image).enhance(1 + 0.99 * s),
    "posterize": lambda image, s: ImageOps.posterize(image, round(8 - 6 * abs(s))),
    "solarize": lambda image, s: ImageOps.solarize(image, 255 * (1 - abs(s))),
    "autocontrast": lambda image, s: ImageOps.autocontrast(image),
    "equalize": lambda image, s: ImageOps.equalize(image),
}
"""What TrivialAugment's colour operations are: the paper applied Pillow's."""


@pytest.mark.parametrize("name", PILLOW_OPERATIONS)
def test_trivial_augment_colour_operations_are_pillows(name):
    from cnnlab.data.trivial_augment import OPERATIONS, trivial_augment

    rng = np.random.default_rng(0)
    strengths = [-1.0, -0.4, 0.0, 0.3, 1.0]
    arrays = (rng.random((len(strengths), 24, 20, 3)) ** 2 * 180 + 20).astype(np.uint8)  # skewed, not 0-255
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).float()
    out = trivial_augment(images, torch.full((len(strengths),), list(OPERATIONS).index(name)),
                          torch.tensor(strengths))
    exact = name in ("posterize", "solarize", "autocontrast", "equalize")
    for k, strength in enumerate(strengths):
        want = np.asarray(PILLOW_OPERATIONS[name](Image.fromarray(arrays[k]), strength)).astype(np.float32)
        got = out[k].permute(1, 2, 0).numpy()
        # Pillow rounds its blends and the images it blends with to whole values; these stay exact
        assert np.abs(got - want).max() <= (0 if exact else 1.5), (name, strength)


def test_trivial_augment_geometry_and_one_operation_per_image():
    from cnnlab.data.trivial_augment import OPERATIONS, trivial_augment

    index = {name: k for k, name in enumerate(OPERATIONS)}
    square = torch.rand(2, 3, 16, 16) * 255
    turned = trivial_augment(square, torch.full((2,), index["rotate"]), torch.tensor([90 / 135, -90 / 135]))
    torch.testing.assert_close(turned[0], square[0].rot90(1, (1, 2)), atol=1e-3, rtol=0)
    torch.testing.assert_close(turned[1], square[1].rot90(-1, (1, 2)), atol=1e-3, rtol=0)
    for name, side in (("translate_x", 3), ("translate_y", 2)):  # 4 pixels, what it uncovers black
        shifted = trivial_augment(square, torch.full((2,), index[name]), torch.tensor([4 / 32, -4 / 32]))
        torch.testing.assert_close(shifted[0].narrow(side - 1, 0, 12), square[0].narrow(side - 1, 4, 12),
                                   atol=1e-3, rtol=0)
        torch.testing.assert_close(shifted[1].narrow(side - 1, 4, 12), square[1].narrow(side - 1, 0, 12),
                                   atol=1e-3, rtol=0)
        assert shifted[0].narrow(side - 1, 12, 4).abs().max() == 0
    rows = torch.arange(16.0).view(1, 1, 16, 1).expand(1, 3, 16, 16) * 10  # constant along each row
    sheared = trivial_augment(rows, torch.tensor([index["shear_x"]]), torch.tensor([0.5]))
    torch.testing.assert_close(sheared[..., 6:10], rows[..., 6:10], atol=1e-3, rtol=0)
    columns = rows.transpose(2, 3)  # constant along each column: a horizontal shear moves the values
    sheared = trivial_augment(columns, torch.tensor([index["shear_x"]]), torch.tensor([0.5]))
    shift = 0.99 * 0.5 * 7.5  # pixels, in the top and bottom rows (7.5 from the centre)
    assert abs(sheared[0, 0, 0, 8] - columns[0, 0, 0, 8]).item() == pytest.approx(10 * shift, abs=1e-3)
    assert (sheared[0, 0, 0, 8] - 80) * (sheared[0, 0, 15, 8] - 80) < 0  # opposite ways
    # a batch of mixed operations: each image as if it were augmented alone
    operations = torch.arange(28) % len(OPERATIONS)
    strengths = torch.linspace(-1, 1, 28)
    images = torch.rand(28, 3, 12, 14) * 200 + 20
    mixed = trivial_augment(images, operations, strengths)
    for k in range(28):
        torch.testing.assert_close(mixed[k: k + 1], trivial_augment(images[k: k + 1], operations[k: k + 1],
                                                                   strengths[k: k + 1]))


@pytest.mark.parametrize("side", [1, 2, 3, 7])
@pytest.mark.parametrize("channels", [1, 3])
def test_trivial_augment_takes_images_of_any_size_and_channels(side, channels):
    """Sharpness's 3x3 filter raised on images smaller than itself; Pillow's leaves the outermost
    pixels as they are, and an image of 1 or 2 pixels a side is all outermost pixels."""
    from cnnlab.data.trivial_augment import OPERATIONS, trivial_augment

    images = torch.rand(len(OPERATIONS), channels, side, side + 1) * 255
    out = trivial_augment(images, torch.arange(len(OPERATIONS)), torch.linspace(-1, 1, len(OPERATIONS)))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 255
    if side < 3:
        sharpness = list(OPERATIONS).index("sharpness")
        torch.testing.assert_close(out[sharpness], images[sharpness])


def test_trivial_augment_draws_an_operation_and_a_level_per_image():
    images = torch.rand(700, 3, 12, 12) * 180 + 20
    out = Augmenter(Augment.parse(["trivial_augment"]), (12, 12), None, torch.Generator().manual_seed(0))(images)
    unchanged = (out == images).flatten(1).all(1).float().mean()
    # identity, and the nine operations that do nothing at level 0 of 31 (solarize at 255 and
    # autocontrast and equalize change these images)
    assert 0.05 < unchanged < 0.14
    assert Augment.parse(["trivial_augment"]).trivial_augment
    with pytest.raises(CnnlabError, match="unknown augmentation 'trivial_augment:2'"):
        Augment.parse(["trivial_augment:2"])


def test_centre_crop_and_ten_crops():
    from cnnlab.data.augment import ten_crops

    images = np.arange(2 * 6 * 8, dtype=np.uint8).reshape(2, 6, 8, 1)
    split = Split(images, np.zeros(2, dtype=np.int64), ["a", "b"])
    loader = BatchLoader(split, 2, Preprocessing([0.0], [1 / 255], (4, 4)))
    centre = next(iter(loader))[0]
    torch.testing.assert_close(centre[0, 0], torch.from_numpy(images[0, 1:5, 2:6, 0]).float())
    views = ten_crops(next(loader.uncropped())[0], (4, 4))
    assert len(views) == 10
    torch.testing.assert_close(views[1][0, 0], torch.from_numpy(images[0, 0:4, 4:8, 0]).float())
    torch.testing.assert_close(views[5], views[0].flip(3))


def test_pca_of_rgb_covariance():
    from cnnlab.data.preprocessing import pca_of

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (50, 4, 4, 1))
    images = np.concatenate([base, base, 255 - base], axis=3).astype(np.uint8)  # all colour on one axis
    pca = pca_of(Split(images, np.zeros(50, dtype=np.int64), [str(i) for i in range(50)]))
    top = np.abs(np.asarray(pca["eigvec"])[:, -1])
    np.testing.assert_allclose(top, np.full(3, 1 / np.sqrt(3)), atol=1e-6)
    assert pca["eigval"][0] == pytest.approx(0, abs=1e-9)


def test_loader_normalises_and_is_channels_last():
    images = np.random.default_rng(0).integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    split = Split(images, np.arange(50) % 3, [str(i) for i in range(50)])
    mean, std = [0.2, 0.5, 0.7], [0.1, 0.2, 0.3]
    loader = BatchLoader(split, 16, Preprocessing(mean, std))
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    x, y = batches[0]
    assert x.shape == (16, 3, 6, 5) and x.is_contiguous(memory_format=torch.channels_last)
    expected = (torch.from_numpy(images[:16]).permute(0, 3, 1, 2).float() / 255
                - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected)
    shuffled = BatchLoader(split, 16, Preprocessing(mean, std), training=True, seed=1)
    labels = torch.cat([y for _, y in shuffled])
    assert sorted(labels.tolist()) == sorted(split.labels.tolist())


@settings(max_examples=40, deadline=None)
@given(channels=st.sampled_from([1, 3, 4]), per_channel=st.booleans(),
       mean=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
       std=st.lists(st.floats(1e-3, 10), min_size=4, max_size=4))
def test_a_given_mean_and_std_standardise_every_channel(channels, per_channel, mean, std):
    """data.mean and data.std: one value is every channel's, else one per channel; the inputs
    are (pixels/255 - mean) / std."""
    from cnnlab.data.preprocessing import given_statistics

    count = channels if per_channel else 1
    means, stds = given_statistics(mean[:count], std[:count], channels, "digits")
    assert len(means) == len(stds) == channels
    pixels = torch.rand(2, channels, 3, 3, generator=torch.Generator().manual_seed(0)) * 255
    expected = (pixels / 255 - torch.tensor(means).view(1, -1, 1, 1)) / torch.tensor(stds).view(1, -1, 1, 1)
    torch.testing.assert_close(Preprocessing(means, stds, normalize="given").standardize(pixels), expected,
                               rtol=1e-5, atol=1e-4)


def test_channel_stats():
    data = load_dataset("digits", val_split=0.0)
    mean, std = data.channel_stats("train")
    pixels = data.splits["train"].pixels().astype(np.float64) / 255
    assert mean[0] == pytest.approx(pixels.mean())
    assert std[0] == pytest.approx(pixels.std())


def test_decode_cache_hit_and_invalidation(tmp_path, monkeypatch):
    import cnnlab.data.cache as cache

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    real = cache.decode_many
    monkeypatch.setattr(cache, "decode_many", lambda paths, *a, **k: calls.append(len(paths)) or real(paths, *a, **k))
    root = make_image_folder(tmp_path / "f", classes=2, per_class=5)
    first = load_dataset(f"folder:{root}", (12, 12), val_split=0.2)
    second = load_dataset(f"folder:{root}", (12, 12), val_split=0.4, seed=3)  # other split, same cache
    assert calls == [10] and not first.cache["hit"] and second.cache["hit"]
    assert isinstance(second.splits["train"].images, np.memmap)
    np.testing.assert_array_equal(first.splits["train"].gather(np.array([0])),
                                  np.asarray(Image.open(root / "class_0" / "000.png").resize((12, 12), Image.Resampling.BILINEAR))[None])
    load_dataset(f"folder:{root}", (16, 16))  # another size: decoded again
    assert calls == [10, 10]
    Image.new("RGB", (20, 20), "red").save(root / "class_1" / "004.png")  # a changed file
    import os
    os.utime(root / "class_1" / "004.png", ns=(1, 1))
    changed = load_dataset(f"folder:{root}", (12, 12))
    assert calls == [10, 10, 10] and not changed.cache["hit"]


def test_a_decode_cache_larger_than_the_free_disk_is_refused_before_decoding(tmp_path, monkeypatch):
    """The cache is a memory map on disk: a disk that fills while decoding into it kills the
    process with SIGBUS, no error to catch."""
    import shutil

    import cnnlab.data.cache as cache

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 5000, 5000))
    root = make_image_folder(tmp_path / "f", classes=2, per_class=5)
    with pytest.raises(CnnlabError, match=r"cache: the decode cache needs 16.9 KiB \(10 images of 24x24x3\); the "
                                          r"disk there has 4.9 KiB free: set CNNLAB_CACHE to a folder on a larger "
                                          r"disk, or decode smaller images \(image_size\)"):
        load_dataset(f"folder:{root}", (24, 24), val_split=0.2)
    assert not list((tmp_path / "cache").rglob("*.npy"))
    load_dataset(f"folder:{root}", (12, 12), val_split=0.2)  # 4,320 bytes fit in 5,000


def test_an_interrupted_decode_leaves_no_half_cache_behind(tmp_path, monkeypatch):
    """Ctrl-C while decoding a large folder left its half-written memory map (the size of the
    whole decoded data set) in the cache for good, and so did a process killed outright."""
    import subprocess
    import sys

    import cnnlab.data.cache as cache

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "f", classes=2, per_class=5)
    real = cache.decode_many

    def interrupted(paths, size, channels, progress, *args, **kwargs):
        progress(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "decode_many", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(f"folder:{root}", (12, 12))
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    # a process killed outright cannot clean up: the next decode into that folder does
    monkeypatch.setattr(cache, "decode_many", real)
    load_dataset(f"folder:{root}", (12, 12))
    folder = next((tmp_path / "cache").iterdir())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".images.{int(gone.stdout)}.npy"
    stale.write_bytes(b"half a cache")
    (folder / "images.npy").unlink()
    load_dataset(f"folder:{root}", (12, 12))
    assert not stale.exists() and sorted(p.name for p in folder.iterdir()) == ["images.npy", "meta.json"]


def test_data_cache_lists_and_clears_the_decoded_caches(tmp_path, monkeypatch):
    """Each folder and size decodes into a cache of its own, which nothing ever removed: a user
    trying sizes on a large folder filled the disk without a way to see it."""
    import json
    import os
    import re
    import time

    from cnnlab.data.cache import readable_size

    root = tmp_path / "cache"
    monkeypatch.setenv("CNNLAB_CACHE", str(root))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "empty-data-home"))  # the listing ends with the caches
    (root / "datasets" / "mnist").mkdir(parents=True)  # downloads live beside the caches by default
    flowers = make_image_folder(tmp_path / "flowers", classes=2, per_class=5)
    signs = make_image_folder(tmp_path / "signs", classes=3, per_class=4)
    load_dataset(f"folder:{flowers}", (12, 12))
    load_dataset(f"folder:{signs}", (16, 16), channels=1)

    def entry(source):
        return next(e for e in root.iterdir() if (e / "meta.json").is_file()
                    and json.loads((e / "meta.json").read_text())["source"] == str(source))

    def size(folder):
        return sum(f.stat().st_size for f in folder.iterdir())

    listing = run_cli("data", "cache").stdout
    assert listing.startswith(f"{root} (CNNLAB_CACHE)\n")
    for source, count, shape in ((flowers, 10, "12x12x3"), (signs, 12, "16x16x1")):
        row = rf"\n{re.escape(readable_size(size(entry(source))))} +{count} +{shape} +\d{{4}}-\d\d-\d\d \d\d:\d\d +{re.escape(str(source))}\n"
        assert re.search(row, listing), listing
    total = size(entry(flowers)) + size(entry(signs))
    assert listing.rstrip().endswith(f"2 caches, {readable_size(total)}")

    old = entry(flowers)
    old_size = size(old)
    long_ago = time.time() - 40 * 86400
    for path in old.iterdir():
        os.utime(path, (long_ago, long_ago))
    cleared = run_cli("data", "cache", "--clear", "--older-than", "30").stdout.strip()
    assert cleared == f"removed 1 cache, {readable_size(old_size)}"
    assert not old.exists() and entry(signs).is_dir()
    for path in entry(signs).iterdir():
        os.utime(path, (long_ago, long_ago))
    load_dataset(f"folder:{signs}", (16, 16), channels=1)  # read from the cache: a use
    assert run_cli("data", "cache", "--clear", "--older-than", "30").stdout.strip() == "removed 0 caches, 0.0 KiB"

    busy = make_image_folder(tmp_path / "busy", classes=2, per_class=3)
    load_dataset(f"folder:{busy}", (8, 8))
    decoding = entry(busy)
    (decoding / f".images.{os.getpid()}.npy").write_bytes(b"a live process decodes here")
    signs_size = size(entry(signs))
    assert run_cli("data", "cache", "--clear").stdout.strip() == (
        f"removed 1 cache, {readable_size(signs_size)}; left 1 that a running process is decoding into")
    assert (root / "datasets" / "mnist").is_dir() and decoding.is_dir() and not list(root.glob("*/images.npy"))[1:]
    bad = run_cli("data", "cache", "--older-than", "-1", check=False)
    assert bad.returncode == 2 and "argument --older-than: expected a number of days of at least 0; got '-1'" in bad.stderr


def test_a_cache_shared_read_only_is_still_read(tmp_path, monkeypatch):
    """A hit records its use on meta.json's time; where that cannot be written (a cache on a
    read-only share) the cache must still be read, not decoded again."""
    import cnnlab.data.cache as cache

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "f", classes=2, per_class=3)
    load_dataset(f"folder:{root}", (8, 8))

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(cache.os, "utime", read_only)
    assert load_dataset(f"folder:{root}", (8, 8)).cache["hit"]


def test_loader_reads_memmap_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "f", classes=3, per_class=8)
    data = load_dataset(f"folder:{root}", (10, 10), val_split=0.25)
    val = data.splits["val"]
    loader = BatchLoader(val, 4, Preprocessing([0.0] * 3, [1.0] * 3))
    pixels = torch.cat([x for x, _ in loader]) * 255
    expected = torch.from_numpy(val.pixels()).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(pixels, expected, atol=1e-3, rtol=0)


def test_shifted_views_move_the_image_a_pixel_each_way():
    from cnnlab.data.augment import shifted_views

    images = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    down_right, up_left = shifted_views(images)
    assert down_right.shape == up_left.shape == images.shape
    torch.testing.assert_close(down_right[:, :, 1:, 1:], images[:, :, :-1, :-1])
    torch.testing.assert_close(up_left[:, :, :-1, :-1], images[:, :, 1:, 1:])
    torch.testing.assert_close(down_right[:, :, 0, 1:], images[:, :, 1, :-1])  # the edge mirrored in


def test_alternating_flips_mirror_each_image_in_every_other_epoch():
    n = 64
    images = torch.randint(0, 256, (n, 4, 4, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = Split(images.numpy(), np.arange(n, dtype=np.int64), [str(i) for i in range(n)])
    preprocessing = Preprocessing([0.0], [1.0], (4, 4))
    assert Augment.parse(["hflip:alternate"]) == Augment(hflip=True, alternate_flips=True)
    loader = BatchLoader(split, 10, preprocessing, training=True, augment=Augment.parse(["hflip:alternate"]), seed=3)
    original = images.permute(0, 3, 1, 2).float() / 255

    def mirrored_in(epoch):
        loader.set_epoch(epoch)
        mirrored = torch.zeros(n, dtype=torch.bool)
        for x, labels in loader:
            unchanged = torch.isclose(x, original[labels]).flatten(1).all(1)
            assert (torch.isclose(x, original[labels].flip(3)).flatten(1).all(1) | unchanged).all()
            mirrored[labels] = ~unchanged
        return mirrored

    first = mirrored_in(0)
    assert 0.25 < first.float().mean() < 0.75  # a random half, not all or none
    assert torch.equal(mirrored_in(1), ~first)
    assert torch.equal(mirrored_in(2), first)
    with pytest.raises(CnnlabError, match="unknown augmentation 'hflip:sometimes'"):
        Augment.parse(["hflip:sometimes"])


@pytest.mark.parametrize("item, message", [
    ("scale:1", r"scale must be below 1 \(the zoom, 1 \+- scale, stays above 0\); got 'scale:1'"),
    ("translate:2", r"translate must be at most 1 \(a fraction of the image's side\); got 'translate:2'"),
    ("brightness:1.5", r"brightness must be at most 1 \(a fraction of the pixel range\); got 'brightness:1.5'"),
    ("contrast:5", r"contrast must be at most 1 \(the contrast factor, 1 \+- contrast, stays at 0 or above\)"),
    ("random_resized_crop:1.5", r"random_resized_crop must be at most 1 \(the smallest share of the image's area\)"),
    ("random_erasing:2", r"random_erasing must be at most 1 \(the probability that an image has a box erased\)"),
    ("gamma:1e308", r"gamma must be at most 3 \(powers within 1/4..4; beyond them most levels go to black or white\)"),
    ("rotate:400", r"rotate must be at most 180 \(degrees either way; 180 already turns an image any way\)"),
])
def test_augmentation_strengths_beyond_their_meaning_are_refused(item, message):
    """Keras' bounds for its layers (RandomZoom, RandomTranslation, RandomBrightness,
    RandomContrast): a zoom of 1 - 5 would mirror the image through its centre. gamma:1e308
    was accepted and trained on black-and-white images (11% on digits); rotate:400, likely
    meant as 40, turned images any way."""
    with pytest.raises(CnnlabError, match=message):
        Augment.parse([item])


def test_pad_crop_wider_than_the_input_is_refused_before_training():
    """Reflection padding needs fewer pixels than the side it reflects; torch raised this only
    at the first training batch, after decoding."""
    with pytest.raises(CnnlabError, match=r"pad_crop:28 pads 28 pixels; a 28x28 input reflects at most 27"):
        Augment.parse(["pad_crop:28"]).check(1, (28, 28))
    Augment.parse(["pad_crop:27"]).check(1, (28, 28))


def test_progressive_resizing_scales_the_training_batches_of_its_epochs_only():
    n = 12
    images = torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    split = Split(images.numpy(), np.arange(n, dtype=np.int64), [str(i) for i in range(n)])
    preprocessing = Preprocessing([0.0] * 3, [1.0] * 3, (16, 16))
    loader = BatchLoader(split, 5, preprocessing, training=True, augment=Augment.parse(["pad_crop:2"]),
                         resizing=[(0.5, 2), (0.75, 1)])
    assert [loader.training_size(epoch) for epoch in range(5)] == [(8, 8), (8, 8), (12, 12), (16, 16), (16, 16)]
    for epoch, side in [(0, 8), (2, 12), (3, 16)]:
        loader.set_epoch(epoch)
        batches = list(loader)
        assert {tuple(x.shape[1:]) for x, _ in batches} == {(3, side, side)}
        assert sum(len(labels) for _, labels in batches) == n
    # the scaled batch is the full-size one made smaller, not other images or other crops
    loader.set_epoch(0)
    small, _ = next(iter(loader))
    full = BatchLoader(split, 5, preprocessing, training=True, augment=Augment.parse(["pad_crop:2"]))
    large, _ = next(iter(full))
    torch.testing.assert_close(small, torch.nn.functional.interpolate(large, size=(8, 8), mode="bilinear",
                                                                      antialias=True, align_corners=False))
    evaluated, _ = next(iter(BatchLoader(split, 5, preprocessing)))
    assert evaluated.shape[2:] == (16, 16)


@settings(max_examples=60, deadline=None)
@given(phases=st.lists(st.tuples(st.floats(0.05, 1.0), st.integers(1, 5)), max_size=4),
       side=st.integers(8, 64), epoch=st.integers(0, 25))
def test_each_epoch_trains_at_its_phase_scale_and_at_full_size_after_the_phases(phases, side, epoch):
    split = Split(np.zeros((1, side, side, 1), dtype=np.uint8), np.zeros(1, dtype=np.int64), ["0"])
    loader = BatchLoader(split, 1, Preprocessing([0.0], [1.0], (side, side)), training=True, resizing=phases)
    ends = np.cumsum([epochs for _, epochs in phases]).tolist()
    phase = next((i for i, end in enumerate(ends) if epoch < end), None)
    height, width = loader.training_size(epoch)
    if phase is None:
        assert (height, width) == (side, side)
    else:
        assert height == width == max(1, round(side * phases[phase][0]))
        assert 1 <= height <= side


def test_loader_starts_an_epoch_at_any_batch_with_the_batches_the_whole_epoch_gives():
    """What a run resumed within an epoch trains on: the same samples and augmentations."""
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (23, 10, 10, 3), dtype=np.uint8), np.arange(23) % 3, [str(i) for i in range(23)])
    loader = BatchLoader(split, 4, Preprocessing([0.0] * 3, [1.0] * 3, (8, 8)), training=True,
                         augment=Augment.parse(["hflip", "pad_crop:2"]), seed=5)
    loader.set_epoch(3)
    whole = list(loader)
    for first in (0, 1, 5, 6):
        tail = list(loader.batches(first))
        assert len(tail) == len(whole) - first
        for (images, labels), (want_images, want_labels) in zip(tail, whole[first:], strict=True):
            assert torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_augmented_views_show_what_evaluation_and_training_see():
    """The Keras tutorials plot a few augmented copies of an image (fastai: show_batch); without
    it, augmentations were tuned blind. Each row: the evaluation view (centre crop), then
    training views drawn as the training loader draws them."""
    from cnnlab.data.inspect import augmented_views

    data = load_dataset("digits", (16, 16), val_split=0.0)
    plain, titles = augmented_views(data, [], None, views=3)
    assert plain.shape == (8 * 4, 16, 16, 1) and titles[:4] == ["0: evaluated", "trained", "trained", "trained"]
    for row in range(8):  # no augmentation, no crop: every view is the stored image
        assert all(np.array_equal(plain[row * 4], plain[row * 4 + k]) for k in (1, 2, 3))
    views, _ = augmented_views(data, ["hflip", "pad_crop:2"], (12, 12), views=5, rows=3)
    assert views.shape == (3 * 6, 12, 12, 1)
    distinct = {views[k].tobytes() for k in range(1, 6)}
    assert len(distinct) > 1  # random views differ
    again, _ = augmented_views(data, ["hflip", "pad_crop:2"], (12, 12), views=5, rows=3)
    assert np.array_equal(views, again)  # seeded
    # the evaluation view is the centre crop of the stored image
    plain16, _ = augmented_views(data, [], None, views=1, rows=1)
    assert np.array_equal(views[0], plain16[0][2:14, 2:14])


@pytest.mark.parametrize("mixing", ["mixup:0.4", "cutmix"])
def test_augmented_views_draw_mixup_and_cutmix_as_the_training_step_mixes(mixing):
    """Mixup and CutMix mix two images in the training step; the preview left them out, so a
    user tuning them saw no mixed image. Each trained view is now the batch's mixed image,
    titled with the share of the larger part and the class of the other."""
    from cnnlab.data.inspect import augmented_views

    data = load_dataset("digits", (16, 16), val_split=0.0)
    plain, _ = augmented_views(data, [], None, views=4, rows=4)
    mixed, titles = augmented_views(data, [mixing], None, views=4, rows=4)
    trained = [k for k, title in enumerate(titles) if not title.endswith("evaluated")]
    assert all(re.fullmatch(r"\d+% \d \+ \d", titles[k]) for k in trained), titles
    assert all(50 <= int(titles[k].split("%")[0]) <= 100 for k in trained)
    assert any(not np.array_equal(mixed[k], plain[k]) for k in trained)  # images were mixed
    again, _ = augmented_views(data, [mixing], None, views=4, rows=4)
    assert np.array_equal(mixed, again)


def test_data_info_previews_augmentations(tmp_path):
    out = tmp_path / "views.png"
    run_cli("data", "info", "digits", "--image-size", "16x16", "--crop", "12x12", "--augment", "hflip",
            "--augment", "pad_crop:2", "--preview", out)
    with Image.open(out) as picture:
        assert picture.width > 400 and picture.height > 400
    bad = run_cli("data", "info", "digits", "--augment", "spin", "--preview", out, check=False)
    assert bad.returncode == 2 and "spin" in bad.stderr


def test_data_cache_lists_and_clears_the_extracted_archives(tmp_path, monkeypatch):
    """Archives given as data are extracted into the data home, as large again as the archive
    or more: data cache shows them, and --clear removes them (they are extracted again when
    next read), leaving the archives and downloads."""
    import re
    import shutil

    from cnnlab.data.cache import readable_size

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    archive = Path(shutil.make_archive(str(tmp_path / "photos"), "zip", make_image_folder(tmp_path / "p", per_class=3)))
    load_dataset(f"folder:{archive}", (8, 8))
    (extracted,) = (tmp_path / "home" / "extracted").iterdir()
    # the disk the files take, which --clear frees (du's figure): small images take a block each
    size = sum(f.stat().st_blocks * 512 for f in extracted.rglob("*") if f.is_file())
    assert size > sum(f.stat().st_size for f in extracted.rglob("*") if f.is_file())
    listing = run_cli("data", "cache").stdout
    assert f"archives extracted into {tmp_path / 'home' / 'extracted'}" in listing
    assert re.search(rf"\n{re.escape(readable_size(size))} +\d{{4}}-\d\d-\d\d \d\d:\d\d +{extracted.name}\n", listing)
    cleared = run_cli("data", "cache", "--clear").stdout.strip()
    assert cleared.endswith(f"; 1 extracted archive, {readable_size(size)}")
    assert not extracted.exists() and archive.is_file()
    assert load_dataset(f"folder:{archive}", (8, 8)).classes == ["class_0", "class_1", "class_2"]  # again


def test_data_cache_shows_what_the_data_home_holds_and_clear_keeps_it(tmp_path, monkeypatch):
    """Downloads, URLs' local copies and the arrays train(data=...) saved take disk in the data
    home; data cache shows each folder's size. --clear keeps them: runs read them again."""
    from cnnlab.data.cache import readable_size

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    home = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_DATA", str(home))
    for relative, size in (("mnist/train-images-idx3-ubyte.gz", 3000), ("urls/0123/photos.tgz", 5000),
                           ("arrays/abcd.npz", 7000)):
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        (home / relative).write_bytes(os.urandom(size))  # random: no filesystem compresses it away
    listing = run_cli("data", "cache").stdout
    assert f"kept in {home} (CNNLAB_DATA; --clear leaves them)" in listing
    for name in ("arrays", "mnist", "urls"):
        on_disk = sum(f.stat().st_blocks * 512 for f in (home / name).rglob("*") if f.is_file())
        assert f"\n{readable_size(on_disk):<11}{name}\n" in listing, listing
    run_cli("data", "cache", "--clear")
    assert sum(f.stat().st_size for f in home.rglob("*") if f.is_file()) == 15000


def equalize_hist_reference(image: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist for one channel of uint8 levels, without its final rounding."""
    counts = np.bincount(image.ravel(), minlength=256)
    below = np.cumsum(counts)
    lowest = below[image.min()]
    return (below[image] - lowest) * 255 / max(image.size - lowest, 1)


@settings(max_examples=40, deadline=None)
@given(images=st.integers(1, 3).flatmap(lambda n: st.integers(1, 3).flatmap(lambda c: st.tuples(
           st.just((n, c)), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1), st.integers(1, 256)))),
       channels_last=st.booleans())
def test_equalized_is_opencvs_equalize_hist_per_image_and_channel(images, channels_last):
    (n, c), height, width, seed, levels = images
    pixels = np.random.default_rng(seed).integers(0, levels, size=(n, c, height, width)).astype(np.uint8)
    x = torch.from_numpy(pixels).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = equalized(x)
    expected = np.stack([[equalize_hist_reference(channel) for channel in image] for image in pixels])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-3)


def test_equalized_standardisation_gives_a_washed_out_image_the_input_of_the_image_itself():
    """What the option is for: a sign filmed over-exposed (its levels pushed up the range by a
    gamma, their order kept) reaches the network as the well-exposed one does, where per-image
    standardisation, which undoes only shifts and scales, leaves it paler."""
    pixels = 5.0 * torch.from_numpy(np.random.default_rng(0).integers(0, 52, size=(2, 1, 8, 8)))
    washed_out = (255 * (pixels / 255) ** 0.4).round()
    assert washed_out.unique().numel() == pixels.unique().numel()  # no two levels merged
    equalizing, standardizing = (Preprocessing([0.0], [1.0], normalize=name) for name in ("equalized", "per_image"))
    torch.testing.assert_close(equalizing.standardize(washed_out), equalizing.standardize(pixels))
    assert (standardizing.standardize(washed_out) - standardizing.standardize(pixels)).abs().max() > 0.3
    assert equalizing.standardize(torch.full((2, 1, 4, 4), 250.0)).abs().max() == 0  # a flat image stays finite


@pytest.mark.gpu
def test_gpu_equalizes_as_the_cpu_does():
    pixels = torch.randint(0, 256, (4, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float()
    pixels[1] = pixels[1] // 64 * 64  # few levels
    torch.testing.assert_close(equalized(pixels.cuda()).cpu(), equalized(pixels))


@pytest.mark.parametrize("layout", ["folder", "gtsrb"])
def test_a_split_none_of_whose_images_can_be_read_is_named(tmp_path, layout):
    """A folder of damaged images, or GTSRB converted from .ppm to .png while its CSVs still
    name .ppm, ended in "ValueError: need at least one array to concatenate"."""
    from test_datasets import write_gtsrb_official

    if layout == "folder":
        root = make_image_folder(tmp_path / "photos", classes=2, per_class=3)
        for path in root.rglob("*.png"):
            path.write_bytes(b"not an image")
        spec, count = f"folder:{root}", 6
    else:
        root = write_gtsrb_official(tmp_path / "g")
        for path in (root / "GTSRB" / "Final_Training").rglob("*.ppm"):
            path.rename(path.with_suffix(".bak"))
        spec, count = f"gtsrb:{root}", 36
    with pytest.raises(DataError, match=rf"^data {re.escape(spec)}: none of the {count} images of its train split "
                                        r"could be read \(.+: .+\); cnnlab data verify lists each with its reason$"):
        load_dataset(spec, (16, 16))
    refused = run_cli("train", "--data", spec, "--image-size", "16x16", "--epochs", "1", "--out", tmp_path / "runs",
                      check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert not (tmp_path / "runs").exists()


def test_a_bare_path_to_an_archive_names_the_sources_that_read_archives(tmp_path):
    """`--data flower_photos.tgz` said "a file; a data SPEC is a source name, SOURCE:PATH, or a
    folder of class sub-folders", though the folder source reads such an archive."""
    import tarfile

    archive = tmp_path / "flower_photos.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(make_image_folder(tmp_path / "flower_photos", per_class=2), arcname="flower_photos")
    with pytest.raises(DataError, match=f"^data {archive}: an archive; name the source that reads it: "
                                        f"folder:{archive} for class folders inside it, or the data set's own "
                                        rf"\(gtsrb:, caltech256:, cifar10:\.\.\.\)$"):
        parse_spec(str(archive))

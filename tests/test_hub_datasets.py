"""Hugging Face datasets (``hf:``): parquet files as the Hub stores them and Arrow files as
``save_to_disk`` and ``load_dataset``'s cache write them, made here as the ``datasets`` library
makes them: an ``Image`` column (a struct of the file's bytes and its name), a ``ClassLabel``
column, and the features in the schema's ``huggingface`` metadata."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cnnlab.api import predict
from cnnlab.data import load_dataset, read_source
from cnnlab.data.images import StoredImage
from cnnlab.data.sources import source_name
from cnnlab.errors import DataError
from conftest import run_cli

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def encoded(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def banded(label: int, classes: int, size: int = 16, seed: int = 0, grey: bool = False) -> np.ndarray:
    """An image whose class is visible: a bright band per class over noise."""
    pixels = np.random.default_rng(seed).integers(0, 60, (size, size) if grey else (size, size, 3), dtype=np.uint8)
    pixels[label * size // classes:(label + 1) * size // classes] = 230
    return pixels


def write_hub_parquet(path: Path, images: list[np.ndarray], labels: list, names: list[str] | None = None,
                      image_column: str = "img", label_columns: dict[str, tuple[list, list[str] | None]] | None = None,
                      format: str = "PNG", metadata: bool = True, image_bytes: list | None = None,
                      info: bool = False) -> Path:
    """A parquet file (an Arrow stream where ``path`` ends in .arrow) as ``datasets`` writes a
    dataset: ``labels`` in a ``label`` column (a ClassLabel of ``names``; names None: the labels
    as they are), more label columns in ``label_columns`` (name -> labels, names); without
    ``metadata``, no ``huggingface`` key; with ``info``, a dataset_info.json beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    datas = image_bytes if image_bytes is not None else [encoded(pixels, format) for pixels in images]
    columns = {image_column: pa.array([{"bytes": data, "path": f"{i}.{format.lower()}"} for i, data in enumerate(datas)],
                                      type=IMAGE)}
    features = {image_column: {"_type": "Image"}}
    for column, (values, classes) in {"label": (labels, names), **(label_columns or {})}.items():
        columns[column] = pa.array(values)
        features[column] = {"names": classes, "_type": "ClassLabel"} if classes else {"dtype": "string", "_type": "Value"}
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    if path.suffix == ".arrow":  # as datasets' ArrowWriter writes: a stream
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        pq.write_table(table, path)
    if info:  # save_to_disk's dataset_info.json beside the file
        (path.parent / "dataset_info.json").write_text(json.dumps({"features": features}))
    return path


def hub_snapshot(root: Path, classes: list[str] = ("dog", "cat", "bird"), train: int = 24, test: int = 9,
                 grey: bool = False) -> Path:
    """A Hub snapshot's folder: plain_text/ holding two training shards and a test shard."""
    shards = {"train-00000-of-00002": range(0, train // 2), "train-00001-of-00002": range(train // 2, train),
              "test-00000-of-00001": range(train, train + test)}
    for name, rows in shards.items():
        labels = [i % len(classes) for i in rows]
        write_hub_parquet(root / "plain_text" / f"{name}.parquet",
                          [banded(label, len(classes), seed=i, grey=grey) for i, label in zip(rows, labels, strict=True)],
                          labels, list(classes))
    return root


def stored_bytes(image: StoredImage) -> bytes:
    """The image file's bytes as its table holds them."""
    (data,) = image.store.images([image.row])
    return data


def decoded(image: StoredImage) -> np.ndarray:
    return decoded_bytes(stored_bytes(image))


def test_a_hub_snapshot_is_read_by_split_with_its_class_names(tmp_path):
    root = hub_snapshot(tmp_path / "snapshot")
    assert source_name(str(root)) == "hf"
    data = read_source(f"hf:{root}")
    assert data.classes == ["dog", "cat", "bird"]  # the ClassLabel's order, not sorted
    assert sorted(data.splits) == ["test", "train"] and data.channels == 3
    train, test = data.splits["train"], data.splits["test"]
    assert len(train) == 24 and len(test) == 9
    assert train.ids[:2] == ["train-00000-of-00002.parquet:0", "train-00000-of-00002.parquet:1"]
    assert train.ids[12] == "train-00001-of-00002.parquet:0"
    assert train.labels.tolist() == [i % 3 for i in range(24)]
    # the files as stored, nothing re-encoded: the PNGs give the pixels back exactly
    assert np.array_equal(decoded(train.paths[13]), banded(13 % 3, 3, seed=13))
    assert np.array_equal(decoded(test.paths[0]), banded(24 % 3, 3, seed=24))
    assert str(train.paths[13]) == f"{root / 'plain_text' / 'train-00001-of-00002.parquet'}:1"


def test_one_file_is_the_split_its_name_says(tmp_path):
    images = [banded(i % 2, 2, seed=i) for i in range(6)]
    alone = write_hub_parquet(tmp_path / "test-00000-of-00001.parquet", images, [0, 1] * 3, ["a", "b"])
    assert source_name(str(alone)) == "hf"
    assert list(read_source(f"hf:{alone}").splits) == ["test"]  # a test set on its own, to evaluate on
    unnamed = write_hub_parquet(tmp_path / "flowers.parquet", images, [0, 1] * 3, ["a", "b"])
    assert list(read_source(f"hf:{unnamed}").splits) == ["train"]


def test_jpeg_bytes_keep_their_format_and_greyscale_is_one_channel(tmp_path):
    jpeg = write_hub_parquet(tmp_path / "a" / "train.parquet", [banded(0, 2), banded(1, 2)], [0, 1], ["x", "y"],
                             format="JPEG")
    data = read_source(f"hf:{jpeg}")
    assert all(stored_bytes(image).startswith(b"\xff\xd8\xff") for image in data.splits["train"].paths)
    assert data.channels == 3
    assert read_source(f"hf:{hub_snapshot(tmp_path / 'grey', grey=True)}").channels == 1


def test_a_second_label_column_is_chosen_by_the_label_option(tmp_path):
    """CIFAR-100 on the Hub: fine_label and coarse_label, both ClassLabels."""
    images = [banded(i % 4, 4, seed=i) for i in range(8)]
    fine, coarse = list(range(4)) * 2, [0, 0, 1, 1] * 2
    path = write_hub_parquet(tmp_path / "train.parquet", images, fine, ["apple", "bee", "cloud", "dolphin"],
                             label_columns={"coarse_label": (coarse, ["fruit", "animal"])})
    with pytest.warns(UserWarning, match=r"labels from the column label \(also: coarse_label; the source option"):
        default = read_source(f"hf:{path}")
    assert default.classes == ["apple", "bee", "cloud", "dolphin"]
    assert any("labels from the column label (also: coarse_label" in note for note in default.notes)
    shown = run_cli("data", "info", f"hf:{path}", "--image-size", "16x16").stderr
    assert "warning: " in shown and "labels from the column label (also: coarse_label" in shown
    chosen = read_source(f"hf:{path}", {"label": "coarse_label"})
    assert chosen.classes == ["fruit", "animal"] and chosen.splits["train"].labels.tolist() == coarse
    with pytest.raises(DataError, match=r"the source option label names 'coarse', which is no column .*coarse_label"):
        read_source(f"hf:{path}", {"label": "coarse"})


def test_labels_without_the_hubs_metadata_are_the_class_names(tmp_path):
    images = [banded(i % 3, 3, seed=i) for i in range(6)]
    named = write_hub_parquet(tmp_path / "n" / "train.parquet", images, ["rose", "iris", "tulip"] * 2, metadata=False)
    data = read_source(f"hf:{named}")
    assert data.classes == ["iris", "rose", "tulip"]
    assert data.splits["train"].labels.tolist() == [1, 0, 2] * 2
    numbered = write_hub_parquet(tmp_path / "i" / "train.parquet", images, [2, 10, 7] * 2, metadata=False)
    assert read_source(f"hf:{numbered}").classes == ["2", "7", "10"]  # by value


def test_a_test_split_without_labels_is_left_out_saying_so(tmp_path):
    """A competition's test split on the Hub stores -1 for every label."""
    root = hub_snapshot(tmp_path / "s")
    write_hub_parquet(root / "plain_text" / "test-00000-of-00001.parquet", [banded(0, 3)] * 3, [-1] * 3,
                      ["dog", "cat", "bird"])
    with pytest.warns(UserWarning, match=r"the test split left out: its images have no labels \(-1\)"):
        data = read_source(f"hf:{root}")
    assert list(data.splits) == ["train"]


def test_files_of_other_splits_are_left_out_and_unnamed_files_are_all_training(tmp_path):
    root = hub_snapshot(tmp_path / "svhn")
    write_hub_parquet(root / "plain_text" / "extra-00000-of-00001.parquet", [banded(0, 3)], [0], ["dog", "cat", "bird"])
    with pytest.warns(UserWarning, match=r"left out plain_text/extra-00000-of-00001.parquet: not a train, validation"):
        data = read_source(f"hf:{root}")
    assert sorted(data.splits) == ["test", "train"]
    parts = tmp_path / "dask"
    for part in range(2):
        write_hub_parquet(parts / f"part.{part}.parquet", [banded(0, 2), banded(1, 2)], [0, 1], ["a", "b"])
    assert len(read_source(f"hf:{parts}").splits["train"]) == 4


def test_nothing_is_written_out_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    """The images are decoded from the table's bytes into the decode cache: the data home holds
    no copy of them (70,000 MNIST PNGs written out took 276 MB of disk for 18 MB of bytes)."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    path = write_hub_parquet(tmp_path / "d" / "train.parquet", [banded(0, 2), banded(1, 2)], [0, 1], ["a", "b"])
    first = load_dataset(f"hf:{path}", (16, 16), None, 0.0, 0)
    assert np.array_equal(first.splits["train"].pixels()[1], banded(1, 2))
    assert not (tmp_path / "home").exists()
    assert load_dataset(f"hf:{path}", (16, 16), None, 0.0, 0).cache["hit"]
    write_hub_parquet(path, [banded(0, 2), banded(1, 2), banded(1, 2, seed=5)], [0, 1, 1], ["a", "b"])
    later = os.stat(path).st_mtime + 10
    os.utime(path, (later, later))
    again = load_dataset(f"hf:{path}", (16, 16), None, 0.0, 0)
    assert not again.cache["hit"] and np.array_equal(again.splits["train"].pixels()[2], banded(1, 2, seed=5))


def bad_label(tmp_path: Path) -> Path:
    return write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)] * 2, [0, 7], ["a", "b"])


def unlabelled_row(tmp_path: Path) -> Path:
    return write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)] * 2, [0, -1], ["a", "b"])


def not_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    return path


def no_image_column(tmp_path: Path) -> Path:
    pq.write_table(pa.table({"text": ["a", "b"], "label": [0, 1]}), tmp_path / "train.parquet")
    return tmp_path / "train.parquet"


def two_configurations(tmp_path: Path) -> Path:
    hub_snapshot(tmp_path / "s", train=4, test=2)
    write_hub_parquet(tmp_path / "s" / "mini" / "train-00000-of-00001.parquet", [banded(0, 2)], [0], ["a", "b"])
    return tmp_path / "s"


def names_twice(tmp_path: Path) -> Path:
    return write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)] * 2, [0, 1], ["cat", "dog", "cat"])


def empty_name(tmp_path: Path) -> Path:
    return write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)] * 2, ["cat", ""], metadata=False)


def empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"


@pytest.mark.parametrize("make, message", [
    (bad_label, r"train.parquet, row 1: label 7 is no class of its 2"),
    (unlabelled_row, r"train.parquet:1: no label, among labelled images"),
    (not_parquet, r"train.parquet: not a readable parquet file \("),
    (no_image_column, r"no image column \(its columns: text, label\); name one with the source option image"),
    (two_configurations, r"holds the files of 2 configurations \(mini, plain_text\): give one's folder"),
    (empty_folder, r"no .parquet or .arrow files in it or the three folders below it"),
    (names_twice, r"train.parquet: the class names of column label name cat twice"),
    (empty_name, r"train.parquet, row 1: label ''; expected a class number or name"),
])
def test_a_bad_hub_dataset_is_one_line_naming_what_is_wrong(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message):
        read_source(f"hf:{path}")
    result = run_cli("data", "info", f"hf:{path}", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_dataset_named_as_on_the_hub_says_how_to_get_its_local_copy(tmp_path):
    result = run_cli("train", "--data", "hf:uoft-cs/cifar10", cwd=tmp_path, check=False)
    assert result.returncode == 2 and f"hf:{tmp_path / 'uoft-cs/cifar10'}: no such file or folder, nor a dataset in " \
        f"the Hugging Face cache ({os.environ['HF_HUB_CACHE']}); cnnlab reads a local copy: huggingface-cli download " \
        "--repo-type dataset OWNER/NAME puts one there (as load_dataset does), read as hf:OWNER/NAME" in result.stderr


def cached_on_the_hub(cache: Path, repo: str, made: Path, revision: str, main: bool = True) -> Path:
    """The files under ``made`` as huggingface_hub keeps a dataset's revision in its cache:
    datasets--OWNER--NAME/snapshots/REVISION/..., each a relative link to its content in blobs/;
    refs/main naming the revision where ``main``."""
    folder = cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    for file in sorted(p for p in made.rglob("*") if p.is_file()):
        blob = folder / "blobs" / f"{revision[:8]}-{file.name}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(file.read_bytes())
        link = snapshot / file.relative_to(made)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(revision)
    return snapshot


def test_a_hub_dataset_of_image_files_says_to_read_their_folder(tmp_path):
    """A Hub repository of image files in class folders (load_dataset's imagefolder) has no
    tables: the message names one of its images and the source that reads them."""
    root = tmp_path / "snapshot"
    for name in ("cat", "dog"):
        (root / "data" / "train" / name).mkdir(parents=True)
        Image.fromarray(banded(0, 2)).save(root / "data" / "train" / name / "1.png")
    (root / "README.md").write_text("---\nlicense: mit\n---\n")
    with pytest.raises(DataError, match=r"no .parquet or .arrow files in it or the three folders below it; its images "
                                        r"are files \(data/train/cat/1.png\): read their folder as folder:PATH$"):
        read_source(f"hf:{root}")


def test_a_dataset_named_as_on_the_hub_is_read_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """What huggingface-cli download or load_dataset fetched is read by the name it has on the
    Hub, as load_dataset reads it offline; the run records the snapshot, so evaluate finds it."""
    from cnnlab.data.sources import canonical_spec

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = cached_on_the_hub(tmp_path / "hub", "owner/pets", hub_snapshot(tmp_path / "made", train=60, test=15),
                                 "a" * 40)
    data = read_source("hf:owner/pets")
    assert data.classes == ["dog", "cat", "bird"] and len(data.splits["train"]) == 60
    assert canonical_spec("hf:owner/pets") == f"hf:{snapshot}"
    assert canonical_spec("hf:owner/pets/plain_text") == f"hf:{snapshot / 'plain_text'}"  # a configuration's folder
    with pytest.raises(DataError, match=r"hf:owner/pets/mini: no folder mini in owner/pets's snapshot in the Hugging "
                                        r"Face cache \(its folders: plain_text\)$"):
        read_source("hf:owner/pets/mini")
    run_cli("train", "--model", "mlp", "--data", "hf:owner/pets", "--image-size", "16x16", "--epochs", "1",
            "--out", tmp_path / "runs", "--name", "pets", "--quiet", cwd=tmp_path)
    assert f"spec: hf:{snapshot}" in (tmp_path / "runs" / "pets" / "config.yaml").read_text()
    assert json.loads(run_cli("evaluate", tmp_path / "runs" / "pets", "--split", "test", "--format", "json")
                      .stdout)["samples"] == 15


def test_the_revision_main_names_is_read_and_without_it_one_of_several_is_not_guessed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cached_on_the_hub(tmp_path / "hub", "owner/pets", hub_snapshot(tmp_path / "old", train=6, test=3), "a" * 40)
    newer = cached_on_the_hub(tmp_path / "hub", "owner/pets", hub_snapshot(tmp_path / "new", train=12, test=3), "b" * 40)
    assert len(read_source("hf:owner/pets").splits["train"]) == 12
    (tmp_path / "hub" / "datasets--owner--pets" / "refs" / "main").unlink()
    with pytest.raises(DataError, match=rf"hf:owner/pets: the Hugging Face cache holds 2 revisions of it and main "
                                        rf"names none \({'a' * 40}, {'b' * 40}\): give one's folder, e.g. hf:{newer}$"):
        read_source("hf:owner/pets")


@pytest.mark.parametrize("name", ["owner/../pets", "owner--x/pets", "-owner/pets", "owner/pets/../../x"])
def test_a_name_that_is_no_hub_repository_is_not_looked_up(tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cached_on_the_hub(tmp_path / "hub", "owner/pets", hub_snapshot(tmp_path / "made", train=6, test=3), "a" * 40)
    with pytest.raises(DataError, match=r"no such file or folder, nor a dataset in the Hugging Face cache"):
        read_source(f"hf:{name}")


@pytest.mark.parametrize("environment, cache", [
    ({"HF_HUB_CACHE": "/a/hub", "HUGGINGFACE_HUB_CACHE": "/b", "HF_HOME": "/c"}, "/a/hub"),
    ({"HUGGINGFACE_HUB_CACHE": "/b", "HF_HOME": "/c"}, "/b"),
    ({"HF_HOME": "/c", "XDG_CACHE_HOME": "/x"}, "/c/hub"),
    ({"XDG_CACHE_HOME": "/x"}, "/x/huggingface/hub"),
    ({}, "~/.cache/huggingface/hub"),
])
def test_the_hugging_face_cache_is_where_huggingface_hub_puts_it(monkeypatch, environment, cache):
    from cnnlab.data.readers.hub import hub_cache

    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert hub_cache() == Path(cache).expanduser()


def test_a_file_too_large_for_memory_is_not_called_damaged(tmp_path, monkeypatch):
    from cnnlab.data.readers import hub

    path = write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)], [0], ["a", "b"])

    def exhausted(self, column):
        raise MemoryError()

    monkeypatch.setattr(hub.TableFile, "values", exhausted)
    with pytest.raises(DataError, match=r"train.parquet: its columns do not fit in this machine's memory$"):
        read_source(f"hf:{path}")


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_rows_are_read_from_the_batch_that_holds_them_not_from_the_files_start(tmp_path, monkeypatch, suffix):
    """predict decodes a large file a chunk of rows at a time: each chunk read every earlier
    row group's images again (and validated a whole Arrow file again) before reaching its own."""
    from cnnlab.data.readers import hub

    images = [banded(i % 2, 2, size=8, seed=i) for i in range(50)]
    path = tmp_path / f"test{suffix}"
    if suffix == ".parquet":
        table = pa.table({"img": pa.array([{"bytes": encoded(x), "path": None} for x in images], type=IMAGE),
                          "label": [i % 2 for i in range(50)]})
        pq.write_table(table, path, row_group_size=10)
    else:
        write_hub_parquet(path, images, [i % 2 for i in range(50)], ["a", "b"])
    opened, read = [], []
    real_open, real_batches = hub.TableFile.__init__, hub.TableFile.batches
    monkeypatch.setattr(hub.TableFile, "__init__", lambda self, file: opened.append(file) or real_open(self, file))
    monkeypatch.setattr(hub.TableFile, "batches", lambda self, column, start=0, rows=8: read.append(start) or (
        (first, batch) for first, batch in real_batches(self, column, start, rows)))
    store = hub.TableImages(hub.TableFile(path), "img")
    later = list(store.images([33, 34, 47]))
    again = list(store.images([2, 49]))
    assert all(np.array_equal(decoded_bytes(data), images[i]) for data, i in zip(later + again, (33, 34, 47, 2, 49),
                                                                                  strict=True))
    assert opened == [path] and read == [33, 2]  # opened once, each read from its first row's batch
    assert list(store.images([50])) == ["no row 50: the file has 50 rows now"]


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_each_file_is_opened_once_for_its_labels_and_its_images(tmp_path, monkeypatch, suffix):
    """An Arrow file's offsets were validated when its labels were read and again when its
    images were decoded."""
    from cnnlab.data.readers import hub

    path = write_hub_parquet(tmp_path / f"train{suffix}", [banded(i % 2, 2, seed=i) for i in range(6)],
                             [i % 2 for i in range(6)], ["a", "b"])
    opened, real_open = [], hub.TableFile.__init__
    monkeypatch.setattr(hub.TableFile, "__init__", lambda self, file: opened.append(file) or real_open(self, file))
    data = load_dataset(f"hf:{path}", (16, 16), None, 0.0, 0)
    assert len(data.splits["train"]) == 6 and opened == [path]


def decoded_bytes(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture)


def test_rows_that_keep_only_a_path_are_unreadable_images_saying_what_to_do(tmp_path):
    """datasets' to_parquet and its cache of a local folder keep each image's path, not its bytes."""
    advice = (r"no image bytes: it names 1.png, a file outside it \(read that file's folder as folder:PATH, or write "
              r"the dataset with save_to_disk, which stores the images\)")
    one = write_hub_parquet(tmp_path / "one" / "train.parquet", [], [0, 1, 1], ["a", "b"],
                            image_bytes=[encoded(banded(0, 2)), None, encoded(banded(1, 2))])
    data = load_dataset(f"hf:{one}", (16, 16), None, 0.0, 0)
    assert data.splits["train"].ids == ["train.parquet:0", "train.parquet:2"]
    assert re.fullmatch(advice, data.unreadable[f"{one}:1"])
    listed = run_cli("data", "verify", f"hf:{one}", check=False)
    assert listed.returncode == 1 and re.search(rf"^{re.escape(str(one))}:1: {advice}$", listed.stdout, re.M), listed
    none = write_hub_parquet(tmp_path / "none" / "train.parquet", [], [0, 1], ["a", "b"], image_bytes=[None, None])
    result = run_cli("data", "info", f"hf:{none}", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(rf"none of the 2 images of its train split could be read \({re.escape(str(none))}:0: "
                     rf"{advice.replace('1.png', '0.png')}, and others\)", result.stderr), result.stderr


def test_a_folder_it_may_not_look_into_is_passed_over(tmp_path, monkeypatch):
    """/proc/1/cwd refuses even root: looking for a dataset's files below / ended in
    PermissionError."""
    from cnnlab.data.readers import hub

    root = hub_snapshot(tmp_path / "snapshot", train=4, test=2)
    (root / "locked").mkdir()
    real_scandir = os.scandir

    class Refusing:
        name, path = "locked", str(root / "locked")

        def is_file(self):
            return False

        def is_dir(self):
            raise PermissionError(13, "Permission denied", self.path)

    def scandir(folder):
        if Path(folder) != root:
            return real_scandir(folder)
        with real_scandir(folder) as entries:
            return [*(entry for entry in entries if entry.name != "locked"), Refusing()]

    monkeypatch.setattr(hub, "os", type("os", (), {"scandir": staticmethod(scandir), "fsencode": os.fsencode}))
    assert source_name(str(root)) == "hf"
    assert sorted(read_source(f"hf:{root}").splits) == ["test", "train"]


def test_a_bare_folder_is_a_datasets_where_its_files_are_at_most_two_folders_down(tmp_path):
    """Looking three folders down below a bare path such as / or a home folder read tens of
    thousands of folders; a dataset's files sit at most two down (data/train/, plain_text/),
    and hf: looks three down (load_dataset's cache nests them so)."""
    two = write_hub_parquet(tmp_path / "two" / "a" / "b" / "train.parquet", [banded(0, 2)], [0], ["a", "b"]).parents[2]
    three = write_hub_parquet(tmp_path / "three" / "a" / "b" / "c" / "train.parquet", [banded(0, 2)], [0],
                              ["a", "b"]).parents[3]
    assert source_name(str(two)) == "hf" and source_name(str(three)) == "folder"
    assert len(read_source(f"hf:{three}").splits["train"]) == 1


def test_without_pyarrow_it_says_what_to_install(tmp_path, monkeypatch):
    path = write_hub_parquet(tmp_path / "train.parquet", [banded(0, 2)], [0], ["a", "b"])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError, match=r"needs the pyarrow package \(pip install 'cnnlab\[hf\]'\)"):
        read_source(f"hf:{path}")


def test_train_and_evaluate_a_hub_dataset_from_the_cli(tmp_path):
    root = hub_snapshot(tmp_path / "snapshot", train=60, test=15)
    run_cli("train", "--model", "mlp", "--data", str(root), "--image-size", "16x16", "--epochs", "2",
            "--out", tmp_path / "runs", "--name", "hub", "--quiet")
    run = tmp_path / "runs" / "hub"
    assert f"spec: hf:{root}" in (run / "config.yaml").read_text()
    own = json.loads(run_cli("evaluate", run, "--split", "test", "--format", "json").stdout)
    assert own["split"] == "test" and own["samples"] == 15
    test_file = root / "plain_text" / "test-00000-of-00001.parquet"
    other = json.loads(run_cli("evaluate", run, "--data", test_file, "--format", "json").stdout)
    assert other["split"] == "test" and other["samples"] == 15 and other["accuracy"] == own["accuracy"]


def test_predict_classifies_the_rows_of_a_parquet_file_labelled_or_not(tmp_path):
    root = hub_snapshot(tmp_path / "snapshot", train=30, test=6)
    run_cli("train", "--model", "mlp", "--data", f"hf:{root}", "--image-size", "16x16", "--epochs", "1",
            "--out", tmp_path / "runs", "--name", "hub", "--quiet")
    unlabelled = tmp_path / "competition" / "test.parquet"
    unlabelled.parent.mkdir()
    pq.write_table(pa.table({"image": pa.array([{"bytes": encoded(banded(i % 3, 3, seed=40 + i)), "path": None}
                                                for i in range(4)], type=IMAGE)}), unlabelled)
    printed = run_cli("predict", tmp_path / "runs" / "hub", unlabelled, "--format", "csv", "--top-k", "1").stdout
    rows = [line.split(",") for line in printed.splitlines()[1:]]
    assert [row[0] for row in rows] == [f"{unlabelled}:{i}" for i in range(4)]
    # the PNGs' pixels exactly: the classes and probabilities of the same pixels given in memory
    in_memory = predict(tmp_path / "runs" / "hub", np.stack([banded(i % 3, 3, seed=40 + i) for i in range(4)]), top_k=1)
    assert [row[1] for row in rows] == [p.top[0][0] for p in in_memory.predictions]
    from_file = predict(tmp_path / "runs" / "hub", [str(unlabelled)])
    np.testing.assert_allclose(from_file.probabilities, in_memory.probabilities, atol=1e-6)
    boxes = tmp_path / "GT.csv"  # a sign's box names an image file; a row of a table is none
    boxes.write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n0.png;16;16;1;1;14;14\n")
    refused = run_cli("predict", tmp_path / "runs" / "hub", unlabelled, "--boxes", boxes, check=False)
    assert refused.returncode == 2 and f"GT.csv: no row for 4 of the images ({unlabelled}:0, " in refused.stderr


def test_save_to_disk_and_the_load_dataset_cache_are_read_from_their_arrow_files(tmp_path):
    """DatasetDict.save_to_disk writes SPLIT/data-00000-of-00001.arrow with dataset_info.json
    beside it; load_dataset caches NAME-SPLIT.arrow files in one folder."""
    saved = tmp_path / "saved"
    (saved / "dataset_dict.json").parent.mkdir()
    (saved / "dataset_dict.json").write_text('{"splits": ["train", "valid"]}')
    for split, rows in (("train", range(0, 12)), ("valid", range(12, 18))):
        write_hub_parquet(saved / split / "data-00000-of-00001.arrow", [banded(i % 2, 2, seed=i) for i in rows],
                          [i % 2 for i in rows], ["no", "yes"], metadata=False, info=True)
    assert source_name(str(saved)) == "hf"
    data = read_source(f"hf:{saved}")
    assert data.classes == ["no", "yes"] and sorted(data.splits) == ["train", "val"]
    assert np.array_equal(decoded(data.splits["val"].paths[1]), banded(13 % 2, 2, seed=13))
    assert data.splits["val"].ids[1] == "data-00000-of-00001.arrow:1"
    cache = tmp_path / "cache"
    for split in ("train", "test"):
        write_hub_parquet(cache / f"cifar10-{split}.arrow", [banded(i % 2, 2, seed=i) for i in range(4)],
                          [0, 1, 0, 1], ["cat", "dog"])
    assert sorted(read_source(f"hf:{cache}").splits) == ["test", "train"]
    file_format = cache / "file-format" / "train.arrow"  # pyarrow's own file format, with its footer
    file_format.parent.mkdir()
    table = pq.read_table(write_hub_parquet(tmp_path / "p" / "train.parquet", [banded(0, 2)], [0], ["a", "b"]))
    with pa.OSFile(str(file_format), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert len(read_source(f"hf:{file_format}").splits["train"]) == 1


REPO = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = REPO / ".venv-bench" / "bin" / "python"


HAS_DATASETS = any((REPO / ".venv-bench").glob("lib/python3*/site-packages/datasets/__init__.py"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DATASETS, reason="the datasets reference needs `make bench-env`")
def test_the_files_datasets_itself_writes_are_read_as_it_wrote_them(tmp_path):
    """save_to_disk's Arrow files and the parquet shards a pushed dataset has on the Hub, written
    by Hugging Face datasets itself: the classes in the ClassLabel's order, each split's labels
    (the second label column by the label option) and each image file's very bytes."""
    images = tmp_path / "images"
    for c, name in enumerate(("apple", "banana", "cherry")):
        (images / name).mkdir(parents=True)
        for i in range(4):
            (images / name / f"{i}.{'png' if i % 2 else 'jpg'}").write_bytes(
                encoded(banded(c, 3, size=20 + i, seed=10 * c + i), "PNG" if i % 2 else "JPEG"))
    subprocess.run([str(REFERENCE_PYTHON), str(REPO / "benchmarks" / "hf_reference" / "save_datasets.py"), images,
                    tmp_path / "out"], check=True, capture_output=True, env={**os.environ, "HF_DATASETS_CACHE":
                                                                                 str(tmp_path / "hf-cache")})
    expected = json.loads((tmp_path / "out" / "expected.json").read_text())
    for folder in ("saved", "hub"):
        with pytest.warns(UserWarning, match=r"labels from the column label \(also: coarse; the source option"):
            data = read_source(f"hf:{tmp_path / 'out' / folder}")
        assert data.classes == expected["classes"] == ["cherry", "banana", "apple"]
        assert sorted(data.splits) == ["train", "val"]
        for split, name in (("train", "train"), ("val", "validation")):
            assert data.splits[split].labels.tolist() == expected["splits"][name]["label"]
            assert [stored_bytes(image) for image in data.splits[split].paths] == \
                [Path(file).read_bytes() for file in expected["splits"][name]["files"]]
        coarse = read_source(f"hf:{tmp_path / 'out' / folder}", {"label": "coarse"})
        assert coarse.classes == ["even", "odd"]
        assert coarse.splits["val"].labels.tolist() == expected["splits"]["validation"]["coarse"]


FIND_IN_CACHE = """
import json, sys
from huggingface_hub import constants, try_to_load_from_cache
repo, files = sys.argv[1], sys.argv[2:]
print(json.dumps({"cache": constants.HF_HUB_CACHE,
                  "files": [try_to_load_from_cache(repo, file, repo_type="dataset") for file in files]}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DATASETS, reason="the huggingface_hub reference needs `make bench-env`")
@pytest.mark.parametrize("environment", [{"HF_HUB_CACHE": "HUB"}, {"HUGGINGFACE_HUB_CACHE": "HUB"},
                                         {"HF_HOME": "HOME"}, {"XDG_CACHE_HOME": "XDG"}])
def test_hf_names_find_the_files_huggingface_hub_itself_finds_in_its_cache(tmp_path, monkeypatch, environment):
    """huggingface_hub's own answer, for each way of placing its cache: where the cache is, and
    which file of it a dataset's name and the revision main names give."""
    from cnnlab.data.readers.hub import cached_snapshot

    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    for variable, folder in environment.items():
        monkeypatch.setenv(variable, str(tmp_path / folder))
    cache = {"HUB": tmp_path / "HUB", "HOME": tmp_path / "HOME" / "hub",
             "XDG": tmp_path / "XDG" / "huggingface" / "hub"}[next(iter(environment.values()))]
    made = hub_snapshot(tmp_path / "made", train=4, test=2)
    cached_on_the_hub(cache, "owner/pets", made, "a" * 40)
    cached_on_the_hub(cache, "owner/pets", made, "b" * 40)  # refs/main now names this one
    files = sorted(file.relative_to(made).as_posix() for file in made.rglob("*.parquet"))
    found = json.loads(subprocess.run([str(REFERENCE_PYTHON), "-c", FIND_IN_CACHE, "owner/pets", *files], check=True,
                                      capture_output=True, text=True, env=dict(os.environ)).stdout)
    assert found["cache"] == str(cache)
    assert found["files"] == [str(cached_snapshot("owner/pets") / file) for file in files]
    assert "b" * 40 in found["files"][0]


@pytest.mark.slow  # two processes, each reading the dataset and decoding its images at once
def test_a_hub_dataset_trains_under_two_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    root = hub_snapshot(tmp_path / "snapshot", train=40, test=8)
    result = run_cli("train", "--model", "mlp", "--data", f"hf:{root}", "--image-size", "16x16", "--epochs", "1",
                     "--nproc-per-node", "2", "--out", tmp_path / "runs", "--name", "two", "--quiet",
                     "--device", "cpu", fresh_process=True)
    assert result.stdout.strip() == str(tmp_path / "runs" / "two")
    assert not (tmp_path / "home").exists()  # nothing written out beside the decode cache

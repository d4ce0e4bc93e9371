"""The published data sets, on small files written in their official layouts."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import load_dataset
from cnnlab.data.download import data_home
from cnnlab.data.safe import extract_archive, load_plain_pickle
from cnnlab.data.sources import canonical_spec
from cnnlab.errors import CnnlabWarning, DataError
from conftest import SHARED, make_image_folder, run_cli, write_idx

RNG = np.random.default_rng(0)


def cifar_batch(count, classes, label_key=b"labels", extra=None):
    batch = {b"batch_label": b"batch", b"data": RNG.integers(0, 256, (count, 3072), dtype=np.uint8),
             label_key: [i % classes for i in range(count)],
             b"filenames": [f"img_{i}.png".encode() for i in range(count)]}
    batch.update(extra or {})
    return pickle.dumps(batch, protocol=2)


def write_cifar10(root, as_tar):
    files = {f"data_batch_{i}": cifar_batch(20, 10) for i in range(1, 6)}
    files["test_batch"] = cifar_batch(10, 10)
    files["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    return write_files(root, "cifar-10-batches-py", files, as_tar)


def write_files(root, folder, files, as_tar):
    root.mkdir(parents=True, exist_ok=True)
    if as_tar:
        archive = root / f"{folder}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return archive
    for name, data in files.items():
        (root / folder).mkdir(exist_ok=True)
        (root / folder / name).write_bytes(data)
    return root


@pytest.mark.parametrize("as_tar", [True, False])
def test_cifar10_tarball_and_folder(tmp_path, as_tar):
    path = write_cifar10(tmp_path / "c", as_tar)
    data = load_dataset(f"cifar10:{path}", val_split=0.1)
    assert data.classes[:2] == ["c0", "c1"]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 90, "val": 10, "test": 10}
    assert data.splits["train"].images.shape[1:] == (32, 32, 3)


def test_cifar10_channel_major_rows(tmp_path):
    path = write_cifar10(tmp_path / "c", as_tar=False)
    raw = pickle.loads((path / "cifar-10-batches-py" / "test_batch").read_bytes(), encoding="bytes")
    data = load_dataset(f"cifar10:{path}", val_split=0.0)
    image = data.splits["test"].images[0]
    row = raw[b"data"][0]
    assert image[0, 0, 0] == row[0] and image[0, 0, 1] == row[1024] and image[0, 0, 2] == row[2048]
    assert image[0, 1, 0] == row[1]


def write_cifar100(root, as_tar=True):
    """The official cifar-100-python.tar.gz layout: 100 training and 20 test images."""
    files = {"train": cifar_batch(100, 100, b"fine_labels", {b"coarse_labels": [i % 20 for i in range(100)]}),
             "test": cifar_batch(20, 100, b"fine_labels", {b"coarse_labels": [i % 20 for i in range(20)]}),
             "meta": pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"g{i}".encode() for i in range(20)]}, protocol=2)}
    return write_files(root, "cifar-100-python", files, as_tar)


def test_cifar100_fine_and_coarse(tmp_path):
    path = write_cifar100(tmp_path / "c")
    fine = load_dataset(f"cifar100:{path}", val_split=0.0, options={"label_mode": "fine"})
    coarse = load_dataset(f"cifar100:{path}", val_split=0.0, options={"label_mode": "coarse"})
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    with pytest.raises(DataError, match="the cifar100 source has no option 'mode'"):
        load_dataset(f"cifar100:{path}", options={"mode": "x"})


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_malicious_pickle_runs_no_code(tmp_path, capsys):
    payload = pickle.dumps({b"data": Exploit()}, protocol=2)
    with pytest.raises(DataError, match="unsafe or invalid pickle.*refusing to load (__builtin__|builtins).print"):
        load_plain_pickle(payload, "evil")
    assert "never run" not in capsys.readouterr().out
    path = write_cifar10(tmp_path / "c", as_tar=False)
    (path / "cifar-10-batches-py" / "data_batch_3").write_bytes(payload)
    with pytest.raises(DataError, match="data_batch_3: unsafe or invalid pickle"):
        load_dataset(f"cifar10:{path}")


def test_plain_pickle_keeps_numpy_arrays():
    loaded = load_plain_pickle(pickle.dumps({b"a": np.arange(6).reshape(2, 3), b"b": [1, 2.5]}), "ok")
    np.testing.assert_array_equal(loaded[b"a"], np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("payload", [
    # a string re-encoded through an encoding that does not exist (found by the fuzz test)
    b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x06\x00\x00\x00latinq\x86R.",
    b"\x80\x02h\x07.",  # a memo entry that was never stored
], ids=["unknown-encoding", "missing-memo"])
def test_a_broken_pickle_is_one_data_error(payload):
    with pytest.raises(DataError, match="^bad: (not a valid|unsafe or invalid) pickle"):
        load_plain_pickle(payload, "bad")


@pytest.mark.parametrize("member, kind", [("../escape.txt", "file"), ("/abs/path.txt", "file"),
                                          ("ok/link", "symlink"), ("a/../../b", "file")])
def test_tar_refuses_escaping_members(tmp_path, member, kind):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="refusing member"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()


def test_a_tar_made_with_tar_czf_x_dot_extracts(tmp_path):
    """`tar czf photos.tgz .` names its first member '.': the member check ended in IndexError."""
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "1.png").write_bytes(b"x")
    with tarfile.open(tmp_path / "photos.tgz", "w:gz") as tar:
        tar.add(tmp_path / "photos", arcname=".")
    assert (extract_archive(tmp_path / "photos.tgz", tmp_path / "out") / "a" / "1.png").read_bytes() == b"x"


def test_extraction_left_by_a_killed_process_is_removed_and_a_running_ones_kept(tmp_path):
    """A process killed outright leaves its half-extracted folder; the next extraction removes
    it, but not the folder another process is still writing."""
    import os
    import subprocess
    import sys

    from cnnlab.data import safe

    source = tmp_path / "photos[1].zip"  # glob characters in the name are the name's
    source.write_bytes(b"the archive")
    target = tmp_path / "photos[1]"
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    dead = tmp_path / f".photos[1].partial-{gone}"
    dead.mkdir()
    (dead / "half.png").write_bytes(b"half")
    running = tmp_path / f".photos[1].partial-{os.getppid()}"
    running.mkdir()
    safe.staged_folder(target, source, lambda staging: (staging / "a.png").write_bytes(b"a"))
    assert not dead.exists() and running.is_dir() and [p.name for p in target.iterdir()] == ["a.png"]


def test_two_processes_extracting_one_archive_at_once_both_get_it_whole(tmp_path, monkeypatch):
    """Every process of a distributed run reads the data spec: two extracted one archive at
    once into one staging folder, and the second removed the first's half-written files."""
    import os

    from cnnlab.data import safe

    source = tmp_path / "photos.zip"
    source.write_bytes(b"the archive")
    target = tmp_path / "out"
    real_pid = os.getpid()

    def other_process(staging: Path) -> None:
        (staging / "b.png").write_bytes(b"b")

    def first_process(staging: Path) -> None:
        (staging / "a.png").write_bytes(b"a")
        monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # the other process starts and finishes meanwhile
        assert safe.staged_folder(target, source, other_process) == target
        monkeypatch.setattr(os, "getpid", lambda: real_pid)
        (staging / "c.png").write_bytes(b"c")

    assert safe.staged_folder(target, source, first_process) == target
    assert sorted(p.name for p in target.iterdir()) in (["a.png", "c.png"], ["b.png"])  # one whole, not a mix
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_zip_refuses_escaping_members(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(DataError, match="refusing member '../evil.txt'"):
        extract_archive(archive, tmp_path / "out")


def zip_folder(folder: Path, archive: Path, prefix: str = "", junk: bool = False) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                zf.write(file, prefix + file.relative_to(folder).as_posix())
                if junk:  # what a Mac's Finder adds to a zip it makes
                    zf.writestr(f"__MACOSX/{prefix}{file.parent.relative_to(folder).as_posix()}/._{file.name}", b"\0")
    return archive


@pytest.mark.parametrize("prefix, junk", [("", False), ("flower_photos/", False), ("flower_photos/", True)],
                         ids=["classes-at-the-top", "nested-in-a-folder", "made-on-a-mac"])
def test_an_image_folder_may_be_an_archive(tmp_path, prefix, junk):
    """folder:photos.zip was 'not a folder', where gtsrb: and caltech256: take archives; the
    flowers tutorial's data comes as a .tgz holding flower_photos/<class>/."""
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=3)
    archive = zip_folder(photos, tmp_path / "photos.zip", prefix, junk)
    data = load_dataset(f"folder:{archive}", (12, 12), val_split=0.0)
    assert data.classes == ["class_0", "class_1"] and len(data.splits["train"]) == 6
    # extracted into the data home, as Keras' get_file does: an archive on a read-only disk or a
    # shared folder is read without writing beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "photos.zip"]
    assert any((data_home() / "extracted").glob("photos-*"))
    with tarfile.open(tmp_path / "photos.tar.gz", "w:gz") as tar:
        tar.add(photos, arcname=prefix.rstrip("/") or ".")
    assert load_dataset(f"folder:{tmp_path / 'photos.tar.gz'}", (12, 12), val_split=0.0).classes == data.classes


def test_an_archive_changed_since_it_was_extracted_is_extracted_again(tmp_path):
    photos = make_image_folder(tmp_path / "photos", classes=2, per_class=3)
    archive = zip_folder(photos, tmp_path / "photos.zip")
    assert len(load_dataset(f"folder:{archive}", (12, 12), val_split=0.0).splits["train"]) == 6
    make_image_folder(tmp_path / "photos", classes=3, per_class=3, seed=1)
    zip_folder(photos, archive)
    os.utime(archive, (time.time() + 5, time.time() + 5))
    assert len(load_dataset(f"folder:{archive}", (12, 12), val_split=0.0).classes) == 3


def test_an_archive_larger_than_the_free_disk_is_refused_before_extraction(tmp_path, monkeypatch):
    """A zip of zeros inflates about 1000:1: a small file could fill the disk."""
    archive = tmp_path / "zeros.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/zeros.png", bytes(5_000_000))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(DataError, match=r"zeros.zip: unpacks to 4.8 MiB in 1 file; .* has 976.6 KiB free"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fashion_mnist(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    for prefix, count in (("train", 30), ("t10k", 10)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", RNG.integers(0, 256, (count, 28, 28)), 2051, False)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10, 2049, False)
    data = load_dataset(f"fashion-mnist:{root}", val_split=0.0)
    assert data.classes[0] == "T-shirt/top" and len(data.splits["test"]) == 10


def sign(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), (10, 10, 10))
    image.paste(Image.new("RGB", (size // 2, size // 2), colour), (size // 4, size // 4))
    image.save(path)


def write_gtsrb_official(root, classes=3, tracks=3, shots=4):
    for c in range(classes):
        folder = root / "GTSRB" / "Final_Training" / "Images" / f"{c:05d}"
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for t in range(tracks):
            for i in range(shots):
                name = f"{t:05d}_{i:05d}.ppm"
                sign(folder / name, 40, (200, 40 * c, 0))
                rows.append(f"{name};40;40;10;10;29;29;{c}")
        (folder / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
    test = root / "GTSRB" / "Final_Test" / "Images"
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(6):
        sign(test / f"{i:05d}.ppm", 40, (200, 40 * (i % classes), 0))
        rows.append(f"{i:05d}.ppm;40;40;10;10;29;29;{i % classes}")
    (test / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return root


def test_gtsrb_official_layout_track_split_and_roi(tmp_path):
    root = write_gtsrb_official(tmp_path / "g")
    data = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.34, seed=1)
    assert len(data.splits["test"]) == 6
    tracks = lambda split: {i.rsplit("/", 2)[-2] + i.rsplit("/", 1)[-1][:5] for i in data.splits[split].ids}  # noqa: E731
    assert tracks("train").isdisjoint(tracks("val"))  # whole tracks on one side
    assert len(data.splits["val"]) == 3 * 4  # one of three tracks per class
    cropped = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.0, options={"roi_crop": True})
    # the box holds only the coloured square: no dark border left after cropping
    assert cropped.splits["train"].pixels()[:, 0, 0, 0].mean() > 150
    assert data.splits["train"].pixels()[:, 0, 0, 0].mean() < 30


def write_gtsrb_kaggle(root):
    train_rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for c in range(2):
        for t in range(2):
            for i in range(3):
                rel = f"Train/{c}/{c:05d}_{t:05d}_{i:05d}.png"
                sign(root / rel, 30, (0, 200, 100 * c))
                train_rows.append(f"30,30,5,5,24,24,{c},{rel}")
    (root / "Train.csv").write_text("\n".join(train_rows) + "\n")
    sign(root / "Test/00000.png", 30, (0, 200, 0))
    (root / "Test.csv").write_text("Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n30,30,5,5,24,24,0,Test/00000.png\n")
    (root / "Meta.csv").write_text("Path,ClassId\n")
    sign(root / "Meta/0.png", 30, (0, 200, 0))  # Kaggle's pictures of each sign
    return root


def test_gtsrb_kaggle_layout(tmp_path):
    root = write_gtsrb_kaggle(tmp_path / "k")
    data = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.5)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "val": 6, "test": 1}


@pytest.mark.parametrize("layout", ["kaggle", "official"])
def test_a_bare_path_in_gtsrbs_layout_is_read_as_gtsrb(tmp_path, layout):
    """`--data /data/GTSRB`, no source named, read Kaggle's Meta/, Test/ and Train/ (or the
    official Final_Test/ and Final_Training/) as the classes of a folder, and trained on them
    with a warning only; a bare path in a published layout is read by its source."""
    root = write_gtsrb_kaggle(tmp_path / "k") if layout == "kaggle" else write_gtsrb_official(tmp_path / "g")
    with pytest.warns(CnnlabWarning, match=f"^data {root}: a folder in GTSRB's layout, read as gtsrb:{root}$"):
        data = load_dataset(str(root), (16, 16), val_split=0.5)
    assert set(data.splits) == {"train", "val", "test"}
    assert data.classes == load_dataset(f"gtsrb:{root}", (16, 16)).classes
    with pytest.warns(CnnlabWarning, match="GTSRB's layout"):
        assert canonical_spec(str(root)) == f"gtsrb:{root}"
    checked = run_cli("train", "--config", "gtsrb-resnet9", "--data", root, "--check")
    assert f"resnet9 on gtsrb:{root}: 3 classes" in checked.stdout or f"resnet9 on gtsrb:{root}: 2 classes" in checked.stdout
    test_alone = root / "Test" if layout == "kaggle" else root / "GTSRB" / "Final_Test"
    if layout == "kaggle":
        (root / "Test.csv").rename(test_alone / "Test.csv")  # as a test set is shared on its own
        (test_alone / "Test.csv").write_text((test_alone / "Test.csv").read_text().replace("Test/", ""))
    with pytest.warns(CnnlabWarning, match=f"a folder in GTSRB's layout, read as gtsrb:{test_alone}$"):
        assert set(load_dataset(str(test_alone), (16, 16)).splits) == {"test"}
    assert checked.stderr == f"cnnlab: warning: --data {root}: a folder in GTSRB's layout, read as gtsrb:{root}\n"


@pytest.mark.parametrize("given", ["", "Train"])
def test_gtsrb_read_as_a_plain_folder_says_which_source_splits_it_by_track(tmp_path, given):
    """`folder:GTSRB` read Kaggle's Meta/, Test/ and Train/ as three classes, and
    `folder:GTSRB/Train` split near-copies of each sign between training and validation (the
    tutorial's leak), both without a word."""
    root = tmp_path / "k"
    for c in range(2):
        for i in range(3):
            sign(root / f"Train/{c}/{c:05d}_00000_{i:05d}.png", 30, (0, 200, 100 * c))
    sign(root / "Test/00000.png", 30, (0, 200, 0))
    (root / "Train.csv").write_text("Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path\n")
    with pytest.warns(UserWarning, match=f"{root / given if given else root}: GTSRB's layout: gtsrb:{root} reads "
                                         "its CSVs and splits its training images by track"):
        load_dataset(f"folder:{root / given}", (8, 8), val_split=0.0)


def test_gtsrb_fixed_training_zip_layout(tmp_path):
    """The downloadable GTSRB-Training_fixed.zip unpacks to GTSRB/Training/000NN/; the test
    images and their ground truth come in two more zips."""
    root = write_gtsrb_official(tmp_path / "g", classes=2, tracks=2, shots=2)
    (root / "GTSRB" / "Final_Training" / "Images").rename(root / "GTSRB" / "Training")
    (root / "GTSRB" / "Final_Test" / "Images" / "GT-final_test.csv").rename(root / "GT-final_test.csv")
    data = load_dataset(f"gtsrb:{root}", (12, 12), val_split=0.0)
    assert len(data.splits["train"]) == 8 and len(data.splits["test"]) == 6


def test_gtsrb_zip_extracted_once(tmp_path):
    root = write_gtsrb_official(tmp_path / "g", classes=2, tracks=2, shots=2)
    archive = tmp_path / "GTSRB_Final.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in root.rglob("*"):
            if file.is_file():
                zf.write(file, file.relative_to(root).as_posix())
    data = load_dataset(f"gtsrb:{archive}", (12, 12), val_split=0.0)
    assert len(data.splits["train"]) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["GTSRB_Final.zip", "g"]  # nothing written beside it


def write_caltech(root):
    names = ["001.ak47", "002.american-flag", "003.backpack", "257.clutter"]
    for name in names:
        for i in range(4):
            Image.fromarray(RNG.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                root / "256_ObjectCategories" / name / f"{name[:3]}_{i:04d}.jpg"
            ) if (root / "256_ObjectCategories" / name).mkdir(parents=True, exist_ok=True) is None else None
    Image.new("L", (20, 20)).save(root / "256_ObjectCategories" / "001.ak47" / "001_gray.jpg")
    Image.new("CMYK", (20, 20)).save(root / "256_ObjectCategories" / "002.american-flag" / "002_cmyk.jpg")
    return root


def test_caltech256_categories_and_clutter(tmp_path):
    root = write_caltech(tmp_path / "c")
    data = load_dataset(f"caltech256:{root}", (16, 16), val_split=0.25)
    assert data.classes == ["001.ak47", "002.american-flag", "003.backpack"]
    assert sum(len(s) for s in data.splits.values()) == 14  # grayscale and CMYK decoded as RGB
    two = load_dataset(f"caltech256:{root}", (16, 16), options={"categories": 2})
    assert len(two.classes) == 2
    named = load_dataset(f"caltech256:{root}", (16, 16), options={"categories": ["backpack"]})
    assert named.classes == ["003.backpack"] or named.num_classes == 1
    clutter = load_dataset(f"caltech256:{root}", (16, 16), options={"include_clutter": True})
    assert clutter.classes[-1] == "257.clutter"
    with pytest.raises(DataError, match="^categories: not in .*: rifle"):
        load_dataset(f"caltech256:{root}", (16, 16), options={"categories": ["rifle"]})


@pytest.mark.parametrize("source", ["cifar10", "gtsrb", "caltech256", "fashion-mnist"])
def test_spec_trains_through_cli(tmp_path, source):
    if source == "cifar10":
        spec = f"cifar10:{write_cifar10(tmp_path / 'c', as_tar=True)}"
        extra = []
    elif source == "gtsrb":
        spec = f"gtsrb:{write_gtsrb_official(tmp_path / 'g')}"
        extra = ["--roi-crop", "--image-size", "32x32"]
    elif source == "caltech256":
        spec = f"caltech256:{write_caltech(tmp_path / 'c')}"
        extra = ["--categories", "2", "--image-size", "32x32"]
    else:
        root = tmp_path / "f"
        root.mkdir()
        for prefix, count in (("train", 40), ("t10k", 10)):
            write_idx(root / f"{prefix}-images-idx3-ubyte.gz", RNG.integers(0, 256, (count, 28, 28)), 2051)
            write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
        spec, extra = f"fashion-mnist:{root}", []
    model = "lenet5" if source == "fashion-mnist" else "simple-cnn"
    run_cli("train", "--model", model, "--data", spec, "--epochs", "1", "--batch-size", "16",
            "--out", tmp_path / "runs", "--name", "r", "--quiet", *extra)
    metrics = json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())
    assert "val" in metrics


def cifar_jpeg_archive():
    archive = SHARED / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found (set CNNLAB_SHARED_DATASETS)")
    return archive


def test_cifar10_jpeg_copy_as_folder(tmp_path):
    """Real JPEGs: 40 per class of each split of the shared CIFAR-10 copy."""
    few = lambda name: not name.endswith(".jpg") or int(name.rsplit("/", 1)[-1][:-4]) < 40  # noqa: E731
    root = extract_archive(cifar_jpeg_archive(), tmp_path / "cifar10", select=few)
    data = load_dataset(f"folder:{root}", (32, 32), val_split=0.1)
    assert data.num_classes == 10 and data.classes[0] == "airplane"
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 360, "val": 40, "test": 400}
    assert not data.unreadable


@pytest.mark.parametrize("layout", ["train/cat", "cat"])
@pytest.mark.parametrize("source", ["cifar10", "cifar100", "mnist", "fashion-mnist"])
def test_an_image_copy_given_to_a_published_format_is_pointed_to_folder(tmp_path, source, layout):
    """An image copy of CIFAR-10 or MNIST (class folders of JPEGs or PNGs, as the shared CIFAR-10
    copy is) given as cifar10: or mnist: is refused with the spec that reads it; a folder of
    neither keeps the plain error."""
    (tmp_path / "copy" / layout).mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "copy" / layout / "0.png")
    with pytest.raises(DataError, match=f"; it holds class folders of images: read it as folder:{tmp_path / 'copy'}$"):
        load_dataset(f"{source}:{tmp_path / 'copy'}")
    (tmp_path / "other" / "notes").mkdir(parents=True)
    (tmp_path / "other" / "notes" / "readme.txt").write_text("no images")
    with pytest.raises(DataError, match=r"missing [^;]*$"):
        load_dataset(f"{source}:{tmp_path / 'other'}")


@pytest.mark.slow
def test_cifar10_jpeg_trains_and_second_run_hits_the_cache(tmp_path):
    """The whole CIFAR-10 JPEG copy: decoded once by the first run, read back by the second."""
    root = extract_archive(cifar_jpeg_archive(), tmp_path / "cifar10")
    for name in ("first", "second"):
        run_cli("train", "--model", "lenet5", "--data", f"folder:{root}", "--image-size", "32x32",
                "--subset", "5000", "--epochs", "1", "--out", tmp_path / "runs", "--name", name, "--quiet")
    first = json.loads((tmp_path / "runs" / "first" / "data.json").read_text())["cache"]
    second = json.loads((tmp_path / "runs" / "second" / "data.json").read_text())["cache"]
    assert first["images"] == 60_000 and not first["hit"] and second["hit"]


def test_a_folder_with_a_csv_of_its_own_named_train_csv_stays_a_folder(tmp_path):
    folder = make_image_folder(tmp_path / "photos", per_class=2)
    (folder / "Train.csv").write_text("path,label\nclass_0/000.png,class_0\n")
    with pytest.warns(CnnlabWarning, match="a folder, read as folder:"):
        assert canonical_spec(str(folder)) == f"folder:{folder}"


@pytest.mark.parametrize("source", ["cifar10", "cifar100"])
def test_a_bare_path_to_cifars_python_folder_is_read_by_its_source(tmp_path, source):
    """Keras keeps CIFAR in ~/.keras/datasets/cifar-10-batches-py; `--data` with that folder
    said "no class sub-folders"."""
    root = write_cifar10(tmp_path / "c", as_tar=False) if source == "cifar10" else write_cifar100(tmp_path / "c", False)
    for given in (root, next(root.iterdir())):  # the folder, or the one folder it nests
        title = "CIFAR-10" if source == "cifar10" else "CIFAR-100"
        with pytest.warns(CnnlabWarning, match=f"a folder in {title}'s layout, read as {source}:{given}$"):
            data = load_dataset(str(given), val_split=0.0)
        assert len(data.classes) == (10 if source == "cifar10" else 100) and set(data.splits) == {"train", "test"}


def test_a_bare_path_to_mnists_files_names_the_sources_that_read_them(tmp_path):
    """MNIST's and Fashion-MNIST's IDX files have the same names: which one they are is the user's to say."""
    for prefix, count in (("train", 4), ("t10k", 2)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.zeros((count, 28, 28)), 2051)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10, 2049)
    both = f"it has the layout of MNIST or Fashion-MNIST: read it as mnist:{tmp_path} or fashion-mnist:{tmp_path}$"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one line: not "read as folder:" first
        with pytest.raises(DataError, match=f"^data {tmp_path}: a folder; {both}"):
            load_dataset(str(tmp_path))
    with pytest.raises(DataError, match=f"^{tmp_path}: no class sub-folders; {both}"):
        load_dataset(f"folder:{tmp_path}")
    refused = run_cli("train", "--data", tmp_path, "--check", check=False)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1


def test_every_recognised_layout_is_a_registered_source_with_a_title():
    from cnnlab.data import SOURCES
    from cnnlab.data.sources import LAYOUTS

    assert {"gtsrb", "cifar10", "cifar100", "mnist", "fashion-mnist"} <= set(LAYOUTS)
    for name, layout in LAYOUTS.items():
        assert name in SOURCES and layout.title and callable(layout.recognises)


def test_gtsrb_converted_to_png_is_read_with_its_csvs_naming_ppm(tmp_path):
    """GTSRB shared as PNGs converted from its .ppm files, the CSVs unchanged, read no image."""
    root = write_gtsrb_official(tmp_path / "g")
    original = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.34, seed=1, options={"roi_crop": True})
    for path in root.rglob("*.ppm"):
        Image.open(path).save(path.with_suffix(".png"))
        path.unlink()
    converted = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.34, seed=1, options={"roi_crop": True})
    assert not converted.unreadable
    for name, split in original.splits.items():
        assert [i.replace(".ppm", ".png") for i in split.ids] == converted.splits[name].ids
        assert np.array_equal(split.pixels(), converted.splits[name].pixels())


def test_kaggles_gtsrb_test_folder_given_alone_names_the_folder_above_it(tmp_path):
    """Kaggle's Test/ holds the test images flat, its Test.csv beside it: `--data GTSRB/Test`
    said "no class sub-folders" and no more."""
    root = write_gtsrb_kaggle(tmp_path / "k")
    with pytest.raises(DataError, match=f"^{root / 'Test'}: no class sub-folders; the folder above it has the layout "
                                        f"of GTSRB: read it as gtsrb:{root}$"):
        load_dataset(f"folder:{root / 'Test'}")


def test_a_gtsrb_row_naming_a_file_the_system_refuses_is_one_unreadable_image(tmp_path):
    """Looking for a converted copy of a row's file asked the system about its name, and a name
    over 255 bytes raised OSError from the reader, where the image had been listed as unreadable."""
    root = write_gtsrb_kaggle(tmp_path / "k")
    rows = (root / "Train.csv").read_text().splitlines()
    rows[1] = rows[1].rsplit(",", 1)[0] + ",Train/0/00000_00000_" + "x" * 300 + ".png"
    (root / "Train.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(f"gtsrb:{root}", (16, 16), val_split=0.0)
    assert len(data.splits["train"]) == 11 and len(data.unreadable) == 1

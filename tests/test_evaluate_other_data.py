"""Evaluating a run on other data, as users do with a separate test set: test sets readable on
their own, the run's preprocessing and source options applied, classes matched by name, every
image evaluated, and the run's own results never overwritten."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab import evaluate, load_run, predict
from cnnlab.data import load_dataset
from cnnlab.data.images import box_in_image
from cnnlab.data.readers.gtsrb import sign_boxes
from cnnlab.errors import CnnlabError, CnnlabWarning
from cnnlab.runtime import cpu_text
from conftest import make_image_folder, run_cli
from test_datasets import sign, write_gtsrb_official


def test_box_scaled_to_the_files_actual_size():
    # drawn on 64x48, the file is 32x24: every coordinate halves; x2/y2 are inclusive
    assert box_in_image((16, 8, 47, 39, 64, 48), 32, 24) == (8, 4, 24, 20)
    assert box_in_image((16, 8, 47, 39, 64, 48), 64, 48) == (16, 8, 48, 40)
    # a box past the edge (or a degenerate one) stays inside the image and at least 1 pixel
    assert box_in_image((60, 60, 90, 90, 64, 64), 64, 64) == (60, 60, 64, 64)
    assert box_in_image((5, 5, 2, 2, 10, 10), 10, 10) == (5, 5, 6, 6)


def write_resized_final_test(root, classes=3, count=6, original=80, stored=32):
    """The official Final_Test layout re-distributed at stored x stored pixels, its CSV keeping
    the original sizes and boxes: a bright square fills the box, the border around it is dark."""
    images = root / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(count):
        picture = Image.new("RGB", (original, original), (10, 10, 10))
        picture.paste(Image.new("RGB", (original // 2, original // 2), (220, 60 * (i % classes), 0)),
                      (original // 4, original // 4))
        picture.resize((stored, stored), Image.Resampling.NEAREST).save(images / f"{i:05d}.ppm")
        low, high = original // 4, 3 * original // 4 - 1
        rows.append(f"{i:05d}.ppm;{original};{original};{low};{low};{high};{high};{i % classes}")
    (root / "Final_Test" / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
    return root / "Final_Test"


def test_gtsrb_final_test_alone_with_boxes_of_the_original_size(tmp_path):
    folder = write_resized_final_test(tmp_path / "t")
    data = load_dataset(f"gtsrb:{folder}", (16, 16), val_split=0.2, options={"roi_crop": True})
    assert list(data.splits) == ["test"] and len(data.splits["test"]) == 6
    pixels = data.splits["test"].pixels()
    # the scaled box holds only the bright square: no dark border is left after cropping
    assert pixels[:, :, :, 0].min() > 150
    uncropped = load_dataset(f"gtsrb:{folder}", (16, 16), val_split=0.0)
    assert uncropped.splits["test"].pixels()[:, 0, 0, 0].max() < 30


def write_kaggle_test(root, count):
    """Kaggle's Test/ and Test.csv: ``count`` 30x30 signs of classes 0 and 1, each with its box."""
    rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for i in range(count):
        sign(root / f"Test/{i:05d}.png", 30, (0, 200, 50 * i))
        rows.append(f"30,30,5,5,24,24,{i % 2},Test/{i:05d}.png")
    (root / "Test.csv").write_text("\n".join(rows) + "\n")
    return root


def test_gtsrb_kaggle_test_csv_alone(tmp_path):
    root = write_kaggle_test(tmp_path / "k", 4)
    data = load_dataset(f"gtsrb:{root}", (12, 12), val_split=0.1)
    assert {k: len(v) for k, v in data.splits.items()} == {"test": 4}


@pytest.fixture(scope="module")
def gtsrb_run(tmp_path_factory):
    """A run trained on GTSRB sign boxes (roi_crop), from the official training layout."""
    root = tmp_path_factory.mktemp("gtsrb")
    data = write_gtsrb_official(root / "g", classes=3, tracks=3, shots=4)
    run_cli("train", "--model", "lenet5", "--data", f"gtsrb:{data}", "--roi-crop", "--image-size",
            "28x28", "--channels", "3", "--epochs", "3", "--lr", "0.01", "--val-split", "0.34",
            "--out", root / "runs", "--name", "r", "--quiet", report=True)
    return root / "runs" / "r"


def snapshot(run):
    return {name: (run / name).read_bytes() for name in ("metrics.json", "predictions-val.csv",
                                                          "confusion-val.png")}


def test_evaluate_on_a_resized_gtsrb_test_set_uses_the_runs_roi_crop(gtsrb_run, tmp_path):
    before = snapshot(gtsrb_run)
    folder = write_resized_final_test(tmp_path / "t", count=9)
    result = run_cli("evaluate", gtsrb_run, "--data", f"gtsrb:{folder}", "--format", "json")
    metrics = json.loads(result.stdout)
    assert metrics["samples"] == 9 and metrics["split"] == "test"
    saved = gtsrb_run / "evaluations" / "gtsrb-Final-Test"
    assert metrics["saved_to"] == str(saved)
    stored = json.loads((saved / "metrics.json").read_text())
    assert stored["options"] == {"roi_crop": True} and stored["test"]["accuracy"] == metrics["accuracy"]
    assert {p.name for p in saved.iterdir()} >= {"metrics.json", "predictions-test.csv",
                                                 "confusion-test.png", "roc-test.png",
                                                 "samples-test.jpg", "mistakes-test.jpg"}
    assert snapshot(gtsrb_run) == before  # the run's own results are untouched
    report = (gtsrb_run / "report.html").read_text()
    assert 'id="evaluation-gtsrb-Final-Test"' in report and 'id="split-val"' in report
    # the crop can be overridden; those results go to a folder of their own, beside the first
    unroi = json.loads(run_cli("evaluate", gtsrb_run, "--data", f"gtsrb:{folder}", "--set",
                               "roi_crop=false", "--format", "json").stdout)
    beside = gtsrb_run / "evaluations" / "gtsrb-Final-Test-roi-crop-False"
    assert unroi["samples"] == 9 and unroi["saved_to"] == str(beside)
    assert json.loads((beside / "metrics.json").read_text())["options"] == {"roi_crop": False}
    assert json.loads((saved / "metrics.json").read_text())["options"] == {"roi_crop": True}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    images = make_image_folder(root / "images", classes=3, per_class=15)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{images}", "--image-size", "20x20",
            "--epochs", "3", "--out", root / "runs", "--name", "r", "--quiet", report=True)
    return root / "runs" / "r", images


def test_evaluate_other_folder_with_a_subset_of_the_classes(folder_run, tmp_path):
    run, images = folder_run
    before = snapshot(run)
    other = tmp_path / "other"
    make_image_folder(other, classes=3, per_class=7, seed=5)
    shutil.rmtree(other / "class_1")  # only two of the run's three classes
    table = run_cli("evaluate", run, "--data", f"folder:{other}").stdout
    assert table.startswith("all images (14 samples of folder:") and "saved to" in table
    stored = json.loads((run / "evaluations" / "folder-other" / "metrics.json").read_text())
    result = stored["all"]
    assert result["samples"] == 14  # every image, not a validation slice
    assert result["per_class"]["class_1"]["support"] == 0
    assert result["averages"]["macro"]["support"] == 14
    confusion = np.asarray(result["confusion_matrix"])
    assert confusion.sum() == 14
    # the printed table and the report's list class_1 only where the model predicted it
    listed = "\nclass_1 " in table
    assert listed == bool(confusion[:, 1].sum())
    assert ("1 of the model's 3 classes, neither in the data nor predicted, is left out" in table) != listed
    report = (run / "report.html").read_text()
    section = report.split('id="evaluation-folder-other"')[1].split("</section>")[0]
    assert ("<td>class_1</td>" in section) == listed and "<td>class_0</td>" in section
    assert snapshot(run) == before


def test_evaluate_other_folder_names_unknown_classes(folder_run, tmp_path):
    run, _ = folder_run
    other = tmp_path / "other"
    make_image_folder(other, classes=2, per_class=3)
    (other / "class_0").rename(other / "zebra")
    result = run_cli("evaluate", run, "--data", f"folder:{other}", check=False)
    assert result.returncode == 2
    assert "1 of its classes is not among the 3 the model was trained on: zebra" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_own_data_with_tta_goes_to_its_own_folder(folder_run):
    run, _ = folder_run
    before = snapshot(run)
    flipped = json.loads(run_cli("evaluate", run, "--tta", "flip", "--format", "json").stdout)
    assert flipped["tta"] == "flip" and flipped["split"] == "val"
    assert (run / "evaluations" / "folder-images-val-flip" / "metrics.json").is_file()
    assert snapshot(run) == before
    plain = json.loads(run_cli("evaluate", run, "--format", "json").stdout)
    assert plain["saved_to"] == str(run)
    assert json.loads((run / "metrics.json").read_text())["val"]["accuracy"] == plain["accuracy"]



def test_report_says_an_evaluation_is_of_an_earlier_best_checkpoint(folder_run, tmp_path):
    """A run resumed after it was evaluated (on other data, or with TTA) keeps those results, made with the
    best checkpoint of then; the report called them "the best checkpoint (epoch 2)" beside the
    run's best epoch 5, as if one model had scored both."""
    from cnnlab.reports.html import run_report
    from cnnlab.runs import RunDirectory

    run = Path(shutil.copytree(folder_run[0], tmp_path / "copy"))
    evaluated = run_cli("evaluate", run, "--tta", "flip", "--no-report", "--format", "json").stdout
    label = Path(json.loads(evaluated)["saved_to"]).name
    epoch = json.loads((run / "evaluations" / label / "metrics.json").read_text())["epoch"]
    intro = lambda: run_report(RunDirectory(run)).split(f'id="evaluation-{label}"')[1].split("</table>")[0]  # noqa: E731
    assert f"The best checkpoint (epoch {epoch})" in intro()
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "epoch": epoch + 2}))  # as a resume that did better
    assert (f"An earlier best checkpoint (epoch {epoch}; the run's best is now epoch {epoch + 2}: "
            f"evaluate again for its figures)") in intro()

def test_evaluating_a_run_on_another_machine_keeps_the_runs_own_results(folder_run, monkeypatch):
    """A run trained on a lent GPU and evaluated on a CPU (or in another precision) gets
    numbers a little different from its own: they replaced the run's own val results, which
    the training curves' best epoch no longer matched. Now they go to a folder of their own,
    named by the device and precision; on the machine that trained it the run's own results
    stay where they are (the same numbers)."""
    from cnnlab.runtime import Runtime

    run, _ = folder_run
    shutil.copytree(run, run.parent / "copy")
    run = run.parent / "copy"
    own = json.loads((run / "metrics.json").read_text())["val"]
    before = snapshot(run)
    precision = own["machine"].split(",")[0].split()[1]  # what the run evaluated in: bf16 or fp32
    elsewhere = f"cpu {precision}, 2 threads, on another CPU"
    monkeypatch.setattr(Runtime, "describe", lambda self: elsewhere)
    result = json.loads(run_cli("evaluate", run, "--format", "json").stdout)
    saved = run / "evaluations" / f"folder-images-val-cpu-{precision}"
    assert result["saved_to"] == str(saved) and result["machine"] == elsewhere
    assert snapshot(run) == before
    stored = json.loads((saved / "metrics.json").read_text())
    assert stored["machine"] == elsewhere and stored["val"]["accuracy"] == result["accuracy"]
    assert "Evaluation on folder:" in (run / "report.html").read_text()
    # again on that machine: its own folder rewritten; on a third, one more folder
    evaluations = sorted((run / "evaluations").iterdir())
    run_cli("evaluate", run, "--no-report")
    assert sorted((run / "evaluations").iterdir()) == evaluations
    monkeypatch.setattr(Runtime, "describe", lambda self: f"cpu {precision}, 2 threads, on a third CPU")
    third = json.loads(run_cli("evaluate", run, "--format", "json", "--no-report").stdout)
    assert third["saved_to"] == f"{saved}-2" and snapshot(run) == before
    # back on the machine that trained it: in place, as before
    monkeypatch.setattr(Runtime, "describe", lambda self: own["machine"])
    assert json.loads(run_cli("evaluate", run, "--format", "json").stdout)["saved_to"] == str(run)
    # the report tells the two other machines' sections apart by their titles
    titles = re.findall(r"<h2>(Evaluation on [^<]*)</h2>", (run / "report.html").read_text())
    assert len(set(titles)) == len(titles), titles
    assert [machine for machine in ("another CPU", "a third CPU") if any(t.endswith(machine) for t in titles)] == [
        "another CPU", "a third CPU"], titles


def test_a_run_whose_data_lost_images_says_which_and_where_they_were_recorded(tmp_path):
    """The error named the data and the split, not the file that records the split (which a
    user who edited it, or restored the data from elsewhere, has to look at)."""
    images = make_image_folder(tmp_path / "images", classes=2, per_class=10)
    run_cli("train", "--model", "mlp", "--data", f"folder:{images}", "--epochs", "1", "--out", tmp_path, "--name", "r")
    first = json.loads((tmp_path / "r" / "split.json").read_text())["val"][0]
    (images / first).unlink()
    for command in (["evaluate", tmp_path / "r"], ["train", "--resume", tmp_path / "r", "--epochs", "2", "--check"]):
        result = run_cli(*command, check=False)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert (f"1 sample of the val split the run recorded (its split.json) is not in this data (first: {first})"
                in result.stderr)


def test_evaluate_own_folder_after_classes_were_added_to_it(tmp_path):
    """Classes are matched by name, not by their place in the folder's sorted listing: a class
    folder added before the others would shift every label (silently wrong metrics), an empty
    one between them would push the last label past the model's outputs (a traceback)."""
    images = make_image_folder(tmp_path / "images", classes=3, per_class=15)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{images}", "--image-size", "20x20",
            "--epochs", "2", "--out", tmp_path / "runs", "--name", "r")
    run = tmp_path / "runs" / "r"
    recorded = json.loads((run / "metrics.json").read_text())["val"]
    make_image_folder(tmp_path / "more", classes=1, per_class=4)
    (tmp_path / "more" / "class_0").rename(images / "a_new")
    (images / "class_1b").mkdir()
    again = json.loads(run_cli("evaluate", run, "--format", "json", "--no-report").stdout)
    assert again["samples"] == recorded["samples"]
    assert again["accuracy"] == recorded["accuracy"]
    assert again["confusion_matrix"] == recorded["confusion_matrix"]


def test_two_test_sets_of_one_folder_name_never_replace_each_other(folder_run, tmp_path):
    """`evaluate RUN --data folder:/site-a/test` then `--data folder:/site-b/test` both went to
    evaluations/folder-test/: the second replaced the first's results."""
    run = tmp_path / "run"
    shutil.copytree(folder_run[0], run, ignore=shutil.ignore_patterns("evaluations"))
    first, second = (make_image_folder(tmp_path / site / "test", classes=3, per_class=count, seed=count)
                     for site, count in (("site-a", 4), ("site-b", 6)))
    for folder in (first, second, first):  # the first again: its own folder, rewritten in place
        run_cli("evaluate", run, "--data", f"folder:{folder}", "--no-report")
    stored = {p.name: json.loads((p / "metrics.json").read_text()) for p in (run / "evaluations").iterdir()}
    assert {name: (s["data"], s[s["split"]]["samples"]) for name, s in stored.items()} == {
        "folder-test": (f"folder:{first}", 12), "folder-test-2": (f"folder:{second}", 18)}
    result = json.loads(run_cli("evaluate", run, "--data", f"folder:{second}", "--no-report",
                                "--format", "json").stdout)
    assert result["saved_to"] == str(run / "evaluations" / "folder-test-2")


def test_training_on_a_test_set_alone_is_one_line_before_anything_is_made(tmp_path):
    """A GTSRB Final_Test folder (or an npz of x_test only) holds no training images: --check
    said 'every option checks out', then training ended in KeyError: 'train'."""
    folder = write_resized_final_test(tmp_path / "t")
    for command in (["--check"], ["--epochs", "1", "--out", tmp_path / "runs"]):
        result = run_cli("train", "--model", "mlp", "--data", f"gtsrb:{folder}", "--image-size", "16x16", *command,
                         check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().endswith(
            f"--data gtsrb:{folder}: holds only a test split, no training images; a test set on its own is "
            "for evaluation: evaluate RUN --data=SPEC")
    assert not (tmp_path / "runs").exists()


def test_data_info_describes_a_test_set_alone(tmp_path):
    """`cnnlab data info gtsrb:Final_Test` (the way to look at a test set before evaluating on
    it) ended in KeyError: 'train'; its statistics and preview are now the test split's."""
    folder = write_resized_final_test(tmp_path / "t")
    info = json.loads(run_cli("data", "info", f"gtsrb:{folder}", "--format", "json",
                              "--preview", tmp_path / "grid.png").stdout)
    assert list(info["counts"]) == ["test"] and sum(info["counts"]["test"].values()) == 6
    assert info["stats_split"] == "test" and len(info["mean"]) == 3
    assert (tmp_path / "grid.png").stat().st_size > 0
    table = run_cli("data", "info", f"gtsrb:{folder}").stdout
    assert "(test split, 0-1 scale)" in table


def test_data_bench_times_a_test_set_alone(tmp_path):
    folder = write_resized_final_test(tmp_path / "t")
    bench = json.loads(run_cli("data", "bench", f"gtsrb:{folder}", "--image-size", "16x16", "--batches", "2",
                               "--format", "json").stdout)
    assert bench["images"] == 6 and bench["batch_images_per_second"] > 0
    # speed figures name their CPU
    assert bench["cpu"] == cpu_text()
    table = run_cli("data", "bench", f"gtsrb:{folder}", "--image-size", "16x16", "--batches", "2").stdout
    assert table.splitlines()[0].endswith(f" threads, on {cpu_text()}")


def test_gtsrb_classes_are_shown_with_what_each_sign_is(gtsrb_run, tmp_path):
    # the classes keep their names ("00".."02": runs match classes by name); what each sign is
    # is shown beside them in the report, the evaluate table and predictions
    run = load_run(gtsrb_run)
    assert run.classes == ["00", "01", "02"]
    assert run.descriptions == {"00": "speed limit 20", "01": "speed limit 30", "02": "speed limit 50"}
    report = (gtsrb_run / "report.html").read_text()
    assert "<td>01 (speed limit 30)</td>" in report
    table = run_cli("evaluate", gtsrb_run).stdout
    assert any(line.startswith("02 ") and line.endswith("  speed limit 50") for line in table.splitlines())
    picture = tmp_path / "sign.png"
    sign(picture, 30, (200, 60, 0))
    shown = run_cli("predict", gtsrb_run, picture, "--top-k", "3").stdout
    assert shown.count("(speed limit ") == 3
    top = json.loads(run_cli("predict", gtsrb_run, picture, "--format", "json").stdout)[0]["top"]
    assert {entry["description"] for entry in top} == set(run.descriptions.values())
    with pytest.warns(CnnlabWarning, match="roi_crop"):  # the next test's
        assert predict(gtsrb_run, [picture]).descriptions == run.descriptions
    data = gtsrb_run.parents[1] / "g"  # what the run trained on
    info = run_cli("data", "info", f"gtsrb:{data}").stdout.splitlines()
    assert [line.split()[-3:] for line in info if line.startswith("01 ")] == [["speed", "limit", "30"]]
    assert json.loads(run_cli("data", "info", f"gtsrb:{data}", "--format", "json").stdout)["descriptions"]["02"] \
        == "speed limit 50"


def test_a_run_recorded_before_class_descriptions_shows_class_names_alone(folder_run, tmp_path):
    run, images = folder_run
    old = tmp_path / "old"
    shutil.copytree(run, old)
    data = json.loads((old / "data.json").read_text())
    data.pop("descriptions")
    (old / "data.json").write_text(json.dumps(data))
    assert load_run(old).descriptions == {}
    shown = run_cli("predict", old, next(images.rglob("*.png")), "--top-k", "1").stdout
    assert len(shown.splitlines()[0].split()) == 3  # the file, the class, its probability
    table = run_cli("evaluate", old).stdout
    assert any(line.startswith("class_0 ") and line.rstrip().split()[-1].isdigit() for line in table.splitlines())


def test_exported_models_carry_the_class_descriptions(gtsrb_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = run_cli("export", gtsrb_run, "--out", tmp_path / "m.onnx").stdout.strip()
    metadata = {entry.key: entry.value for entry in onnx.load(path).metadata_props}
    assert json.loads(metadata["descriptions"])["01"] == "speed limit 30"


def test_predict_says_a_run_trained_on_sign_boxes_is_given_whole_images(gtsrb_run, folder_run, tmp_path):
    """predict has no box to cut: gtsrb-resnet9 read its validation images whole at 87.3%,
    their sign boxes at 99.0%, without a word."""
    picture = tmp_path / "sign.png"
    sign(picture, 30, (200, 60, 0))
    stderr = run_cli("predict", gtsrb_run, picture).stderr
    assert "this run was trained on the sign boxes cut from its images (roi_crop)" in stderr
    with pytest.warns(CnnlabWarning, match="crop the images to the sign"):
        predict(gtsrb_run, np.zeros((2, 30, 30, 3), np.uint8))
    assert "roi_crop" not in run_cli("predict", folder_run[0], picture).stderr


def test_the_runs_own_data_with_other_source_options_is_its_own_split(gtsrb_run):
    """`evaluate RUN --set roi_crop=false` (the run's own data, uncropped) read as other data:
    every image of it, the training images among them, and `--split val` was refused as a
    split the data does not have."""
    before = snapshot(gtsrb_run)
    recorded = json.loads((gtsrb_run / "split.json").read_text())
    result = json.loads(run_cli("evaluate", gtsrb_run, "--set", "roi_crop=false", "--format", "json").stdout)
    assert result["split"] == "val" and result["samples"] == len(recorded["val"])
    saved = gtsrb_run / "evaluations" / "gtsrb-g-val-roi-crop-False"
    assert result["saved_to"] == str(saved)
    stored = json.loads((saved / "metrics.json").read_text())
    assert stored["options"] == {"roi_crop": False} and stored["split"] == "val"
    ids = [row.split(",")[0] for row in (saved / "predictions-val.csv").read_text().splitlines()[1:]]
    assert sorted(ids) == sorted(recorded["val"])
    train = json.loads(run_cli("evaluate", gtsrb_run, "--set", "roi_crop=false", "--split", "train",
                               "--format", "json").stdout)
    assert train["samples"] == len(recorded["train"])
    assert snapshot(gtsrb_run) == before


def test_predict_crops_each_image_to_its_box_from_a_gtsrb_csv(gtsrb_run, tmp_path):
    """predict had no way to take GTSRB's boxes: a run trained on sign boxes could only be
    given whole images, or images cropped by hand."""
    folder = write_resized_final_test(tmp_path / "t", count=4)
    annotation = folder / "GT-final_test.csv"
    files = sorted((folder / "Images").glob("*.ppm"))
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for file in files:  # the box of the CSV's 80x80 original on the 32x32 file: 8,8 to 24,24
        with Image.open(file) as image:
            image.crop(box_in_image((20, 20, 59, 59, 80, 80), *image.size)).save(by_hand / file.name)
    expected = json.loads(run_cli("predict", gtsrb_run, by_hand, "--format", "json", "--top-k", "3").stdout)
    result = run_cli("predict", gtsrb_run, folder / "Images", "--boxes", annotation, "--format", "json",
                     "--top-k", "3")
    assert "roi_crop" not in result.stderr
    assert [p["top"] for p in json.loads(result.stdout)] == [p["top"] for p in expected]
    whole = json.loads(run_cli("predict", gtsrb_run, folder / "Images", "--format", "json", "--top-k", "3").stdout)
    assert [p["top"] for p in whole] != [p["top"] for p in expected]  # the boxes are what made them equal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cropped: no warning that the images are whole
        from_python = predict(gtsrb_run, files, boxes=annotation, top_k=3)
    assert [[name for name, _ in p.top] for p in from_python.predictions] == \
        [[entry["class"] for entry in p["top"]] for p in expected]
    with pytest.raises(CnnlabError, match=r"^boxes: crops image files by their names"):
        predict(gtsrb_run, np.zeros((1, 32, 32, 3), np.uint8), boxes=annotation)


def test_predict_boxes_from_kaggle_test_csv_and_images_without_a_row(gtsrb_run, tmp_path):
    root = write_kaggle_test(tmp_path / "k", 2)
    shown = run_cli("predict", gtsrb_run, root / "Test", "--boxes", root / "Test.csv")
    assert shown.returncode == 0 and shown.stdout.count(str(root / "Test")) == 2 and not shown.stderr
    sign(root / "Test/00009.png", 30, (0, 200, 0))  # no row names it
    refused = run_cli("predict", gtsrb_run, root / "Test", "--boxes", root / "Test.csv", check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"cnnlab predict: error: --boxes {root / 'Test.csv'}: no row for 1 of the images "
        f"({root / 'Test/00009.png'}); each needs its Filename or Path and its box")
    (root / "bad.csv").write_text("Path,Roi.X1\nTest/00000.png,3\n")
    refused = run_cli("predict", gtsrb_run, root / "Test", "--boxes", root / "bad.csv", check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"cnnlab predict: error: {root / 'bad.csv'}, line 2: not a valid row (KeyError: 'Roi.Y1')")


def test_sign_boxes_match_rows_by_path_then_by_a_name_no_other_row_has(tmp_path):
    annotation = tmp_path / "boxes.csv"
    annotation.write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n"
                          "a/1.png;10;10;1;1;8;8\nb/1.png;10;10;2;2;7;7\nc/2.png;10;10;0;0;9;9\n")
    boxes = sign_boxes(annotation, [tmp_path / "b/1.png", tmp_path / "elsewhere/2.png"])
    assert boxes.tolist() == [[2, 2, 7, 7, 10, 10], [0, 0, 9, 9, 10, 10]]
    with pytest.raises(CnnlabError, match=r"no row for 1 of the images \(\S+elsewhere/1.png\)"):
        sign_boxes(annotation, [tmp_path / "elsewhere/1.png"])  # two rows have the name: neither is taken


def test_predict_and_evaluate_warnings_point_at_the_callers_line(gtsrb_run, tmp_path):
    """Python's warnings show the line they point at: the predict warnings pointed into
    cnnlab's own files (api.py, or predict.py for files), as deep as each was raised."""
    picture = tmp_path / "sign.png"
    sign(picture, 30, (200, 60, 0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(gtsrb_run, np.zeros((1, 30, 30, 3), np.uint8))
        predict(gtsrb_run, [picture])
        evaluate(gtsrb_run, tta="flip", report=False)
        load_dataset(str(make_image_folder(tmp_path / "f", classes=2, per_class=2)), (8, 8), progress=False)
    assert len(caught) >= 4
    assert {(Path(w.filename).name, type(w.message).__name__) for w in caught} == {
        ("test_evaluate_other_data.py", "CnnlabWarning")}


def test_sign_boxes_match_images_converted_to_another_format(tmp_path):
    """GTSRB is often shared as PNGs converted from its .ppm files, its CSVs unchanged: every
    image was refused as having no row."""
    annotation = tmp_path / "GT-final_test.csv"
    annotation.write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2\n"
                          "00000.ppm;10;10;1;1;8;8\n00001.ppm;10;10;2;2;7;7\n")
    boxes = sign_boxes(annotation, [tmp_path / "00001.png", tmp_path / "elsewhere" / "00000.jpg"])
    assert boxes.tolist() == [[2, 2, 7, 7, 10, 10], [1, 1, 8, 8, 10, 10]]

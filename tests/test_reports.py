"""Reports: pictures, the self-contained HTML (rendered in headless Chromium where it is
installed), comparison of runs and ONNX export parity."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import api
from cnnlab.data import BatchLoader, load_dataset
from cnnlab.evaluation.artifacts import load_artifacts
from conftest import run_cli

PICTURES = ["curves.png", "preview.jpg", "confusion-val.png", "confusion-val-normalized.png",
            "roc-val.png", "calibration-val.png", "samples-val.jpg", "mistakes-val.jpg"]
PHOTO_GRIDS = [name for name in PICTURES if name.endswith(".jpg")]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cnn = api.train(model="lenet5", data="digits", epochs=2, out=str(out), name="cnn", quiet=True)
    mlp = api.train(model="mlp", data="digits", epochs=2, out=str(out), name="mlp", quiet=True,
                    image_size=[28, 28])
    return cnn, mlp


def test_every_picture_is_a_real_image(two_runs):
    run = two_runs[0]
    for name in PICTURES:
        with Image.open(run.path / name) as image:
            image.verify()
        with Image.open(run.path / name) as image:
            assert image.width >= 300 and image.height >= 250, name


def test_grids_of_photos_are_jpeg_files_and_charts_png(two_runs, tmp_path):
    """The grids of images (the data preview, sample predictions, mistakes) were PNG files of
    photographs, which PNG compresses poorly: a resnet9 run on 64x64 flowers wrote 6 MB of them
    and a 12.8 MB report.html, a run on 128x128 ones 5.7 MB and 8.2 MB. As JPEG they are a
    fifth of that; the charts stay PNG. A run made before keeps its PNG grids in its report."""
    from cnnlab.reports.html import run_report
    from cnnlab.runs import RunDirectory

    run = two_runs[0]
    for name in PICTURES:
        with Image.open(run.path / name) as image:
            assert image.format == ("JPEG" if name in PHOTO_GRIDS else "PNG"), name
    before = tmp_path / "before"
    shutil.copytree(run.path, before)
    for name in PHOTO_GRIDS:  # as a run made before wrote them
        with Image.open(before / name) as image:
            image.save((before / name).with_suffix(".png"))
        (before / name).unlink()
    text = run_report(RunDirectory(before))
    assert text.count("data:image/png;base64,") == len(PICTURES) and "not available" not in text
    out = tmp_path / "grid.jpg"
    run_cli("data", "info", "digits", "--preview", out)
    with Image.open(out) as image:
        assert image.format == "JPEG"


def test_report_is_self_contained(two_runs):
    text = (two_runs[0].path / "report.html").read_text()
    for section in ("data", "metrics", "curves", "split-val", "model", "config", "per-class-val"):
        assert f'id="{section}"' in text
    assert text.count("data:image/png;base64,") == len(PICTURES) - len(PHOTO_GRIDS)
    assert text.count("data:image/jpeg;base64,") == len(PHOTO_GRIDS)
    assert not re.search(r'(src|href)="(https?:)?//', text), "no external resources"


def test_report_and_evaluate_show_the_calibration(two_runs):
    """The expected calibration error beside the accuracy, and the reliability diagram: what
    a predicted probability is worth, for users who act on predict's probabilities."""
    run = two_runs[0]
    ece = json.loads((run.path / "metrics.json").read_text())["val"]["calibration"]["ece"]
    assert 0 <= ece <= 1
    text = (run.path / "report.html").read_text()
    assert "<th>ECE</th>" in text and 'alt="reliability diagram"' in text
    printed = run_cli("evaluate", run.path, "--no-report").stdout
    assert re.search(rf"ece\s+{ece:.4f} \(15 bins\)", printed)


def test_confusion_matrix_for_many_classes(tmp_path):
    from cnnlab.reports import plots

    classes = [f"class-{i:03d}" for i in range(120)]
    matrix = np.random.default_rng(0).integers(0, 20, (120, 120))
    path = tmp_path / "cm.png"
    path.write_bytes(plots.confusion_matrix(matrix, classes, normalize=True))
    with Image.open(path) as image:
        assert image.width > 1000


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("Chromium is not installed (make system-deps installs Debian's chromium where apt works)")


def test_report_renders_in_chromium(two_runs, tmp_path):
    browser = chromium()
    report = two_runs[0].path / "report.html"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'data-ready="1"' in dom.stdout, dom.stderr[-2000:]  # the inline script ran to the end
    for section in ("Metrics", "Training curves", "Val split", "Model", "Config"):
        assert f">{section}</h2>" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120)
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)


def test_compare_two_runs(two_runs, tmp_path):
    out = tmp_path / "compare.html"
    run_cli("compare", two_runs[0].path, two_runs[1].path, "--out", out)
    text = out.read_text()
    assert "cnn" in text and "mlp" in text and text.count("<tr>") == 3
    with Image.open(out.with_suffix(".png")) as image:
        assert image.width > 1000


def test_compare_takes_a_folder_of_runs(two_runs, tmp_path):
    """`cnnlab compare runs/` (a sweep's folder) said 'not a cnnlab run directory'."""
    out = tmp_path / "compare.html"
    run_cli("compare", two_runs[0].path.parent, "--out", out)
    text = out.read_text()
    assert "cnn" in text and "mlp" in text and text.count("<tr>") == 3
    empty = run_cli("compare", tmp_path, "--out", out, check=False)
    assert empty.returncode == 2 and f"{tmp_path}: not a cnnlab run directory" in empty.stderr


@pytest.mark.parametrize("name", ["history.json", "summary.json"])
def test_compare_of_a_folder_leaves_out_a_damaged_run_and_says_so(two_runs, tmp_path, name):
    """`compare FOLDER` stopped at the first damaged run it found, where `runs FOLDER` lists it
    as unreadable and goes on; a damaged summary.json (its parameter count) stopped it still,
    after its picture was written. A run named on its own is still refused, before anything
    is written."""
    import shutil

    folder = tmp_path / "sweep"
    shutil.copytree(two_runs[0].path.parent, folder)
    damaged = folder / two_runs[1].path.name
    (damaged / name).write_text("[{")
    out = tmp_path / "compare.html"
    result = run_cli("compare", folder, "--out", out)
    assert f"cnnlab: warning: {damaged}: left out of the comparison: {damaged / name}" in result.stderr
    text = out.read_text()
    assert two_runs[0].path.name in text and text.count("<tr>") == 2  # the heading and one run
    refused = tmp_path / "refused.html"
    alone = run_cli("compare", damaged, two_runs[0].path, "--out", refused, check=False)
    assert alone.returncode == 2 and f"error: {damaged / name}" in alone.stderr
    assert not refused.exists() and not refused.with_suffix(".png").exists()
    (folder / two_runs[0].path.name / "classes.json").write_text("{")
    nothing = run_cli("compare", folder, "--out", out, check=False)
    assert nothing.returncode == 2 and nothing.stderr.strip().endswith(
        f"error: {folder}: every run it holds is unreadable (2 left out)"), nothing.stderr


@pytest.mark.slow
def test_evaluate_writes_pictures_for_its_split(tmp_path, mnist_dir):
    run = api.train(model="lenet5", data=f"mnist:{mnist_dir}", epochs=1, subset=600,
                    out=str(tmp_path), name="m", quiet=True)
    assert (run.path / "confusion-test.png").is_file()
    api.evaluate(run, split="test")
    assert "split-test" in (run.path / "report.html").read_text()


def test_onnx_export_parity(two_runs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    run = two_runs[0]
    path = run_cli("export", run.path, "--out", tmp_path / "m.onnx").stdout.strip()
    session = ort.InferenceSession(path)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == run.classes
    artifacts = load_artifacts(run)
    model, prep = artifacts.model, artifacts.preprocessing
    data = load_dataset("digits", prep.image_size, 1, val_split=0.1)
    images, _ = next(iter(BatchLoader(data.splits["val"], 37, prep)))
    expected = model(images).detach().numpy()
    got = session.run(None, {"images": images.contiguous().numpy()})[0]
    assert got.shape == (37, 10)  # a batch size the export never saw: the axis is dynamic
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert torch.equal(torch.from_numpy(got).argmax(1), torch.from_numpy(expected).argmax(1))


def test_report_says_how_the_run_trained_and_what_it_confuses(two_runs):
    text = (two_runs[0].path / "report.html").read_text()
    assert 'id="training"' in text and "2 epochs in" in text and "model input 28x28x1" in text
    assert "cut from images decoded" not in text  # lenet5 took the whole image
    assert "training images per second" in text and "data digits" in text
    assert "Most confused pairs" in text or "No mistakes." in text
    assert "Grad-CAM of the predicted class" not in text  # a title inside the PNGs, not the page


def test_grad_cam_finds_the_evidence():
    from cnnlab.evaluation.gradcam import grad_cam
    from cnnlab.models.convnet import ConvNet
    from cnnlab.models.layers import Conv, GlobalPool, ReLU

    model = ConvNet([Conv(1, 3, padding=1), ReLU(), GlobalPool("avg")], [], 2, 1, (12, 12))
    with torch.no_grad():
        model.features[0].weight.zero_()
        model.features[0].weight[0, 0, 1, 1] = 1.0  # passes brightness through
        model.features[0].bias.zero_()
        model.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))  # bright means class 1
        model.head.bias.zero_()
    x = torch.zeros(2, 1, 12, 12)
    x[0, 0, :4, :4] = 1.0  # top left
    x[1, 0, 8:, 8:] = 1.0  # bottom right
    maps = grad_cam(model, x, torch.tensor([1, 1]))
    assert maps.shape == (2, 12, 12) and maps.min() >= 0 and maps.max() <= 1
    assert maps[0, :4, :4].mean() > 0.9 and maps[0, 8:, 8:].mean() < 0.1
    assert maps[1, 8:, 8:].mean() > 0.9 and maps[1, :4, :4].mean() < 0.1


def test_grad_cam_of_a_model_whose_base_is_frozen(tmp_path):
    """A run trained with --freeze-base ended in a traceback as its report was drawn: with the
    base frozen, the last convolution's maps needed no gradient and Grad-CAM asked for theirs."""
    from cnnlab.evaluation.gradcam import grad_cam
    from cnnlab.models import create_model

    model = create_model("lenet5", 3)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 1])
    expected = grad_cam(model, x, targets)
    model.freeze_features(True)
    np.testing.assert_allclose(grad_cam(model, x, targets), expected, atol=1e-6)
    assert not any(p.requires_grad for p in model.features.parameters()) and not x.requires_grad
    run = api.train(model="lenet5", data="digits", epochs=1, subset=100, model__options={"freeze_base": True},
                    out=str(tmp_path), name="frozen", quiet=True)
    assert (run.path / "report.html").exists() and (run.path / "mistakes-val.jpg").exists()


def test_compare_is_readable(two_runs, tmp_path):
    out = tmp_path / "compare.html"
    run_cli("compare", two_runs[0].path, two_runs[1].path, "--out", out)
    text = out.read_text()
    assert "Training and validation curves" in text and ">Validation curves<" not in text
    params = [f"{int(json.loads((r.path / 'summary.json').read_text())['total_params']):,}" for r in two_runs]
    assert all(p in text for p in params)  # 61,706, not 61706
    assert re.search(r"<td[^>]*>(\d+ ms|\d\.\d s|\d+ s|\d+ min \d\d s)</td>", text)
    assert "<th>val ECE</th>" in text  # how far each run's probabilities are from its accuracy
    for run in two_runs:
        ece = json.loads((run.path / "metrics.json").read_text())["val"]["calibration"]["ece"]
        assert f">{ece:.4f}</td>" in text


def test_a_tall_grid_keeps_its_title_next_to_the_images():
    """A 9-row preview once left ~190 px of blank figure between the title and the grid."""
    from cnnlab.reports.plots import image_grid

    pixels = np.random.default_rng(0).integers(0, 255, (72, 16, 16, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(image_grid(pixels, [str(i) for i in range(72)], title="data preview"))) as image:
        grey = np.asarray(image.convert("L"))
    first_image_row = int(np.argmax((grey < 250).mean(axis=1) > 0.5))
    assert 0 < first_image_row < 80


def test_a_runs_preview_shows_its_augmentations(tmp_path, monkeypatch):
    """The report's data preview showed the stored images: a run trained on crops and flips
    now shows what it was trained on, beside what evaluation sees."""
    from cnnlab.reports import plots

    drawn = []
    real = plots.image_grid
    monkeypatch.setattr(plots, "image_grid", lambda images, titles, *a, **k: drawn.append((titles, k.get("title")))
                        or real(images, titles, *a, **k))
    api.train(model="mlp", data="digits", epochs=1, out=str(tmp_path), name="aug", quiet=True,
              image_size=[16, 16], crop=[12, 12], augment=["hflip", "pad_crop:2"])
    previews = [(titles, title) for titles, title in drawn if title and "trained views" in title]
    assert len(previews) == 1 and previews[0][0][:2] == ["0: evaluated", "trained"]
    assert "hflip, pad_crop:2" in previews[0][1]


def test_class_names_the_fonts_cannot_draw_are_one_warning_naming_them():
    """Class folders named in Chinese or Japanese repeated matplotlib's 'Glyph 29356 missing
    from font(s) DejaVu Sans' for every picture: one warning now says which characters are
    drawn as boxes and what to do."""
    import warnings

    from cnnlab.reports import plots

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            plots.confusion_matrix(np.eye(2, dtype=int), ["犬 dog", "猫 cat"], normalize=False)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "Glyph" in m]
    assert len(messages) == 1 and "犬猫" in messages[0] and "install a font" in messages[0]


def test_a_run_trained_on_equalized_images_is_evaluated_exported_and_described_so(tmp_path):
    """normalize: equalized lives in the run's preprocessing: evaluate gives the accuracy the
    run recorded, the report and the exported model's metadata say what its input is."""
    ort = pytest.importorskip("onnxruntime")
    run = api.train(model="lenet5", data="digits", epochs=1, out=str(tmp_path), name="eq", quiet=True,
                    data__normalize="equalized")
    recorded = json.loads((run.path / "metrics.json").read_text())["val"]["accuracy"]
    assert api.evaluate(run)["accuracy"] == pytest.approx(recorded)
    assert "histogram equalised" in (run.path / "report.html").read_text()
    path = run_cli("export", run.path, "--out", tmp_path / "m.onnx").stdout.strip()
    meta = ort.InferenceSession(path).get_modelmeta().custom_metadata_map
    assert meta["normalize"] == "equalized" and "histogram equalised" in meta["input"]


def test_a_run_with_its_own_mean_and_std_says_which_in_its_report_and_exported_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    run = api.train(model="lenet5", data="digits", epochs=1, subset=100, out=str(tmp_path), name="given",
                    quiet=True, data__mean=[0.5], data__std=[0.25])
    told = "pixels/255 standardised with the mean (0.5) and std (0.25) given"
    assert told in (run.path / "report.html").read_text()
    path = run_cli("export", run.path, "--out", tmp_path / "m.onnx").stdout.strip()
    meta = ort.InferenceSession(path).get_modelmeta().custom_metadata_map
    assert meta["normalize"] == "given" and meta["input"] == f"float32 NCHW, {told}"


@pytest.mark.parametrize("mean, std", [(["x"], [1.0]), ([0.5], []), (None, [1.0]), ([True], [1.0]), (0.5, [1.0])])
def test_a_damaged_record_of_the_mean_and_std_is_described_without_its_numbers(mean, std):
    from cnnlab.config import NORMALIZATIONS, normalization_text

    assert normalization_text("given", mean, std) == NORMALIZATIONS["given"]
    assert normalization_text("given", [0.5, 0.25, 1], [2]) == ("pixels/255 standardised with the mean (0.5, 0.25, 1) "
                                                               "and std (2) given")


def test_the_metrics_tables_name_what_their_img_s_were_measured_with():
    """Evaluation speeds are machine figures: one machine is named once, several each by split;
    a run evaluated before speeds were recorded shows none."""
    from cnnlab.reports.html import evaluation_machines

    first, other = "cpu bf16, 2 threads, on AMD EPYC (family 25, model 17; flags: avx2)", "cpu fp32, 1 thread, on X<1>"
    both = {"val": {"machine": first}, "test": {"machine": first}}
    assert evaluation_machines(both) == f"<p>img/s of evaluation with {first}.</p>"
    mixed = {"val": {"machine": first}, "test": {"machine": other}}
    assert evaluation_machines(mixed) == (f"<p>img/s of evaluation: val's with {first}; "
                                          "test's with cpu fp32, 1 thread, on X&lt;1&gt;.</p>")
    assert evaluation_machines(mixed, ("test",)) == "<p>img/s of evaluation with cpu fp32, 1 thread, on X&lt;1&gt;.</p>"
    assert evaluation_machines({"val": {"accuracy": 0.5}}) == ""

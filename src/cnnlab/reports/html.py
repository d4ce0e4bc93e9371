"""Self-contained HTML: the run report and the comparison of runs. Pictures are embedded as
data URIs and the only script is inline, so a file opens anywhere with no network."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .. import runs
from ..config import normalization_text, read_yaml

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{border-bottom:2px solid #d8dde6;padding-bottom:4px;margin-top:36px}
section{background:#fff;border-radius:8px;padding:4px 20px 16px;margin:16px 0;box-shadow:0 1px 3px #0001}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}
th,td{border-bottom:1px solid #e4e7ec;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#eef1f5;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:" \\2195";color:#99a}
pre{background:#f0f2f5;padding:10px;overflow:auto;font-size:.8em;max-height:420px}
img{max-width:100%;height:auto;border:1px solid #e4e7ec;margin:6px 0}
.muted{color:#667}.grid{display:flex;flex-wrap:wrap;gap:12px}.grid>div{flex:1 1 480px}
.scroll{max-height:520px;overflow:auto}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = th.dataset.order !== 'asc'; th.dataset.order = asc ? 'asc' : 'desc';
      rows.sort(function(a, b){
        var x = a.cells[col].dataset.v || a.cells[col].textContent;
        var y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
document.body.dataset.ready = "1";
"""


@dataclass(frozen=True)
class Cell:
    """A table cell shown as ``text`` (a formatted number) and sorted by ``sort_key``."""

    text: str
    sort_key: float


def img(path: Path, alt: str) -> str:
    if not path.is_file() and path.suffix == ".jpg" and path.with_suffix(".png").is_file():
        path = path.with_suffix(".png")  # a grid as a run made before drew it (runs.PNG_GRIDS)
    if not path.is_file():
        return f'<p class="muted">({html.escape(alt)} not available)</p>'
    return f'<img src="{runs.data_uri(path)}" alt="{html.escape(alt)}">'


def table(header: list[str], rows: list[list], sortable: bool = False, id_: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, Cell):
                cells.append(f'<td data-v="{value.sort_key}">{html.escape(value.text)}</td>')
            elif isinstance(value, float):
                cells.append(f'<td data-v="{value}">{value:.4f}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    attrs = (' class="sortable"' if sortable else "") + (f' id="{id_}"' if id_ else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, subtitle: str, sections: list[str]) -> str:
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1><p class=\"muted\">{html.escape(subtitle)}</p>"
            + "".join(sections) + f"</main><script>{SORT_SCRIPT}</script></body></html>\n")


def section(id_: str, title: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{html.escape(title)}</h2>{body}</section>'


def metrics_rows(metrics: dict, splits: tuple[str, ...] = ("val", "test")) -> list[list]:
    rows = []
    for split in splits:
        if split not in metrics:
            continue
        m = metrics[split]
        auc = m.get("roc_auc", {})
        rows.append([split, m.get("samples", ""), m["loss"], m["accuracy"],
                     m.get("top5_accuracy", "-"), m["mse"], m["averages"]["macro"]["f1"],
                     auc.get("macro") if auc.get("macro") is not None else "-",
                     auc.get("micro") if auc.get("micro") is not None else "-",
                     m.get("calibration", {}).get("ece", "-"),
                     Cell(f"{m['images_per_second']:,.0f}", m["images_per_second"]) if "images_per_second" in m else "-"])
    return rows


def evaluation_machines(metrics: dict, splits: tuple[str, ...] = ("val", "test")) -> str:
    """What the img/s of ``metrics_rows`` were measured with: one machine, or each split's."""
    machines = {split: metrics[split]["machine"] for split in splits if "machine" in metrics.get(split, {})}
    if not machines:
        return ""
    if len(set(machines.values())) == 1:
        return f"<p>img/s of evaluation with {html.escape(next(iter(machines.values())))}.</p>"
    each = "; ".join(f"{split}'s with {html.escape(machine)}" for split, machine in machines.items())
    return f"<p>img/s of evaluation: {each}.</p>"


def training_body(history: list[dict], data: dict, summary: dict, config: dict, trained_on: list[dict]) -> str:
    """How the run trained: epochs, time, speed and what it was measured on (``trained_on``:
    the run's TRAINED_ON records), and the input the model actually took."""
    seconds = runs.training_seconds(history)
    rates = [row["images_per_second"] for row in history if "images_per_second" in row]
    shape = summary.get("input_shape")
    decoded = data.get("image_size")
    parts = [f"{len(history)} epochs in {runs.duration(seconds)}"]
    if rates:
        parts.append(f"{sum(rates) / len(rates):,.0f} training images per second on average")
    if machines := runs.machines_text(trained_on, len(history)):
        parts.append(f"trained with {machines}")
    if shape:
        model_input = "x".join(map(str, shape))
        parts.append(f"model input {model_input}"
                     + (f", cut from images decoded at {'x'.join(map(str, decoded))}"
                        if decoded and list(decoded) != list(shape[:2]) else ""))
    parts.append(f"data {data.get('spec', '?')}")
    data_config = config.get("data") or {}
    parts.append(normalization_text(data_config.get("normalize", "dataset"), data_config.get("mean"),
                                    data_config.get("std")))
    return f"<p>{html.escape('; '.join(parts))}.</p>"


def reported_classes(result: dict) -> list[str]:
    """The classes a per-class table lists: those with samples in the data or predicted at
    least once. The others have no precision or recall to speak of (0 by scikit-learn's
    ``zero_division=0``), and on data holding a few of a model's classes they would fill the
    table with zeros."""
    confusion = result["confusion_matrix"]
    return [name for i, name in enumerate(result["per_class"])
            if sum(confusion[i]) or any(row[i] for row in confusion)]


def per_class_table(result: dict) -> tuple[list[tuple[str, dict]], str | None]:
    """The rows of a per-class table (each reported class, then the macro and weighted
    averages) and the sentence under it that says how many classes it leaves out, if any."""
    listed = reported_classes(result)
    rows = ([(name, result["per_class"][name]) for name in listed]
            + [(f"{name} avg", row) for name, row in result["averages"].items()])
    total, hidden = len(result["per_class"]), len(result["per_class"]) - len(listed)
    left_out = (f"{hidden} of the model's {total} classes, neither in the data nor predicted, "
                f"{'is' if hidden == 1 else 'are'} left out (metrics.json lists every class)." if hidden else None)
    return rows, left_out


def confused_pairs(m: dict, classes: list[str], count: int = 10) -> list[list]:
    """The most frequent (true, predicted) mistakes: count and share of the true class."""
    matrix = m["confusion_matrix"]
    pairs = [(matrix[t][p], t, p) for t in range(len(matrix)) for p in range(len(matrix)) if t != p and matrix[t][p]]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [[classes[t], classes[p], n, f"{n / max(sum(matrix[t]), 1):.1%}"] for n, t, p in pairs[:count]]


def split_body(folder: Path, split: str, m: dict, table_id: str, descriptions: dict[str, str]) -> str:
    """Per-class table, most confused pairs, confusion matrices, ROC, reliability diagram and
    prediction grids of one evaluated split; the tables name classes with their
    ``descriptions``, the pictures by name alone."""
    listed, left_out = per_class_table(m)
    rows = [[runs.class_label(name, descriptions), row["precision"], row["recall"], row["f1"], row["support"]]
            for name, row in listed]
    pictures = {kind: folder / name for kind, name in runs.split_pictures(split).items()}
    pairs = confused_pairs(m, [runs.class_label(name, descriptions) for name in m["per_class"]])
    confused = (f"<h3>Most confused pairs</h3>{table(['true class', 'predicted as', 'images', 'of the true class'], pairs)}"
                if pairs else "<p>No mistakes.</p>")
    return (f'<div class="scroll">{table(["class", "precision", "recall", "F1", "support"], rows, True, table_id)}</div>'
            f"{f'<p>{html.escape(left_out)}</p>' if left_out else ''}"
            f"{confused}"
            f'<div class="grid"><div>{img(pictures["confusion"], "confusion matrix")}</div>'
            f'<div>{img(pictures["confusion_normalized"], "normalised confusion matrix")}</div></div>'
            f'<div class="grid"><div>{img(pictures["roc"], "ROC curves")}</div>'
            f'<div>{img(pictures["calibration"], "reliability diagram")}</div></div>'
            f'{img(pictures["samples"], "sample predictions")}'
            f'{img(pictures["mistakes"], "most confident mistakes")}')


@dataclass
class ReportSources:
    """The run's JSON files its report is made from, read (a damaged one refused by
    RunDirectory.read_json); an absent file is read as empty."""

    metrics: dict
    data: dict
    history: list[dict]
    classes: list[str]
    summary: dict
    trained_on: list[dict]
    evaluations: dict[str, dict]
    """Each evaluation's label and its metrics.json."""

    @classmethod
    def read(cls, directory: runs.RunDirectory, rewritten: Collection[str] = ()) -> ReportSources:
        """``rewritten``: files the command writes afresh before its report, left unread. A
        command reads the rest before its work, so that a damaged one is refused before the
        work, not after it."""

        def read(name: str, empty):
            return empty if name in rewritten else directory.read_json(name, empty)

        return cls(read(runs.METRICS, {}), read(runs.DATA, {}), read(runs.HISTORY_JSON, []), read(runs.CLASSES, []),
                   read(runs.SUMMARY_JSON, {}), read(runs.TRAINED_ON, []),
                   {label: directory.read_json(f"{runs.evaluation_folder(label)}/{runs.METRICS}")
                    for label in directory.evaluations()})


def evaluation_titles(evaluations: dict[str, dict]) -> dict[str, str]:
    """What each evaluation of a run was on (its data, split, test-time augmentation and source
    options), by label; with the machine too where that is what sets two apart (the run's own
    split evaluated on two other machines)."""
    titles = {}
    for label, evaluation in evaluations.items():
        split = evaluation["split"]
        what = f"{evaluation['data']}, {'all images' if split == 'all' else f'{split} split'}"
        if evaluation.get("tta"):
            what += f", test-time augmentation {evaluation['tta']}"
        if options := ", ".join(f"{k}={v}" for k, v in evaluation.get("options", {}).items()):
            what += f" with {options}"
        titles[label] = what
    shared = Counter(titles.values())
    return {label: f"{title}, {evaluations[label]['machine']}" if shared[title] > 1 and evaluations[label].get("machine")
            else title for label, title in titles.items()}


def run_report(directory: runs.RunDirectory) -> str:
    """The report of one run, from the files in its directory."""
    run_path = directory.path
    sources = ReportSources.read(directory)
    metrics, data, history = sources.metrics, sources.data, sources.history
    descriptions = runs.class_descriptions(data)
    sections = []

    counts = data.get("counts", {})
    data_body = (f"<p>{html.escape(str(data.get('spec', '')))}: {len(sources.classes)} classes, images "
                 f"{'x'.join(map(str, data.get('image_size', [])))} with {data.get('channels', '?')} "
                 f"channel(s); " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "</p>")
    if data.get("unreadable"):
        data_body += f"<p>{len(data['unreadable'])} unreadable files skipped (listed in {runs.DATA}).</p>"
    data_body += img(directory.file(runs.PREVIEW), "data preview")
    sections.append(section("data", "Data", data_body))

    config = read_yaml(directory.file(runs.CONFIG)) if directory.exists(runs.CONFIG) else {}
    sections.append(section("training", "Training", training_body(history, data, sources.summary, config,
                                                                  sources.trained_on)))

    header = ["split", "samples", "loss", "accuracy", "top-5", "MSE", "macro F1", "AUC macro", "AUC micro", "ECE",
              "img/s"]
    best = f"<p>Best checkpoint: epoch {metrics.get('epoch', '?')} of {len(history)}.</p>"
    sections.append(section("metrics", "Metrics", best + table(header, metrics_rows(metrics))
                            + evaluation_machines(metrics)))
    sections.append(section("curves", "Training curves", img(directory.file(runs.CURVES), "training curves")))

    for split in ("val", "test"):
        if split in metrics:
            sections.append(section(f"split-{split}", f"{split.capitalize()} split",
                                    split_body(run_path, split, metrics[split], f"per-class-{split}", descriptions)))
    titles = evaluation_titles(sources.evaluations)
    for label, evaluation in sources.evaluations.items():
        folder = runs.evaluation_folder(label)
        split = evaluation["split"]
        checkpoint = f"The best checkpoint (epoch {evaluation['epoch']})"
        if evaluation["epoch"] != metrics.get("epoch", evaluation["epoch"]):  # evaluated, then resumed
            checkpoint = (f"An earlier best checkpoint (epoch {evaluation['epoch']}; the run's best is now epoch "
                          f"{metrics['epoch']}: evaluate again for its figures)")
        intro = f"<p>{checkpoint} on {html.escape(titles[label])}; files in {html.escape(folder)}/.</p>"
        body = intro + table(header, metrics_rows(evaluation, (split,))) + evaluation_machines(evaluation, (split,))
        sections.append(section(f"evaluation-{label}", f"Evaluation on {titles[label]}", body
                                + split_body(directory.file(folder), split, evaluation[split],
                                             f"per-class-{label}", descriptions)))

    sections.append(section("model", "Model", f"<pre>{html.escape(directory.read_text(runs.SUMMARY))}</pre>"))
    sections.append(section("config", "Config", f"<pre>{html.escape(directory.read_text(runs.CONFIG))}</pre>"))
    title = f"cnnlab run {run_path.name}"
    return page(title, str(run_path.resolve()), sections)


def short_names(names: list[str]) -> list[str]:
    """Run names without their shared parts (the date-time stamp, words every name starts or
    ends with), so a legend or table row says what differs; unique, in order."""
    stripped = [re.sub(r"^\d{8}-\d{6}-", "", name) for name in names]
    words = [name.split("-") for name in stripped]
    for end in (0, -1):  # leading, then trailing words they all share
        while len(words) > 1 and all(len(w) > 1 for w in words) and len({w[end] for w in words}) == 1:
            words = [w[1:] if end == 0 else w[:-1] for w in words]
    for candidate in (["-".join(w) for w in words], stripped, names):
        if len(set(candidate)) == len(candidate):
            return candidate
    return names


def comparison_report(runs_: list, names: list[str], curves: Path) -> str:
    header = ["run", "model", "best val accuracy", "best val loss", "test accuracy", "val ECE", "parameters",
              "training time", "img/s", "trained with"]
    rows = [comparison_row(run, name) for run, name in zip(runs_, names, strict=True)]
    listing = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(str(run.path))}</li>"
                      for run, name in zip(runs_, names, strict=True))
    sections = [section("curves", "Training and validation curves",
                        "<p>Training dashed, validation solid; one colour per run.</p>"
                        + img(curves, "overlaid curves")),
                section("table", "Runs", table(header, rows, sortable=True, id_="runs") + f"<ul>{listing}</ul>")]
    return page("cnnlab comparison", f"{len(runs_)} runs", sections)


def comparison_row(run, name: str) -> list:
    history = run.history
    best_acc = max((row.get("val_accuracy", row.get("accuracy", 0.0)) for row in history), default=0.0)
    best_loss = min((row.get("val_loss", row.get("loss", 0.0)) for row in history), default=0.0)
    test = run.metrics.get("test", {}).get("accuracy")
    ece = run.metrics.get("val", {}).get("calibration", {}).get("ece")
    params = run.summary.get("total_params")
    seconds = runs.training_seconds(history)
    rates = [row["images_per_second"] for row in history if "images_per_second" in row]
    return [name, run.config.model.name, float(best_acc), float(best_loss),
            float(test) if test is not None else "-", float(ece) if ece is not None else "-",
            Cell(f"{params:,}", params) if isinstance(params, int) else "-",
            Cell(runs.duration(seconds), seconds),
            Cell(f"{sum(rates) / len(rates):,.0f}", sum(rates) / len(rates)) if rates else "-",
            runs.machines_text(run.trained_on, len(history)) or "-"]

"""Self-contained HTML: the run report and the comparison of runs. Pictures are embedded as
data URIs and the only script is inline, so a file opens anywhere with no network."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

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


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="muted">({html.escape(alt)} not available)</p>'
    return f'<img src="{data_uri(path)}" alt="{html.escape(alt)}">'


def table(header: list[str], rows: list[list], sortable: bool = False, id_: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, float):
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


def metrics_rows(metrics: dict) -> list[list]:
    rows = []
    for split in ("val", "test"):
        if split not in metrics:
            continue
        m = metrics[split]
        auc = m.get("roc_auc", {})
        rows.append([split, m.get("samples", ""), m["loss"], m["accuracy"],
                     m.get("top5_accuracy", "-"), m["mse"], m["averages"]["macro"]["f1"],
                     auc.get("macro") if auc.get("macro") is not None else "-",
                     auc.get("micro") if auc.get("micro") is not None else "-"])
    return rows


def run_report(run_path: Path) -> str:
    """The report of one run, from the files in its directory."""
    read = lambda name: json.loads((run_path / name).read_text()) if (run_path / name).is_file() else {}  # noqa: E731
    metrics, data = read("metrics.json"), read("data.json")
    history = read("history.json") or []
    config = (run_path / "config.yaml").read_text() if (run_path / "config.yaml").is_file() else ""
    summary = (run_path / "summary.txt").read_text() if (run_path / "summary.txt").is_file() else ""
    classes = read("classes.json") or []
    sections = []

    counts = data.get("counts", {})
    data_body = (f"<p>{html.escape(str(data.get('spec', '')))}: {len(classes)} classes, images "
                 f"{'x'.join(map(str, data.get('image_size', [])))} with {data.get('channels', '?')} "
                 f"channel(s); " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "</p>")
    if data.get("unreadable"):
        data_body += f"<p>{len(data['unreadable'])} unreadable files skipped (listed in data.json).</p>"
    data_body += img(run_path / "preview.png", "data preview")
    sections.append(section("data", "Data", data_body))

    header = ["split", "samples", "loss", "accuracy", "top-5", "MSE", "macro F1", "AUC macro", "AUC micro"]
    best = f"<p>Best checkpoint: epoch {metrics.get('epoch', '?')} of {len(history)}.</p>"
    sections.append(section("metrics", "Metrics", best + table(header, metrics_rows(metrics))))
    sections.append(section("curves", "Training curves", img(run_path / "curves.png", "training curves")))

    for split in ("val", "test"):
        if split not in metrics:
            continue
        m = metrics[split]
        rows = [[name, row["precision"], row["recall"], row["f1"], row["support"]]
                for name, row in m["per_class"].items()]
        rows += [[f"{name} avg", row["precision"], row["recall"], row["f1"], row["support"]]
                 for name, row in m["averages"].items()]
        body = (f'<div class="scroll">{table(["class", "precision", "recall", "F1", "support"], rows, True, f"per-class-{split}")}</div>'
                f'<div class="grid"><div>{img(run_path / f"confusion-{split}.png", "confusion matrix")}</div>'
                f'<div>{img(run_path / f"confusion-{split}-normalized.png", "normalised confusion matrix")}</div></div>'
                f'{img(run_path / f"roc-{split}.png", "ROC curves")}'
                f'{img(run_path / f"samples-{split}.png", "sample predictions")}'
                f'{img(run_path / f"mistakes-{split}.png", "most confident mistakes")}')
        sections.append(section(f"split-{split}", f"{split.capitalize()} split", body))

    sections.append(section("model", "Model", f"<pre>{html.escape(summary)}</pre>"))
    sections.append(section("config", "Config", f"<pre>{html.escape(config)}</pre>"))
    title = f"cnnlab run {run_path.name}"
    return page(title, str(run_path.resolve()), sections)


def comparison_report(runs: list, curves: Path) -> str:
    header = ["run", "model", "best val accuracy", "best val loss", "test accuracy", "parameters",
              "training seconds", "img/s"]
    rows = [comparison_row(run) for run in runs]
    sections = [section("curves", "Validation curves", img(curves, "overlaid curves")),
                section("table", "Runs", table(header, rows, sortable=True, id_="runs"))]
    return page("cnnlab comparison", ", ".join(str(r.path) for r in runs), sections)


def comparison_row(run) -> list:
    history = run.history
    best_acc = max((row.get("val_accuracy", row.get("accuracy", 0.0)) for row in history), default=0.0)
    best_loss = min((row.get("val_loss", row.get("loss", 0.0)) for row in history), default=0.0)
    test = run.metrics.get("test", {}).get("accuracy", "-")
    summary = run.path / "summary.json"
    params = json.loads(summary.read_text())["total_params"] if summary.is_file() else "-"
    seconds = sum(row.get("seconds", 0.0) for row in history)
    rates = [row["images_per_second"] for row in history if "images_per_second" in row]
    return [run.path.name, run.config.model.name, float(best_acc), float(best_loss), test,
            params, float(seconds), float(sum(rates) / len(rates)) if rates else "-"]

"""report.html: one self-contained, interactive page of a run folder.

The page embeds everything it needs (the results as JSON, and the script and style
from `assets/`, inline): it opens from disk, offline, and can be mailed. It shows the
comparison table (sort by clicking a header, filter by typing), learning curves of the
jobs ticked in the table (overlaid, two metrics side by side), a parallel-coordinates
view from the settings to the metric, per-class accuracy and confusion heatmaps, and
for a search its trials in the order they ran with the best so far.

Reads the run folder like every report (plan.json, result.json, metrics.jsonl,
search.json) through `collect` and the result readers. No torch, no plotting library:
the page draws its own SVG. A damaged file is listed at the top, as in report.md.
Kept usable at 1,000 jobs: numbers are rounded, and per-class accuracy and confusion
matrices are embedded for the best jobs up to a cell budget (benchmarks/html_report.py
measures size and load time).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ftmatrix.reports import extras
from ftmatrix.reports.collect import (
    METRICS_KNOWN,
    JobRow,
    Study,
    larger_is_better,
    load,
    metric_name,
)
from ftmatrix.result import DamagedFile, read_result, read_search, write_atomic

OUT = "report.html"
CURVE_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1", "lr")
CELL_BUDGET = 250_000  # per-class and confusion cells embedded, each; best jobs first
DIGITS = 6  # significant digits kept of every number


def write_html(root: Path, out: Path | None = None, *, metric: str | None = None) -> Path:
    """Write the interactive report of the run folder `root`; the page's path
    (default `root/report.html`)."""
    study = load(root, curves=True)
    metric = metric_name(metric, study.jobs)  # None: accuracy, or what the jobs reported
    try:
        searched = read_search(root)
    except DamagedFile as err:
        study.problems.append(f"{err}; no search section")
        searched = None
    data = page_data(study, metric=metric, searched=searched)
    out = out or root / OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, render(data))
    return out


def page_data(study: Study, *, metric: str, searched: dict | None) -> dict[str, Any]:
    """Everything the page shows, as plain JSON."""
    larger = larger_is_better(metric)
    ranked = _ranked(study.jobs, metric, larger)
    metrics = [m for m in METRICS_KNOWN if any(m in j.metrics for j in study.jobs)]
    own = extras.columns(study.jobs)  # a job's own names, headed as report.md heads them
    metrics += [m for m, _ in own]
    classes = _classes(ranked)
    return {
        "name": study.name,
        "description": study.description,
        "metric": metric,
        "metric_note": getattr(metric, "note", ""),  # why, when no --metric chose it
        "larger": larger,
        "metric_names": dict(own),  # 'test.exact' -> 'exact' (built-in ones: report.js)
        "axes": study.axes,
        "metrics": metrics or [metric],
        "k": next((j.k for j in ranked if j.k), None),
        "jobs": [_job(j, metrics) for j in study.jobs],
        "best": [j.id for j in ranked],
        "curves": {j.id: _curves(j) for j in study.jobs if j.curves},
        "classes": classes,
        "per_class": _per_class(ranked, classes),
        "confusion": _confusions(study.root, ranked),
        "search": _search(searched),
        "problems": study.problems,
    }


def _ranked(jobs: list[JobRow], metric: str, larger: bool) -> list[JobRow]:
    """Finished jobs with the metric, best first (ties: plan order)."""
    scored = [j for j in jobs if j.state == "done" and metric in j.metrics]
    return sorted(scored, key=lambda j: -j.metrics[metric] if larger else j.metrics[metric])


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{DIGITS}g}")


def _job(job: JobRow, metrics: list[str]) -> dict[str, Any]:
    return {
        "id": job.id,
        "label": job.label or job.id,
        "state": job.state,
        "error": job.error,
        "settings": job.settings,
        "metrics": {m: _round(job.metrics.get(m)) for m in metrics},
        "best_epoch": job.best_epoch,
        "epochs": job.epochs_run,
        "trainable": job.trainable,
        "trainable_percent": _round(job.trainable_percent),
        "adapter_bytes": job.adapter_bytes,
        "peak_memory_bytes": job.peak_memory_bytes,
        "tokens_per_second": _round(job.tokens_per_second),
        "seconds_per_epoch": _round(job.seconds_per_epoch),
    }


def _curves(job: JobRow) -> dict[str, list]:
    """metrics.jsonl by column: {"epoch": [1, 2], "val_loss": [0.9, 0.7], ...}."""
    out: dict[str, list] = {"epoch": [line.get("epoch") for line in job.curves]}
    for key in CURVE_KEYS:
        values = [line.get(key) for line in job.curves]
        if any(v is not None for v in values):
            out[key] = [_round(v) if isinstance(v, (int, float)) else None for v in values]
    return out


def _classes(ranked: list[JobRow]) -> list[str]:
    seen: dict[str, None] = {}
    for job in ranked:
        seen.update(dict.fromkeys(job.per_class))
    return list(seen)


def _per_class(ranked: list[JobRow], classes: list[str]) -> dict[str, list]:
    """Per-class accuracy of the best jobs, as many as CELL_BUDGET cells hold."""
    out: dict[str, list] = {}
    for job in ranked[: max(1, CELL_BUDGET // max(1, len(classes)))]:
        if job.per_class:
            out[job.id] = [_round(job.per_class.get(c)) for c in classes]
    return out


def _confusions(root: Path, ranked: list[JobRow]) -> dict[str, Any]:
    """Confusion matrices of the best jobs, as many as CELL_BUDGET cells hold."""
    found: dict[str, Any] = {}
    cells = 0
    for job in ranked:
        try:
            result = read_result(root / job.id)
        except DamagedFile:  # collect has named it already
            continue
        test = result.test if result else None
        if test is None or not test.confusion_matrix:
            continue
        size = len(test.confusion_matrix) ** 2
        if found and cells + size > CELL_BUDGET:
            break
        cells += size
        names = test.class_names or [str(i) for i in range(len(test.confusion_matrix))]
        found[job.id] = {"classes": names, "matrix": test.confusion_matrix}
    return found


def _search(summary: dict | None) -> dict | None:
    """What the trials plot needs of search.json."""
    if not summary:
        return None
    points = []
    for point in summary["points"]:
        trials = [
            {
                "number": t["number"],
                "state": t["state"],
                "value": _round(t["value"]) if t["value"] is not None else None,
                "label": t.get("label") or "",
                "job": t.get("job"),
            }
            for t in point["trials"]
            if not t.get("retried")
        ]
        points.append(
            {"label": point.get("label") or "", "best": point.get("best"), "trials": trials}
        )
    return {
        "metric": summary["metric"],
        "direction": summary["direction"],
        "strategy": summary["strategy"],
        "points": points,
    }


def asset(name: str) -> str:
    """A file shipped in ftmatrix/reports/assets/."""
    return resources.files("ftmatrix.reports").joinpath("assets", name).read_text("utf-8")


def _embed(data: dict[str, Any]) -> str:
    """JSON that is safe inside <script>: no '</' can end the element early."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(data: dict[str, Any]) -> str:
    """The whole page."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(data['name'])} — ftmatrix report</title>\n"
        f"<style>\n{asset('report.css')}</style>\n</head>\n<body>\n"
        '<main id="app"><noscript>This report needs JavaScript.</noscript></main>\n'
        f'<script type="application/json" id="ftm-data">{_embed(data)}</script>\n'
        f"<script>\n{asset('report.js')}</script>\n</body>\n</html>\n"
    )

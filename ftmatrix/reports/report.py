"""report.md (+ results.csv, plots/) for one run folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ftmatrix.reports import plots as plotting
from ftmatrix.reports import search, tables
from ftmatrix.reports.collect import Study, flatten, load, metric_name
from ftmatrix.result import (
    PLOTS,
    REPORT_MD,
    REPORT_TEX,
    RESULTS_CSV,
    DamagedFile,
    read_search,
    write_atomic,
)

STATES = ("done", "failed", "pruned", "damaged", "pending")  # as the header counts them


def write(
    root: Path,
    *,
    out: Path | None = None,
    metric: str = "test.accuracy",
    rows: str | None = None,
    cols: str | None = None,
    per_class: bool = False,
    fmt: str = "md",
    plots: bool = True,
) -> Path:
    """Write the report of one run folder; the path of the main file."""
    metric = metric_name(metric)
    study = load(root, curves=False)  # plots read the curves they draw
    try:
        searched = read_search(root)
    except DamagedFile as err:
        study.problems.append(f"{err}; no search section")
        searched = None
    out = out or root / (REPORT_TEX if fmt == "latex" else REPORT_MD)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.parent / RESULTS_CSV, results_csv(study))
    if fmt == "csv":
        return out.parent / RESULTS_CSV
    if fmt == "latex":
        write_atomic(out, latex(study, metric=metric, rows=rows, cols=cols))
        return out
    images: list[Path] = []
    search_images: list[Path] = []
    if plots:
        folder = out.parent / PLOTS
        folder.mkdir(exist_ok=True)
        images = plotting.curves(study, folder, metric=metric)
        images += plotting.metric_vs_axes(study, metric, folder)
        if searched:
            search_images = search.plot(searched, folder)
    sections = []
    if searched:
        relative = [p.relative_to(out.parent) for p in search_images]
        sections = search.section(root, searched, relative)
    text = markdown(
        study,
        metric=metric,
        rows=rows,
        cols=cols,
        per_class=per_class,
        images=[p.relative_to(out.parent) for p in images],
        search=sections,
        drawn=search.continuous(searched) if searched else set(),
    )
    write_atomic(out, text)
    return out


def _header(study: Study) -> list[str]:
    counts: dict[str, int] = {}
    for job in study.jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    done = [j for j in study.jobs if j.state == "done"]
    total = sum(j.seconds or 0 for j in done)
    devices = sorted({j.device for j in done if j.device})
    lines = [f"# {study.name}", ""]
    if study.description:
        lines += [study.description, ""]
    lines.append("- **Jobs:** " + ", ".join(f"{counts[s]} {s}" for s in STATES if s in counts))
    if done:
        lines.append(
            f"- **Training time:** {total:.0f} s in all, {total / len(done):.0f} s per job"
        )
    if devices:
        lines.append(f"- **Devices:** {', '.join(devices)}")
    if study.stale:
        lines.append(f"- **Not in the matrix any more:** {study.stale} job folder(s), left out")
    return [*lines, ""]


def markdown(
    study: Study,
    *,
    metric: str,
    rows,
    cols,
    per_class: bool,
    images,
    search: list[str] = (),
    drawn: set[str] = frozenset(),
) -> str:
    """The report; `search`: the search section's lines (after the comparison),
    `drawn`: searched settings drawn from ranges, which get no effect table."""
    parts = _header(study)
    if study.problems:
        parts += ["## Damaged files", "", "Left out of the tables and plots below:", ""]
        parts += [f"- {problem}" for problem in study.problems]
        parts.append("")
    parts += [f"## Comparison (sorted by {metric}, {tables.STAR} best)", ""]
    parts.append(tables.markdown(tables.comparison(study, metric)))
    parts += search
    axes = [a for a in study.axes if a != tables.SEED and a not in drawn]
    if axes:
        parts += [f"## Effect of each setting on {metric}", ""]
        for axis in axes:
            parts += [f"### {axis}", "", tables.markdown(tables.effect(study, axis, metric))]
    if rows and cols:
        parts += [f"## {metric}: {rows} × {cols}", ""]
        parts.append(tables.markdown(tables.pivot(study, rows, cols, metric)))
    done = [j for j in study.jobs if j.state == "done" and metric in j.metrics]
    if done:
        larger = tables.METRICS_KNOWN[metric]
        best = sorted(done, key=lambda j: -j.metrics[metric] if larger else j.metrics[metric])[0]
        shown = done if per_class else [best]
        parts += ["## Per-class accuracy", ""]
        for job in shown:
            title = f"### {job.label or job.id}" + (" (best)" if job is best else "")
            topk = job.metrics.get("test.topk")
            parts += [title, ""]
            if topk is not None:
                parts += [f"top-{job.k} accuracy: {topk:.4f}", ""]
            parts.append(tables.markdown(tables.per_class(job)))
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{p.stem}]({p.as_posix()})" for p in images]
        parts.append("")
    return "\n".join(parts)


def latex(study: Study, *, metric: str, rows, cols) -> str:
    parts = [tables.latex(tables.comparison(study, metric), caption=f"{study.name}: {metric}")]
    for axis in [a for a in study.axes if a != tables.SEED]:
        parts.append(
            tables.latex(tables.effect(study, axis, metric), caption=f"{metric} by {axis}")
        )
    if rows and cols:
        parts.append(tables.latex(tables.pivot(study, rows, cols, metric)))
    return "\n".join(parts)


def results_csv(study: Study) -> str:
    """One row per job: every setting and metric, for pandas or a spreadsheet."""
    records = []
    for job in study.jobs:
        record = {
            "id": job.id,
            "label": job.label,
            "state": job.state,
            "error_class": job.error or "",
            **{f"setting.{k}": v for k, v in job.settings.items()},
            **job.metrics,
            "best_epoch": job.best_epoch,
            "epochs_run": job.epochs_run,
            "trainable_params": job.trainable,
            "trainable_percent": job.trainable_percent,
            "seconds_per_epoch": job.seconds_per_epoch,
            "seconds": job.seconds,
            "device": job.device,
            **{f"config.{k}": v for k, v in flatten(job.config).items()},
        }
        records.append(record)
    columns: list[str] = []
    for record in records:
        columns += [c for c in record if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()

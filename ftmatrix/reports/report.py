"""report.md (+ results.csv, plots/) for one run folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ftmatrix.reports import plots as plotting
from ftmatrix.reports import search, tables
from ftmatrix.reports.collect import (
    JobRow,
    Study,
    curves_of,
    flatten,
    larger_is_better,
    load,
    metric_name,
)
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
EPOCHS = ("best", "all", "none")  # --epochs: whose per-epoch table report.md shows
MAX_CONFUSION_CLASSES = 20  # a wider confusion matrix is drawn only (plots/confusion-*.png)


def write(
    root: Path,
    *,
    out: Path | None = None,
    metric: str | None = None,
    rows: str | None = None,
    cols: str | None = None,
    per_class: bool = False,
    fmt: str = "md",
    plots: bool = True,
    epochs: str = "best",
) -> Path:
    """Write the report of one run folder; the path of the main file. `epochs`: the
    per-epoch table of the best job (best), of every job (all) or none."""
    if epochs not in EPOCHS:
        raise ValueError(f"--epochs takes {', '.join(EPOCHS)}, not '{epochs}'")
    study = load(root, curves=False)  # plots read the curves they draw
    metric = metric_name(metric, study.jobs)  # None: accuracy, or what the jobs reported
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
    detailed = detailed_jobs(study, metric, every=per_class)
    if plots:
        folder = out.parent / PLOTS
        folder.mkdir(exist_ok=True)
        images = plotting.curves(study, folder, metric=metric)
        images += plotting.metric_vs_axes(study, metric, folder)
        images += [plotting.confusion(job, folder) for job in detailed if job.confusion]
        if searched:
            search_images = search.plot(searched, folder)
    by_epoch = {"best": detailed[:1], "all": study.jobs, "none": []}[epochs]
    for job in by_epoch:  # read only the curves that are shown
        if job.state == "done" and not job.curves:
            job.curves = curves_of(root / job.id, study.problems)
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
        by_epoch=[j for j in by_epoch if j.curves],
    )
    write_atomic(out, text)
    return out


def detailed_jobs(study: Study, metric: str, *, every: bool) -> list[JobRow]:
    """The finished jobs whose classes are shown: the best by `metric` first, then (with
    `every`) the others in plan order; [] when none finished."""
    done = [j for j in study.jobs if j.state == "done" and metric in j.metrics]
    if not done:
        return []
    larger = larger_is_better(metric)
    best = sorted(done, key=lambda j: -j.metrics[metric] if larger else j.metrics[metric])[0]
    return [best, *(j for j in done if j is not best)] if every else [best]


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
    by_epoch: list[JobRow] = (),
) -> str:
    """The report; `search`: the search section's lines (after the comparison),
    `drawn`: searched settings drawn from ranges, which get no effect table,
    `by_epoch`: the jobs whose per-epoch table is shown (their curves read)."""
    parts = _header(study)
    if study.problems:
        parts += ["## Damaged files", "", "Left out of the tables and plots below:", ""]
        parts += [f"- {problem}" for problem in study.problems]
        parts.append("")
    parts += [f"## Comparison (sorted by {metric}, {tables.STAR} best)", ""]
    note = getattr(metric, "note", "")  # chosen without --metric: which, and why
    if note:
        parts += [note, ""]
    parts.append(tables.markdown(tables.comparison(study, metric)))
    rules = tables.tested_rules(study)
    if rules:
        parts += [f"Tested epoch: {'; '.join(rules)}.", ""]
    parts += search
    axes = [a for a in study.axes if a != tables.SEED and a not in drawn]
    if axes:
        parts += [f"## Effect of each setting on {metric}", ""]
        for axis in axes:
            parts += [f"### {axis}", "", tables.markdown(tables.effect(study, axis, metric))]
    if rows and cols:
        parts += [f"## {metric}: {rows} × {cols}", ""]
        parts.append(tables.markdown(tables.pivot(study, rows, cols, metric)))
    detailed = detailed_jobs(study, metric, every=per_class)
    if by_epoch:
        parts += ["## Per-epoch metrics", ""]
        for job in by_epoch:
            parts += [_title(job, detailed), "", tables.markdown(tables.epochs(job))]
    if detailed:
        parts += ["## Per-class accuracy", ""]
        for job in detailed:
            parts += _classes(job, title=_title(job, detailed))
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{p.stem}]({p.as_posix()})" for p in images]
        parts.append("")
    return "\n".join(parts)


def _title(job: JobRow, detailed: list[JobRow]) -> str:
    best = bool(detailed) and job is detailed[0]
    return f"### {job.label or job.id}" + (" (best)" if best else "")


def _classes(job: JobRow, *, title: str) -> list[str]:
    """A job's per-class accuracy (with counts), top-k and confusion matrix."""
    parts = [title, ""]
    topk = job.metrics.get("test.topk")
    if topk is not None:
        parts += [f"top-{job.k} accuracy: {topk:.4f}", ""]
    parts.append(tables.markdown(tables.per_class(job)))
    names = job.class_names
    if names and len(job.confusion) == len(names) <= MAX_CONFUSION_CLASSES:
        parts += ["Confusion matrix (rows: true class, columns: predicted):", ""]
        parts.append(tables.markdown(tables.confusion(job)))
    return parts


def latex(study: Study, *, metric: str, rows, cols) -> str:
    parts = [tables.latex(tables.comparison(study, metric), caption=f"{study.name}: {metric}")]
    for axis in [a for a in study.axes if a != tables.SEED]:
        parts.append(
            tables.latex(tables.effect(study, axis, metric), caption=f"{metric} by {axis}")
        )
    if rows and cols:
        parts.append(tables.latex(tables.pivot(study, rows, cols, metric)))
    return "\n".join(parts)


RESOURCE_FIELDS = ("adapter_bytes", "peak_memory_bytes", "tokens_per_second")  # results.csv


def results_csv(study: Study) -> str:
    """One row per job: every setting and metric, for pandas or a spreadsheet."""
    records = []
    # adapter, peak memory, tokens/s: columns only when some job wrote them
    sizes = [k for k in RESOURCE_FIELDS if any(getattr(j, k) is not None for j in study.jobs)]
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
            **{k: getattr(job, k) for k in sizes},
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

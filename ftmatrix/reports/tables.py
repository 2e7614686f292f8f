"""Tables from a Study: comparison, effect of each setting, pivot, per class, confusion
matrix, per epoch.

A table is (headers, rows of strings), rendered as Markdown, LaTeX or CSV. Ordering
and number formats are fixed, so the same results always give the same bytes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ftmatrix.reports.collect import METRICS_KNOWN, JobRow, Study

SEED = "train.seed"
STAR = "★"


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align_right: set[int]  # column indexes holding numbers


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _key(study: Study) -> list[str]:
    """The axes that define a setting (seeds are repetitions of one setting)."""
    return [a for a in study.axes if a != SEED]


def _sort_key(metric: str):
    larger = METRICS_KNOWN[metric]

    def key(item: tuple[int, float | None]) -> tuple:
        index, value = item
        if value is None:
            return (1, 0.0, index)
        return (0, -value if larger else value, index)

    return key


def comparison(study: Study, metric: str) -> Table:
    """One row per job, or per setting with mean ± std over seeds; best row starred."""
    axes = _key(study)
    seeded = SEED in study.axes
    groups: dict[tuple, list[JobRow]] = {}
    for job in study.jobs:
        groups.setdefault(tuple(job.settings.get(a, "") for a in axes), []).append(job)
    metric_cols = ["test.accuracy", "test.f1_macro", "test.precision_macro", "test.recall_macro"]
    metric_heads = ["test acc", "macro F1", "precision", "recall"]
    ks = sorted({j.k for j in study.jobs if j.k is not None and "test.topk" in j.metrics})
    if ks:  # train.topk: shown, as it may be what the table is sorted by
        metric_cols.append("test.topk")
        metric_heads.append(f"top-{ks[0]} acc" if len(ks) == 1 else "top-k acc")
    headers = [
        "",
        *axes,
        *metric_heads,
        "tested epoch",
        "epochs",
        "trainable",
        "s/epoch",
        "time (s)",
        "state",
    ]
    if seeded:
        headers.insert(len(axes) + 1, "n")
    scored: list[tuple[int, float | None]] = []
    bodies: list[list[str]] = []
    for index, (setting, jobs) in enumerate(groups.items()):
        done = [j for j in jobs if j.state == "done"]
        values = [j.metrics[metric] for j in done if metric in j.metrics]
        scored.append((index, statistics.mean(values) if values else None))
        cells = []
        for col in metric_cols:
            cells.append(_mean_std([j.metrics[col] for j in done if col in j.metrics]))
        first = done[0] if done else jobs[0]
        trainable = ""
        if first.trainable is not None:
            trainable = params_cell(first.trainable, first.trainable_percent)
        epochs = [j.epochs_run for j in done if j.epochs_run is not None]
        per_epoch = [j.seconds_per_epoch for j in done if j.seconds_per_epoch is not None]
        tested = [j.tested_epoch for j in done if j.tested_epoch is not None]
        seconds = [j.seconds for j in done if j.seconds is not None]
        row = [
            *setting,
            *cells,
            _join(tested),
            _join(epochs),
            trainable,
            _num(statistics.mean(per_epoch), 1) if per_epoch else "",
            _num(statistics.mean(seconds), 1) if seconds else "",
            _state(jobs),
        ]
        if seeded:
            row.insert(len(axes), str(len(done)))
        bodies.append(row)
    order = sorted(scored, key=_sort_key(metric))
    rows = []
    for rank, (index, value) in enumerate(order):
        star = STAR if rank == 0 and value is not None else ""
        rows.append([star, *bodies[index]])
    numeric = set(range(len(axes) + 1, len(headers) - 1))
    return Table(headers, rows, numeric)


def params_cell(trainable: int, percent: float | None) -> str:
    """'443,906 (0.51%)': trainable parameters and their share of all."""
    return f"{trainable:,} ({percent or 0:.2f}%)"


def _join(values: list) -> str:
    unique = sorted(set(values))
    return ", ".join(str(v) for v in unique)


def _state(jobs: list[JobRow]) -> str:
    if len(jobs) == 1:
        job = jobs[0]
        return f"failed ({job.error})" if job.state == "failed" else job.state
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state] = counts.get(job.state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def effect(study: Study, axis: str, metric: str) -> Table:
    """The metric by each value of one axis: mean, best and n over finished jobs."""
    larger = METRICS_KNOWN[metric]
    values: dict[str, list[float]] = {}
    for job in study.jobs:
        v = job.settings.get(axis, "")
        values.setdefault(v, [])
        if job.state == "done" and metric in job.metrics:
            values[v].append(job.metrics[metric])
    rows = []
    for value, got in values.items():
        best = (max(got) if larger else min(got)) if got else None
        rows.append([value, _num(statistics.mean(got)) if got else "", _num(best), str(len(got))])
    return Table([axis, "mean", "best", "n"], rows, {1, 2, 3})


def pivot(study: Study, rows_axis: str, cols_axis: str, metric: str) -> Table:
    """Mean metric for every (row value, column value) pair."""
    cells: dict[tuple[str, str], list[float]] = {}
    row_values: list[str] = []
    col_values: list[str] = []
    for job in study.jobs:
        r, c = job.settings.get(rows_axis, "-"), job.settings.get(cols_axis, "-")
        if r not in row_values:
            row_values.append(r)
        if c not in col_values:
            col_values.append(c)
        if job.state == "done" and metric in job.metrics:
            cells.setdefault((r, c), []).append(job.metrics[metric])
    rows = [
        [r] + [_num(statistics.mean(cells[(r, c)])) if (r, c) in cells else "—" for c in col_values]
        for r in row_values
    ]
    return Table(
        [f"{rows_axis} \\ {cols_axis}", *col_values], rows, set(range(1, len(col_values) + 1))
    )


def tested_rules(study: Study) -> list[str]:
    """How the finished jobs chose their tested epoch, e.g. ['best val_loss (min): 4
    jobs', 'last: 2 jobs'] (jobs written before the rule was recorded: their best)."""
    counts: dict[str, int] = {}
    for job in study.jobs:
        if job.state == "done":
            rule = job.tested_by or "best (by early stopping's metric)"
            counts[rule] = counts.get(rule, 0) + 1
    return [f"{rule}: {n} job{'s' if n > 1 else ''}" for rule, n in sorted(counts.items())]


def per_class(job: JobRow) -> Table:
    """Accuracy of each class with its counts (276/368: right of all of that class)."""
    names = job.class_names or list(job.per_class)
    matrix = job.confusion if len(job.confusion) == len(names) else None
    rows = []
    for i, name in enumerate(names):
        counts = f"{matrix[i][i]}/{sum(matrix[i])}" if matrix else ""
        rows.append([name, counts, _num(job.per_class.get(name))])
    return Table(["class", "correct", "accuracy"], rows, {1, 2})


def confusion(job: JobRow) -> Table:
    """Counts of each true class (rows) predicted as each class (columns)."""
    names = job.class_names
    rows = [
        [name, *(str(n) for n in counts)] for name, counts in zip(names, job.confusion, strict=True)
    ]
    return Table(["true \\ predicted", *names], rows, set(range(1, len(names) + 1)))


EPOCH_COLUMNS = (  # metrics.jsonl key -> header; a column shows when any epoch has it
    ("train_loss", "train loss"),
    ("train_accuracy", "train acc"),
    ("val_loss", "val loss"),
    ("val_accuracy", "val acc"),
    ("val_f1", "val F1"),
    ("val_precision", "val precision"),
    ("val_recall", "val recall"),
    ("lr", "lr"),
    ("batch_size", "batch"),
    ("seconds", "s"),
)


def epochs(job: JobRow) -> Table:
    """One row per epoch of metrics.jsonl (job.curves); the tested epoch starred."""
    shown = [(k, h) for k, h in EPOCH_COLUMNS if any(c.get(k) is not None for c in job.curves)]
    rows = []
    for c in job.curves:
        mark = STAR if c["epoch"] == job.tested_epoch else ""
        cells = [_epoch_cell(key, c.get(key)) for key, _ in shown]
        rows.append([str(c["epoch"]), mark, *cells])
    headers = ["epoch", "tested", *(h for _, h in shown)]
    return Table(headers, rows, {0, *range(2, len(headers))})


def _epoch_cell(key: str, value) -> str:
    if value is None:
        return ""
    if key == "lr":
        return f"{value:.3g}"
    if key == "batch_size":
        return str(value)
    return _num(value, 1 if key == "seconds" else 4)


# -------------------------------------------------------------------- formats


def markdown(table: Table) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in table.headers) + " |"]
    lines.append(
        "|"
        + "|".join("---:" if i in table.align_right else "---" for i in range(len(table.headers)))
        + "|"
    )
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "★": r"$\star$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


def latex(table: Table, *, caption: str = "") -> str:
    spec = "".join("r" if i in table.align_right else "l" for i in range(len(table.headers)))
    lines = [r"\begin{table}[ht]", r"\centering", rf"\begin{{tabular}}{{{spec}}}", r"\hline"]
    lines.append(" & ".join(latex_escape(h) for h in table.headers) + r" \\")
    lines.append(r"\hline")
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\hline", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"

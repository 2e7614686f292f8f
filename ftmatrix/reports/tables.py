"""Tables from a Study: comparison, effect of each setting, pivot, per class, confusion
matrix, per epoch.

A table is (headers, rows of strings), rendered as Markdown, LaTeX or CSV. Ordering
and number formats are fixed, so the same results always give the same bytes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ftmatrix.reports import extras
from ftmatrix.reports.collect import JobRow, Study, larger_is_better

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
    larger = larger_is_better(metric)

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
    metric_cols, metric_heads = _metric_columns(study)
    resources = [(head, cell) for key, head, cell in RESOURCE_COLUMNS if _any(study, key)]
    headers = [
        "",
        *axes,
        *metric_heads,
        "tested epoch",
        "epochs",
        "trainable",
        *(head for head, _ in resources),
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
            *(cell(done) for _, cell in resources),
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


CLASSIFIER_COLUMNS = (
    ("test.accuracy", "test acc"),
    ("test.f1_macro", "macro F1"),
    ("test.precision_macro", "precision"),
    ("test.recall_macro", "recall"),
)
LM_COLUMNS = (("test.exact_match", "exact match"), ("test.perplexity", "perplexity"))


def _metric_columns(study: Study) -> tuple[list[str], list[str]]:
    """The test metrics the table shows: the classifier's four, and a causal-lm job's
    exact match and perplexity. A column no job has is left out once some job has a
    test metric (a causal-lm study has no F1), and test acc when it is every job's
    exact match (causal-lm jobs write both)."""
    have = {m for j in study.jobs for m in j.metrics}
    pairs = [(c, h) for c, h in CLASSIFIER_COLUMNS if c in have or not have]
    if have and all("test.exact_match" in j.metrics for j in study.jobs if j.metrics):
        pairs = [(c, h) for c, h in pairs if c != "test.accuracy"]
    pairs += [(c, h) for c, h in LM_COLUMNS if c in have]
    ks = sorted({j.k for j in study.jobs if j.k is not None and "test.topk" in j.metrics})
    if ks:  # train.topk: shown, as it may be what the table is sorted by
        pairs.append(("test.topk", f"top-{ks[0]} acc" if len(ks) == 1 else "top-k acc"))
    pairs += extras.columns(study.jobs)  # metrics a job reported as its own (extras.py)
    return [c for c, _ in pairs], [h for _, h in pairs]


def _any(study: Study, key: str) -> bool:
    return any(getattr(j, key) for j in study.jobs)  # 0 adapter bytes: no adapter


def bytes_cell(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, as file managers and nvidia-smi count)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _first_bytes(key: str):
    """The first finished job's size (the same for every seed of a setting); blank
    when it has none (0 adapter bytes: the full model was trained)."""

    def cell(done: list[JobRow]) -> str:
        values = [getattr(j, key) for j in done if getattr(j, key)]
        return bytes_cell(values[0]) if values else ""

    return cell


def _max_bytes(done: list[JobRow]) -> str:
    values = [j.peak_memory_bytes for j in done if j.peak_memory_bytes is not None]
    return bytes_cell(max(values)) if values else ""


def _tokens(done: list[JobRow]) -> str:
    values = [j.tokens_per_second for j in done if j.tokens_per_second is not None]
    return _num(statistics.mean(values), 0) if values else ""


# JobRow field -> header and cell of a setting's finished jobs; a column shows when
# some job of the study has the field (results written without them keep their table)
RESOURCE_COLUMNS = (
    ("adapter_bytes", "adapter", _first_bytes("adapter_bytes")),
    ("peak_memory_bytes", "peak memory", _max_bytes),
    ("tokens_per_second", "tokens/s", _tokens),
)


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
    larger = larger_is_better(metric)
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

"""Learning curves and metric-vs-setting plots (matplotlib, PNG, no display)."""

from __future__ import annotations

import math
from pathlib import Path

from ftmatrix.reports.collect import JobRow, Study, curves_of, larger_is_better

PER_FIGURE = 10  # jobs per learning-curve figure at most
MAX_FIGURES = 12  # learning-curve figures at most: the groups holding the best jobs
LOG_SPAN = 50.0  # a loss axis spanning more than this factor is drawn logarithmic
METADATA = {"Software": None}  # no version stamp: the same results give the same bytes


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display), imported when
    a plot is drawn: reports without plots never load matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Lay out, write (no version stamp) and close a figure; its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=METADATA)
    pyplot().close(fig)
    return path


def curves(study: Study, folder: Path, *, metric: str = "test.accuracy") -> list[Path]:
    """Train/validation loss and accuracy per epoch, one figure per group of jobs that
    differ only in the setting compared (the matrix's last varying axis): the groups
    holding the best jobs by `metric`, at most MAX_FIGURES. A loss axis turns
    logarithmic when its values span more than LOG_SPAN (one diverged job would
    flatten every other curve)."""
    plt = pyplot()
    jobs = [j for j in study.jobs if j.state == "done"]
    groups = _ranked(curve_groups(study, jobs), metric)[:MAX_FIGURES]
    for _, group in groups:  # read only the curves that are drawn
        for job in group:
            job.curves = job.curves or curves_of(study.root / job.id, study.problems)
    compared = _compared(study)
    values = sorted({j.settings.get(compared, "") for j in jobs}, key=_number_first)
    written = []
    for title, group in groups:
        drawn = [j for j in group if j.curves]
        if not drawn:
            continue
        fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
        labelled: set[str] = set()
        for i, job in enumerate(drawn):
            value = job.settings.get(compared) if compared else None
            color = f"C{values.index(value) % 10}" if value is not None else f"C{i % 10}"
            name = f"{compared}={value}" if value is not None else job.label or job.id
            label = None if name in labelled else name  # seeds share a colour and a label
            labelled.add(name)
            _plot_job(job, loss_ax, acc_ax, color=color, label=label)
        scale = _loss_scale(loss_ax, drawn)
        loss_ax.set(
            title=f"loss{scale} (solid: train, dashed: validation)", xlabel="epoch", ylabel="loss"
        )
        acc_ax.set(
            title="accuracy (solid: train, dashed: validation)", xlabel="epoch", ylabel="accuracy"
        )
        for ax in (loss_ax, acc_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        if title:
            fig.suptitle(title, fontsize=10)
        acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        written.append(save(fig, folder / f"curves-{len(written) + 1}.png"))
    return written


def _plot_job(job: JobRow, loss_ax, acc_ax, *, color: str, label: str | None) -> None:
    """Train (solid) and validation (dashed) lines; a value missing from an epoch (a
    NaN validation loss is stored as null) is a gap in its line."""
    epochs = [c["epoch"] for c in job.curves]
    for ax, key, style, name in (
        (loss_ax, "train_loss", "-", label),
        (acc_ax, "train_accuracy", "-", label),
        (loss_ax, "val_loss", "--", None),
        (acc_ax, "val_accuracy", "--", None),
    ):
        values = [c.get(key) for c in job.curves]
        if any(v is not None for v in values):
            ys = [math.nan if v is None else v for v in values]
            ax.plot(epochs, ys, color=color, ls=style, label=name)


def _loss_scale(ax, jobs: list[JobRow]) -> str:
    """Logarithmic when the losses span more than LOG_SPAN; ' (log scale)' or ''."""
    values = [
        v
        for job in jobs
        for c in job.curves
        for v in (c.get("train_loss"), c.get("val_loss"))
        if v is not None and math.isfinite(v) and v > 0
    ]
    if values and max(values) / min(values) > LOG_SPAN:
        ax.set_yscale("log")
        return " (log scale)"
    return ""


def _compared(study: Study) -> str | None:
    axes = [a for a in study.axes if a != "train.seed"]
    return axes[-1] if axes else None


def curve_groups(study: Study, jobs: list[JobRow]) -> list[tuple[str, list[JobRow]]]:
    """(title, jobs) per combination of the settings other than the compared one; when
    that leaves every job alone (a search), plain batches of PER_FIGURE."""
    axes = [a for a in study.axes if a != "train.seed"]
    fixed = axes[:-1]
    groups: dict[tuple, list[JobRow]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.settings.get(a, "") for a in fixed), []).append(job)
    if axes and any(len(g) > 1 for g in groups.values()):
        return [
            (", ".join(f"{a}={v}" for a, v in zip(fixed, key, strict=True)), group[:PER_FIGURE])
            for key, group in groups.items()
        ]
    return [("", jobs[i : i + PER_FIGURE]) for i in range(0, len(jobs), PER_FIGURE)]


def _ranked(groups: list[tuple[str, list[JobRow]]], metric: str) -> list:
    """Groups holding the best job first (a stable order: ties keep the plan's)."""
    sign = -1.0 if larger_is_better(metric) else 1.0

    def best(group: tuple[str, list[JobRow]]) -> float:
        scores = [sign * j.metrics[metric] for j in group[1] if metric in j.metrics]
        return min(scores) if scores else math.inf

    return sorted(groups, key=best)


def _number_first(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def confusion(job: JobRow, folder: Path) -> Path:
    """A heatmap of the job's confusion matrix, each row as shares of its true class,
    with the counts written in when the classes are few enough to read them."""
    plt = pyplot()
    names, counts = job.class_names, job.confusion
    n = len(names)
    shares = [[c / max(sum(row), 1) for c in row] for row in counts]
    side = min(max(4.0, 0.45 * n + 2), 16.0)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if n <= 20:
        ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        for i, row in enumerate(counts):
            for j, c in enumerate(row):
                color = "white" if shares[i][j] > 0.5 else "black"
                ax.text(j, i, str(c), ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix: {job.label or job.id}")
    return save(fig, folder / f"confusion-{job.id}.png")


def metric_vs_axes(study: Study, metric: str, folder: Path) -> list[Path]:
    """The metric against every numeric axis (mean over the other settings)."""
    plt = pyplot()
    written = []
    for axis in [a for a in study.axes if a != "train.seed"]:  # seeds are repetitions
        points: dict[float, list[float]] = {}
        for job in study.jobs:
            try:
                x = float(job.settings.get(axis, ""))
            except ValueError:
                break
            if job.state == "done" and metric in job.metrics:
                points.setdefault(x, []).append(job.metrics[metric])
        else:
            if len(points) < 2:
                continue
            xs = sorted(points)
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for x in xs:
                ax.scatter([x] * len(points[x]), points[x], color="C0", alpha=0.4, s=12)
            ax.plot(
                xs, [sum(points[x]) / len(points[x]) for x in xs], "o-", color="C1", label="mean"
            )
            if xs[0] > 0 and (xs[-1] / xs[0] >= 100 or _rate(axis)):
                ax.set_xscale("log")  # learning rates are compared by their exponent
            ax.set(xlabel=axis, ylabel=metric, title=f"{metric} by {axis}")
            ax.grid(alpha=0.3)
            ax.legend()
            name = f"{metric.replace('.', '_')}-by-{axis.replace('.', '_')}.png"
            written.append(save(fig, folder / name))
    return written


def _rate(axis: str) -> bool:
    """Whether a setting is a learning rate (train.lr, optimizer lr...)."""
    last = axis.rsplit(".", 1)[-1]
    return last in ("lr", "learning_rate") or last.endswith("_lr")

"""Learning curves and metric-vs-setting plots (matplotlib, PNG, no display)."""

from __future__ import annotations

import math
from pathlib import Path

from ftmatrix.reports.collect import Study, curves_of

PER_FIGURE = 8  # curves per figure; more jobs are spread over several figures
MAX_CURVES = 32  # with more jobs than this, the curves of the best ones
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
    """Train/validation loss and accuracy per epoch, PER_FIGURE jobs per figure (the
    MAX_CURVES best by `metric` when there are more)."""
    plt = pyplot()
    jobs = [j for j in study.jobs if j.state == "done"]
    if len(jobs) > MAX_CURVES:
        larger = metric != "test.loss"
        ranked = sorted(jobs, key=lambda j: j.metrics.get(metric, float("nan")), reverse=larger)
        keep = {j.id for j in ranked[:MAX_CURVES]}
        jobs = [j for j in jobs if j.id in keep]
    for job in jobs:  # read only the curves that are drawn
        job.curves = job.curves or curves_of(study.root / job.id, study.problems)
    jobs = [j for j in jobs if j.curves]
    written = []
    for part in range(math.ceil(len(jobs) / PER_FIGURE)):
        chunk = jobs[part * PER_FIGURE : (part + 1) * PER_FIGURE]
        fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
        for i, job in enumerate(chunk):
            color = f"C{i}"
            epochs = [c["epoch"] for c in job.curves]
            name = job.label or job.id
            loss_ax.plot(epochs, [c["train_loss"] for c in job.curves], color=color, label=name)
            acc_ax.plot(epochs, [c["train_accuracy"] for c in job.curves], color=color, label=name)
            if all(c["val_loss"] is not None and c["val_accuracy"] is not None for c in job.curves):
                loss_ax.plot(epochs, [c["val_loss"] for c in job.curves], color=color, ls="--")
                acc_ax.plot(epochs, [c["val_accuracy"] for c in job.curves], color=color, ls="--")
        loss_ax.set(title="loss (solid: train, dashed: validation)", xlabel="epoch", ylabel="loss")
        acc_ax.set(
            title="accuracy (solid: train, dashed: validation)", xlabel="epoch", ylabel="accuracy"
        )
        for ax in (loss_ax, acc_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
        acc_ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        written.append(save(fig, folder / f"curves-{part + 1}.png"))
    return written


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
            if xs[0] > 0 and xs[-1] / xs[0] >= 100:
                ax.set_xscale("log")
            ax.set(xlabel=axis, ylabel=metric, title=f"{metric} by {axis}")
            ax.grid(alpha=0.3)
            ax.legend()
            name = f"{metric.replace('.', '_')}-by-{axis.replace('.', '_')}.png"
            written.append(save(fig, folder / name))
    return written

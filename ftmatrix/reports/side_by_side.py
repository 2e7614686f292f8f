"""Several run folders in one report: `ftmatrix report A B --together`.

Two searches over the same space (TPE against evolution), or a study run twice: one
table of the runs (jobs, the best job and its metric, the search's strategy and
trials), the best jobs of all of them in one comparison, and for searches the best
metric so far over trials, each run a line on one plot. Reads what each run folder's
own report reads: plan.json, result.json, search.json.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ftmatrix.reports import tables
from ftmatrix.reports.collect import JobRow, Study, larger_is_better, load, metric_name
from ftmatrix.reports.plots import pyplot, save
from ftmatrix.result import PLOTS, DamagedFile, read_search, write_atomic

TOP = 20  # rows of the joint comparison


def write(roots: list[Path], *, out: Path, metric: str | None = None, plots: bool = True) -> Path:
    """Write the joint report of `roots` to `out` (its plots beside it); its path."""
    runs = [(load(root, curves=False), _search(root)) for root in roots]
    metric = metric_name(metric, [j for study, _ in runs for j in study.jobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {' vs '.join(s.name for s, _ in runs)}", ""]
    lines += [f"## Runs (by {metric})", "", tables.markdown(overview(runs, metric))]
    lines += [f"## Best jobs of all runs (by {metric}, {tables.STAR} best)", ""]
    lines.append(tables.markdown(joint(runs, metric)))
    searched = [(s, found) for s, found in runs if found]
    if plots and searched:
        folder = out.parent / PLOTS
        folder.mkdir(exist_ok=True)
        image = best_so_far(searched, folder / f"{out.stem}-best-so-far.png")
        lines += ["## Best so far, trial by trial", "", f"![best so far]({PLOTS}/{image.name})", ""]
    write_atomic(out, "\n".join(lines))
    return out


def _search(root: Path) -> dict | None:
    try:
        return read_search(root)
    except DamagedFile:
        return None  # the run's own report names it


def _best(study: Study, metric: str) -> JobRow | None:
    done = [j for j in study.jobs if j.state == "done" and metric in j.metrics]
    if not done:
        return None
    larger = larger_is_better(metric)
    return max(done, key=lambda j: j.metrics[metric] if larger else -j.metrics[metric])


def overview(runs: list[tuple[Study, dict | None]], metric: str) -> tables.Table:
    """One row per run: its jobs, its best job and metric, the mean, and the search."""
    rows = []
    for study, searched in runs:
        values = [
            j.metrics[metric] for j in study.jobs if j.state == "done" and metric in j.metrics
        ]
        best = _best(study, metric)
        strategy = f"{searched['strategy']} ({searched['trials']} trials)" if searched else ""
        rows.append(
            [
                study.name,
                strategy,
                str(sum(j.state == "done" for j in study.jobs)),
                str(len(study.jobs)),
                f"{best.metrics[metric]:.4f}" if best else "",
                f"{statistics.mean(values):.4f}" if values else "",
                (best.label or best.id) if best else "",
            ]
        )
    headers = ["run", "search", "done", "jobs", f"best {metric}", "mean", "best job"]
    return tables.Table(headers, rows, {2, 3, 4, 5})


def joint(runs: list[tuple[Study, dict | None]], metric: str) -> tables.Table:
    """The TOP finished jobs of every run, best first, with the run they belong to."""
    larger = larger_is_better(metric)
    jobs = [
        (study.name, j)
        for study, _ in runs
        for j in study.jobs
        if j.state == "done" and metric in j.metrics
    ]
    jobs.sort(key=lambda item: -item[1].metrics[metric] if larger else item[1].metrics[metric])
    rows = []
    for rank, (name, job) in enumerate(jobs[:TOP]):
        accuracy, f1 = job.metrics.get("test.accuracy"), job.metrics.get("test.f1_macro")
        rows.append(
            [
                tables.STAR if rank == 0 else "",
                name,
                job.label or job.id,
                f"{job.metrics[metric]:.4f}",
                "" if accuracy is None else f"{accuracy:.4f}",
                "" if f1 is None else f"{f1:.4f}",
                "" if job.tested_epoch is None else str(job.tested_epoch),
                "" if job.seconds is None else f"{job.seconds:.1f}",
            ]
        )
    headers = ["", "run", "job", metric, "test acc", "macro F1", "tested epoch", "time (s)"]
    return tables.Table(headers, rows, {3, 4, 5, 6, 7})


def best_so_far(searched: list[tuple[Study, dict]], path: Path) -> Path:
    """Each run's best metric so far against the trial number (its first grid point)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (study, summary) in enumerate(searched):
        larger = summary["direction"] == "maximize"
        trials = sorted(
            (t for t in summary["points"][0]["trials"] if t["state"] == "complete")
            if summary["points"]
            else [],
            key=lambda t: t["number"],
        )
        xs, ys, best = [], [], None
        for t in trials:
            if t["value"] is None:
                continue
            better = best is None or (t["value"] > best if larger else t["value"] < best)
            best = t["value"] if better else best
            xs.append(t["number"])
            ys.append(best)
        ax.step(xs, ys, where="post", color=f"C{i}", label=f"{study.name} ({summary['strategy']})")
    ax.set(xlabel="trial", ylabel=searched[0][1]["metric"], title="best so far")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)

"""The search section of a report: the best trials, the metric over trials, and which
settings mattered.

Reads search.json (through `result.read_search`), the summary the runner keeps of its
optuna studies; only parameter importance asks optuna itself (fANOVA with a fixed seed,
so the same trials give the same numbers) about the study in search.db. No torch.
"""

from __future__ import annotations

from pathlib import Path

from ftmatrix.reports.plots import pyplot, save
from ftmatrix.reports.tables import STAR, Table, markdown
from ftmatrix.result import SEARCH_DB

TOP = 10  # rows of the best-trials table


def continuous(summary: dict) -> set[str]:
    """Searched settings drawn from ranges: nearly every trial has its own value, so a
    table by value says nothing (the trials table and importance do)."""
    return {path for path, kind in summary["space"].items() if kind not in ("choice", "int")}


def _with_value(point: dict, state: str) -> list[dict]:
    return [t for t in point["trials"] if t["state"] == state and t["value"] is not None]


def best_trials(summary: dict, point: dict) -> Table:
    """The TOP complete trials, best first: their settings, the metric and epochs."""
    larger = summary["direction"] == "maximize"
    complete = _with_value(point, "complete")
    complete.sort(key=lambda t: (-t["value"] if larger else t["value"], t["number"]))
    paths = list(summary["space"])
    short = [p.rsplit(".", 1)[-1] for p in paths]
    headers = ["", "trial", *short, summary["metric"], "epochs", "job"]
    rows = [
        [
            STAR if rank == 0 else "",
            str(t["number"]),
            *(t["settings"].get(p, "") for p in paths),
            f"{t['value']:.4f}",
            str(t["epochs"]),
            t["job"] or "",
        ]
        for rank, t in enumerate(complete[:TOP])
    ]
    return Table(headers, rows, {1, len(paths) + 2, len(paths) + 3})


def importance(root: Path, point: dict) -> tuple[list[tuple[str, float]], str]:
    """(setting, importance) pairs by optuna's fANOVA, largest first; or a note on why
    there are none."""
    values = [t["value"] for t in point["trials"] if t["state"] == "complete"]
    if len(values) < 2 or len(set(values)) < 2:
        return [], "needs at least two complete trials with different values"
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{(root / SEARCH_DB).resolve()}")
        study = optuna.load_study(study_name=point["study"], storage=storage)
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
        )
    except Exception as err:  # a report is still written, with the reason
        return [], f"optuna could not compute it ({type(err).__name__}: {err})"
    if not found:
        return [], "no setting took more than one value in the complete trials"
    return sorted(found.items(), key=lambda kv: (-kv[1], kv[0])), ""


def plot(summary: dict, folder: Path) -> list[Path]:
    """The metric of every trial in the order they ran, with the best so far; pruned
    trials at the validation value they were stopped with. One figure per grid point."""
    plt = pyplot()
    larger = summary["direction"] == "maximize"
    written = []
    for index, point in enumerate(summary["points"]):
        complete = _with_value(point, "complete")
        if not complete:
            continue
        pruned = _with_value(point, "pruned")
        fig, ax = plt.subplots(figsize=(6, 3.8))
        ax.scatter(
            [t["number"] for t in complete], [t["value"] for t in complete], s=18, label="trial"
        )
        if pruned:
            ax.scatter(
                [t["number"] for t in pruned],
                [t["value"] for t in pruned],
                color="0.6",
                marker="x",
                s=18,
                label="pruned (validation value when stopped)",
            )
        best, xs, ys = None, [], []
        for t in sorted(complete, key=lambda t: t["number"]):
            if best is None or (t["value"] > best if larger else t["value"] < best):
                best = t["value"]
            xs.append(t["number"])
            ys.append(best)
        last = max(t["number"] for t in point["trials"])
        if last > xs[-1]:  # the line runs on under later pruned or failed trials
            xs.append(last)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C1", label="best so far")
        title = summary["metric"] + (f" — {point['label']}" if point["label"] else "")
        ax.set(xlabel="trial", ylabel=summary["metric"], title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save(fig, folder / f"search-trials-{index + 1}.png"))
    return written


def section(root: Path, summary: dict, images: list[Path]) -> list[str]:
    """Markdown lines: what was searched, then per grid point its trials, the best
    trials table, parameter importance and the plot (`images`, relative paths)."""
    space = ", ".join(f"{p} ({k})" for p, k in summary["space"].items())
    prune = f", pruning: {summary['prune']}" if summary.get("prune") else ""
    lines = [
        "## Search",
        "",
        f"{summary['strategy']} over {space}; {summary['metric']} "
        f"({summary['direction']}), seed {summary['seed']}{prune}.",
        "",
    ]
    plots = {p.stem: p for p in images}
    for index, point in enumerate(summary["points"]):
        if len(summary["points"]) > 1 or point["label"]:
            lines += [f"### {point['label'] or point['id']}", ""]
        counts: dict[str, int] = {}
        for t in point["trials"]:
            if not t["retried"]:
                counts[t["state"]] = counts.get(t["state"], 0) + 1
        done = sum(counts.get(s, 0) for s in ("complete", "pruned", "fail"))
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines += [f"{done}/{point['budget']} trials ({states or 'none yet'}).", ""]
        table = best_trials(summary, point)
        if table.rows:
            lines += [f"Best trials by {summary['metric']} ({STAR} best):", "", markdown(table)]
        found, note = importance(root, point)
        if found:
            rows = [[path, f"{value:.3f}"] for path, value in found]
            lines += [
                "Parameter importance (optuna, fANOVA):",
                "",
                markdown(Table(["setting", "importance"], rows, {1})),
            ]
        else:
            lines += [f"Parameter importance: {note}.", ""]
        image = plots.get(f"search-trials-{index + 1}")
        if image is not None:
            lines += [f"![{image.stem}]({image.as_posix()})", ""]
    return lines

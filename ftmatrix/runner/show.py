"""Rich rendering of a plan for `ftmatrix plan`. No torch."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ftmatrix.matrix.plan import Plan
from ftmatrix.result import RESULT

# More rows than this are elided in the middle: a 10,000-job table helps nobody.
MAX_ROWS = 200


def run_root(plan: Plan, runs_dir: Path | None = None) -> Path:
    """runs/<name>: --runs-dir, else the matrix's runs_dir (relative to the file), else ./runs."""
    if runs_dir is not None:
        return Path(runs_dir) / plan.name
    if plan.runs_dir:
        return (plan.path.parent / plan.runs_dir) / plan.name
    return Path("runs") / plan.name


def plan_table(plan: Plan, *, console: Console, runs_dir: Path | None = None) -> None:
    root = run_root(plan, runs_dir)
    done = {j.id for j in plan.jobs if (root / j.id / RESULT).exists()}
    table = Table(title=f"{plan.name}: {len(plan.jobs)} jobs", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("id", style="cyan", no_wrap=True)
    for name in plan.axis_names:
        table.add_column(name)
    table.add_column("state")
    shown = plan.jobs
    if len(shown) > MAX_ROWS:
        shown = [*plan.jobs[: MAX_ROWS // 2], None, *plan.jobs[-MAX_ROWS // 2 :]]
    for i, job in enumerate(shown):
        if job is None:
            table.add_row("…", f"{len(plan.jobs) - MAX_ROWS} more", *[""] * (len(plan.axes) + 1))
            continue
        n = i + 1 if i < MAX_ROWS // 2 else len(plan.jobs) - (len(shown) - 1 - i)
        state = "[green]done[/]" if job.id in done else "pending"
        table.add_row(str(n), job.id, *[job.settings[a] for a in plan.axes], state)
    console.print(table)
    merged = plan.points - len(plan.jobs)
    summary = f"{len(plan.jobs)} jobs ({len(done)} done, {len(plan.jobs) - len(done)} pending)"
    if merged > 0:
        summary += f"; {merged} matrix points were identical to another and merged"
    if plan.search and plan.spec is not None and plan.spec.search is not None:
        search = plan.spec.search
        over = ", ".join(d.path for d in plan.search)
        summary = (
            f"{len(plan.jobs)} grid point(s) x {search.trials} {search.strategy} trials over "
            f"{over}, {search.direction} {search.metric}: trials are drawn when the matrix "
            "runs; `ftmatrix status` lists them"
        )
    console.print(summary, soft_wrap=True)

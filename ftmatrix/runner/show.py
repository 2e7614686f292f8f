"""Rich rendering of a plan for `ftmatrix plan` and `ftmatrix run --dry-run`: every job
with the settings that vary and its state on disk (done, failed, ...). No torch."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ftmatrix.matrix.plan import Plan
from ftmatrix.runner import store

# More rows than this are elided in the middle: a 10,000-job table helps nobody.
MAX_ROWS = 200
STYLES = {"done": "green", "failed": "red", "running": "cyan", "pruned": "yellow"}


def plan_table(plan: Plan, *, console: Console, runs_dir: Path | None = None) -> None:
    root = store.root_of(plan, runs_dir)
    seen = {j.id: store.inspect(root / j.id) for j in plan.jobs}
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
        table.add_row(str(n), job.id, *[job.settings[a] for a in plan.axes], _state(seen[job.id]))
    console.print(table)
    for job in plan.jobs:
        if seen[job.id].damaged:
            console.print(
                f"{seen[job.id].damaged}; the job counts as unfinished",
                markup=False,
                soft_wrap=True,
            )
    console.print(_summary(plan, [s.state for s in seen.values()]), soft_wrap=True)


def _state(seen: store.Seen) -> str:
    text = seen.state + (" (damaged result)" if seen.damaged else "")
    style = STYLES.get(seen.state)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def _summary(plan: Plan, states: list[str]) -> str:
    """`6 jobs (2 done, 1 failed, 3 pending)`: done and pending always, the rest when
    there are any."""
    order = ("done", "failed", "pruned", "running", "interrupted", "pending")
    counts = {s: states.count(s) for s in order}
    parts = [f"{n} {s}" for s, n in counts.items() if n or s in ("done", "pending")]
    summary = f"{len(plan.jobs)} jobs ({', '.join(parts)})"
    merged = plan.points - len(plan.jobs)
    if merged > 0:
        summary += f"; {merged} matrix points were identical to another and merged"
    if plan.search and plan.spec is not None and plan.spec.search is not None:
        search = plan.spec.search
        over = ", ".join(d.describe() for d in plan.search)
        summary = (
            f"{len(plan.jobs)} grid point(s) x {search.trials} {search.strategy} trials over "
            f"{over}, {search.direction} {search.metric}: trials are drawn when the matrix "
            "runs; `ftmatrix status` lists them"
        )
    return summary

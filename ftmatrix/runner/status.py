"""`ftmatrix status`: the state of every job of a run folder, from files only.

A damaged file never stops it: a result.json that cannot be read leaves its job
unfinished (interrupted) with the problem as its error, a damaged plan.json leaves the
job folders themselves to list; each problem is named in `problems`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ftmatrix.result import CONFIG, DamagedFile, read_plan
from ftmatrix.runner import slurm, store

ORDER = ("done", "failed", "pruned", "running", "queued", "interrupted", "pending", "stale")


@dataclass
class Row:
    id: str
    label: str
    state: str  # one of store.STATES, or "stale" (on disk, no longer in the matrix)
    accuracy: float | None = None
    f1: float | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass
class Status:
    """What `collect` found: the plan's name and every job, planned jobs first."""

    name: str
    rows: list[Row]
    problems: list[str] = field(default_factory=list)  # damaged files, named

    def counts(self) -> dict[str, int]:
        """Jobs per state, in the order done, failed, ..., pending, stale, others."""
        out: dict[str, int] = {}
        for row in self.rows:
            state = row.state.split(" ")[0]
            out[state] = out.get(state, 0) + 1
        order = [*ORDER, *sorted(set(out) - set(ORDER))]
        return {s: out[s] for s in order if s in out}


def collect(root: Path) -> Status:
    """Every job of the run folder: the plan's, then folders no longer in the plan
    (stale). Without a readable plan.json, every job folder, none of them stale."""
    problems = []
    try:
        plan = read_plan(root)
    except DamagedFile as err:
        plan = None
        problems.append(f"{err}; listing the job folders instead")
    rows = []
    planned = set()
    for entry in plan.jobs if plan is not None else []:
        planned.add(entry.id)
        rows.append(_row(root / entry.id, entry.label, problems))
    if root.exists():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in planned):
            if (folder / CONFIG).exists():
                row = _row(folder, "", problems)
                if plan is not None:
                    row.state = f"stale ({row.state})"
                rows.append(row)
    _queue_states(root, rows)
    return Status(plan.name if plan is not None else root.name, rows, problems)


def _queue_states(root: Path, rows: list[Row]) -> None:
    """Unfinished jobs submitted to Slurm: their queue state (queued, running, or how
    Slurm ended them), asked of sacct once for all — only when there are any."""
    records = {
        row.id: record
        for row in rows
        if row.state in ("pending", "interrupted", "running")
        and (record := slurm.read_record(root / row.id))
    }
    if not records or shutil.which("sacct") is None:
        return
    states = slurm.queue_states([r["job_id"] for r in records.values()])
    names = {
        "PENDING": "queued",
        "REQUEUED": "queued",
        "SUSPENDED": "queued",
        "CONFIGURING": "running",
        "RUNNING": "running",
        "COMPLETING": "running",
    }
    for row in rows:
        if row.id in records:
            state = states.get(records[row.id]["job_id"], "")
            row.state = names.get(state, row.state)
            row.error = None if state in names else (f"slurm: {state.lower()}" if state else None)


def _row(job_dir: Path, label: str, problems: list[str]) -> Row:
    seen = store.inspect(job_dir)
    result = seen.result
    if result is None:
        if seen.damaged:
            problems.append(f"{seen.damaged}; the job counts as unfinished")
        return Row(
            job_dir.name, label, seen.state, error="damaged result" if seen.damaged else None
        )
    test = result.test
    return Row(
        job_dir.name,
        label,
        result.status,
        test.accuracy if test else None,
        test.f1_macro if test else None,
        result.timing.get("total"),
        result.error_class,
    )

"""`ftmatrix status`: the state of every job of a run folder, from files only."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ftmatrix.result import PLAN
from ftmatrix.runner import store


@dataclass
class Row:
    id: str
    label: str
    state: str  # one of store.STATES, or "stale" (on disk, no longer in the matrix)
    accuracy: float | None = None
    f1: float | None = None
    seconds: float | None = None
    error: str | None = None


def collect(root: Path) -> tuple[dict, list[Row]]:
    """(plan.json as data, one row per job: planned jobs first, then stale folders)."""
    try:
        plan = json.loads((root / PLAN).read_text(encoding="utf-8"))
    except FileNotFoundError:
        plan = {"name": root.name, "jobs": []}
    rows = []
    planned = set()
    for entry in plan["jobs"]:
        planned.add(entry["id"])
        rows.append(_row(root / entry["id"], entry.get("label", "")))
    if root.exists():
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in planned):
            if (folder / "config.json").exists():
                row = _row(folder, "")
                row.state = f"stale ({row.state})"
                rows.append(row)
    _queue_states(root, rows)
    return plan, rows


def _queue_states(root: Path, rows: list[Row]) -> None:
    """Unfinished jobs submitted to Slurm: their queue state (queued, running, or how
    Slurm ended them), asked of sacct once for all — only when there are any."""
    from ftmatrix.runner import slurm

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


def _row(job_dir: Path, label: str) -> Row:
    result = store.read_status(job_dir)
    if result is None:
        return Row(job_dir.name, label, store.state(job_dir))
    test = result.get("test") or {}
    return Row(
        job_dir.name,
        label,
        result.get("status", "failed"),
        test.get("accuracy"),
        test.get("f1_macro"),
        (result.get("timing") or {}).get("total"),
        result.get("error_class"),
    )

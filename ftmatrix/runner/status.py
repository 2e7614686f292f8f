"""`ftmatrix status`: the state of every job of a run folder, from files only."""

from __future__ import annotations

import json
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
    return plan, rows


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

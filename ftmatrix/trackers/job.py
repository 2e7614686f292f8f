"""What a tracker sends: one finished job, read from its folder like a report reads it.

A tracker never runs inside the training process. It reads what a job wrote down
(result.json, metrics.jsonl, config.json) and the plan's label and settings, so a
tracker that fails can never fail a job, and exporting later sends the same thing.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftmatrix.reports.collect import flatten
from ftmatrix.result import (
    PLAN,
    RESULT,
    WEIGHTS,
    DamagedFile,
    EpochMetrics,
    PlanEntry,
    PlanFile,
    Result,
    read_config,
    read_metrics,
    read_plan,
    read_result,
)

# EpochMetrics field -> the scalar's name in every tracker (TensorBoard groups by the
# part before the slash; MLflow and W&B keep the same names so the three agree).
EPOCH_SCALARS = {
    "train_loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "val_f1": "val/f1",
    "lr": "lr",
    "seconds": "epoch/seconds",
    "samples_per_second": "epoch/samples_per_second",
}
# TestMetrics fields sent as test/<name>, once per job.
TEST_SCALARS = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "top1",
    "topk",
    "loss",
)
# How each tracker names the job id it keeps beside a run (an MLflow tag, a W&B run id).
JOB_ID_TAG = "ftmatrix.job_id"


@dataclass(frozen=True)
class FinishedJob:
    """A job folder with a result.json, as every tracker sees it."""

    id: str
    label: str  # the plan's label ('lr=1e-4 lora=r8'); empty for a single-job matrix
    settings: dict[str, str]  # the varying settings, dotted key -> display value
    folder: Path
    result: Result
    epochs: list[EpochMetrics]
    config: dict[str, Any]  # the JobConfig flattened: 'train.lr' -> 0.0001

    @property
    def name(self) -> str:
        """The run's name in a tracker: the label, or the id when nothing varies."""
        return self.label or self.id

    def started(self) -> float:
        """Unix seconds when the job started (result.json; else the folder's mtime)."""
        return _seconds(self.result.started_at) or self.folder.stat().st_mtime

    def finished(self) -> float:
        """Unix seconds when the job finished (result.json; else result.json's mtime)."""
        return _seconds(self.result.finished_at) or (self.folder / RESULT).stat().st_mtime

    def epoch_times(self) -> list[float]:
        """Unix seconds at the end of each epoch: the start plus the epochs' wall times.

        Derived from the files, not the clock, so exporting twice sends the same times."""
        times, now = [], self.started()
        for epoch in self.epochs:
            now += epoch.seconds
            times.append(now)
        return times

    def test_metrics(self) -> dict[str, float]:
        """test/<name> -> value for the test metrics the job has."""
        test = self.result.test
        if test is None:
            return {}
        found = {name: getattr(test, name) for name in TEST_SCALARS}
        return {f"test/{k}": float(v) for k, v in found.items() if v is not None}

    def weights(self) -> Path | None:
        """The folder of the job's exported weights, if it wrote one."""
        folder = self.folder / WEIGHTS
        return folder.resolve() if folder.is_dir() else None


def epoch_scalars(epoch: EpochMetrics) -> dict[str, float]:
    """One epoch's scalars under the trackers' names (missing values left out)."""
    values = {name: getattr(epoch, field) for field, name in EPOCH_SCALARS.items()}
    return {k: float(v) for k, v in values.items() if v is not None}


def _seconds(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def plan(run_root: Path) -> PlanFile:
    """The run folder's plan.json (the matrix name, and each job's label and settings).
    FileNotFoundError when the matrix never ran there; DamagedFile when unreadable."""
    found = read_plan(run_root)
    if found is None:
        raise FileNotFoundError(f"{run_root / PLAN} not found: no run of a matrix there")
    return found


def read(job_dir: Path, *, entry: PlanEntry | None = None) -> FinishedJob | None:
    """The finished job in `job_dir`, or None when it has no result.json.
    DamagedFile when result.json, metrics.jsonl or config.json cannot be read."""
    result = read_result(job_dir)
    if result is None:
        return None
    return FinishedJob(
        id=job_dir.name,
        label=entry.label if entry else "",
        settings=dict(entry.settings) if entry else {},
        folder=job_dir,
        result=result,
        epochs=read_metrics(job_dir),
        config=flatten(read_config(job_dir) or {}),
    )


def finished(run_root: Path) -> tuple[list[FinishedJob], dict[str, str]]:
    """Every job of the plan that has finished, in plan order; and {job id: problem}
    for those whose files are damaged (they are left out)."""
    found, damaged = [], {}
    for entry in plan(run_root).jobs:
        try:
            job = read(run_root / entry.id, entry=entry)
        except DamagedFile as err:
            damaged[entry.id] = str(err)
            continue
        if job is not None:
            found.append(job)
    return found, damaged


def folder_name(job: FinishedJob) -> str:
    """A folder (or run) name for a job: its label made safe for a path, and its id, so
    that two jobs with one label (an edited matrix) never share a folder."""
    safe = re.sub(r"[^\w.=,+\- ]", "_", job.label).strip()[:120]
    return f"{safe} ({job.id})" if safe else job.id

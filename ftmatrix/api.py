"""Results from Python: `ftmatrix.load(target)` reads a run folder into jobs with their
settings, states and metrics, for a notebook to plot what the Markdown report does not.

    import ftmatrix
    runs = ftmatrix.load("matrices/quickstart.yaml")   # or "runs/quickstart", or "quickstart"
    df = runs.to_pandas()                               # one row per job
    curves = runs.epochs_to_pandas()                    # one row per job and epoch

Everything is read through `ftmatrix.result`'s readers, files only (no torch, no
runner). A damaged file never raises: it is named in `problems`, and its job shows as
"damaged" (result.json) or without settings or epochs, like in `ftmatrix report`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftmatrix.result import (
    CONFIG,
    PLAN,
    DamagedFile,
    PlanEntry,
    Result,
    read_config,
    read_metrics,
    read_plan,
    read_result,
)

# result.json's test fields that are not one number per job (kept apart from `test`)
_NOT_SCALAR = ("per_class_accuracy", "confusion_matrix", "class_names", "k", "n")


@dataclass
class Job:
    """One job of a run folder. `test` holds every numeric test metric the job reported
    (the built-in ones and a script's own names); `epochs()` reads metrics.jsonl."""

    id: str
    label: str
    settings: dict[str, Any]  # varying setting -> value, as the plan shows it
    state: str  # done | failed | pruned | pending | damaged (result.json unreadable)
    folder: Path
    test: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the failure class (oom, crash, ...) or the damaged file
    error_message: str | None = None
    epochs_run: int | None = None
    tested_epoch: int | None = None
    trainable: int | None = None
    seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # config.json as plain data
    result: Result | None = field(default=None, repr=False)
    problems: list[str] = field(default_factory=list, repr=False)

    def epochs(self) -> list[dict[str, Any]]:
        """metrics.jsonl, one dict per epoch (fields not written are left out); [] when
        there is none, or when it is damaged (then named in `problems`)."""
        try:
            return [m.model_dump(exclude_none=True) for m in read_metrics(self.folder)]
        except DamagedFile as err:
            if str(err) not in self.problems:
                self.problems.append(str(err))
            return []


@dataclass
class Runs:
    """A run folder's jobs, in plan order (without a plan.json: every job folder)."""

    name: str
    root: Path
    axes: list[str]
    jobs: list[Job]
    problems: list[str] = field(default_factory=list)  # "damaged: <file>: <problem>"

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, job_id: str) -> Job:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(f"no job '{job_id}' in {self.root}")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per job: id, label, state, the settings, then `test.<metric>`."""
        return [_row(job) for job in self.jobs]

    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per job (see `rows`)."""
        pandas = _pandas()
        settings = list(self.axes) or sorted({k for j in self.jobs for k in j.settings})
        frame = pandas.DataFrame(self.rows(), columns=None if self.jobs else ["id", "label"])
        first = [c for c in ("id", "label", "state", *settings) if c in frame.columns]
        return frame[first + [c for c in frame.columns if c not in first]]

    def epochs_to_pandas(self) -> Any:
        """A pandas DataFrame, one row per job and epoch: id, label, the settings, then
        the epoch's metrics (epoch, train_loss, val_loss, val_accuracy, ...)."""
        pandas = _pandas()
        rows = [
            {"id": job.id, "label": job.label, **job.settings, **epoch}
            for job in self.jobs
            for epoch in job.epochs()
        ]
        self.problems.extend(p for job in self.jobs for p in job.problems if p not in self.problems)
        return pandas.DataFrame(rows)


def load(target: str | os.PathLike, *, runs_dir: str | os.PathLike | None = None) -> Runs:
    """The jobs of a run folder. `target` is a run folder (or one job's folder), a matrix
    file (its run folder: `runs_dir`, else the matrix's runs_dir, else ./runs), or a run
    name under `runs_dir` (default ./runs). FileNotFoundError when there is none; a
    matrix that does not load raises its MatrixError (every problem, file:line)."""
    root = _root(Path(target), None if runs_dir is None else Path(runs_dir))
    problems: list[str] = []
    if (root / CONFIG).is_file() and not (root / PLAN).exists():  # one job's folder
        job = _job(root, PlanEntry(id=root.name, label=""), problems)
        return Runs(root.name, root, [], [job], problems)
    try:
        plan = read_plan(root)
    except DamagedFile as err:
        problems.append(f"{err}; listing the job folders on disk instead")
        plan = None
    if plan is None:
        entries = [PlanEntry(id=p.name, label="") for p in _job_folders(root)]
        name, axes = root.name, []
    else:
        entries = [e for e in plan.jobs if _is_folder_name(e.id)]
        problems.extend(
            f"damaged: {root / PLAN}: job id {e.id!r} is not a job folder"
            for e in plan.jobs
            if not _is_folder_name(e.id)
        )
        name, axes = plan.name, plan.axes
    return Runs(name, root, axes, [_job(root / e.id, e, problems) for e in entries], problems)


def _root(target: Path, runs_dir: Path | None) -> Path:
    if target.is_dir():
        return target
    if target.is_file():
        from ftmatrix.matrix.plan import load_plan

        plan = load_plan(target, max_jobs=10**9)
        if runs_dir is not None:
            root = runs_dir / plan.name
        elif plan.runs_dir:
            root = plan.path.parent / plan.runs_dir / plan.name
        else:
            root = Path("runs") / plan.name
        if not root.is_dir():
            raise FileNotFoundError(f"{target}: not run yet (no run folder {root})")
        return root
    named = (runs_dir or Path("runs")) / target
    if len(target.parts) == 1 and named.is_dir():
        return named
    raise FileNotFoundError(
        f"no run folder, matrix file or run named '{target}' (looked for {named})"
    )


def _job_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG).exists())


def _is_folder_name(job_id: str) -> bool:
    return job_id not in ("", ".", "..") and "/" not in job_id and "\0" not in job_id


def _job(folder: Path, entry: PlanEntry, problems: list[str]) -> Job:
    job = Job(entry.id, entry.label, dict(entry.settings), "pending", folder, problems=problems)
    try:
        job.config = read_config(folder) or {}
    except DamagedFile as err:
        problems.append(str(err))
    try:
        result = read_result(folder)
    except DamagedFile as err:
        problems.append(str(err))
        job.state, job.error = "damaged", str(err.path.name)
        return job
    if result is None:
        return job
    job.result, job.state = result, result.status
    job.error, job.error_message = result.error_class, result.error_message
    job.epochs_run, job.tested_epoch = result.epochs_run, result.tested_epoch
    job.trainable = result.params.trainable if result.params else None
    job.seconds = result.timing.get("total")
    if result.test is not None:
        job.test = _numbers(result.test.model_dump(exclude=set(_NOT_SCALAR)))
    return job


def _numbers(test: dict[str, Any]) -> dict[str, float]:
    """The numeric test metrics (None and non-numbers left out)."""
    out = {}
    for key, value in test.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = float(value)
    return out


def _row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {"id": job.id, "label": job.label, "state": job.state}
    row.update(job.settings)
    row.update({f"test.{k}": v for k, v in job.test.items()})
    row.update(
        epochs_run=job.epochs_run,
        tested_epoch=job.tested_epoch,
        trainable=job.trainable,
        seconds=job.seconds,
        error=job.error,
    )
    return row


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "to_pandas needs pandas, which is not installed: pip install pandas"
        ) from None
    return pandas

"""Trackers: the same finished jobs in TensorBoard, MLflow and W&B.

A tracker reads job folders, like a report: it never runs inside the training process,
so a tracker that fails (a server down, a full disk) never fails a job. Two entries:

- `track(job_dir, ...)`: the runner's call after each job; returns warnings, never raises.
- `export(run_root, to=...)`: `ftmatrix export NAME --to mlflow|tensorboard|wandb`, for
  every finished job of a run folder: old runs brought in, or what `track` missed.

Each library is imported only when its tracker sends something; `missing()` tells the
validator which asked-for trackers cannot be used, without importing any of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ftmatrix import catalog
from ftmatrix.result import PlanEntry
from ftmatrix.trackers import job as jobs


@dataclass(frozen=True)
class Tracker:
    name: str
    library: str  # the module its code imports; absent = not installed
    module: str  # ftmatrix's module that sends to it
    opens: str  # the command that shows what was sent ({where} = the store)


TRACKERS = {
    t.name: t
    for t in (
        Tracker(
            "tensorboard",
            catalog.TRACKERS["tensorboard"],
            "ftmatrix.trackers.tensorboard",
            "tensorboard --logdir {root}",
        ),
        Tracker(
            "mlflow",
            catalog.TRACKERS["mlflow"],
            "ftmatrix.trackers.mlflow",
            "mlflow ui --backend-store-uri {where}",
        ),
        Tracker(
            "wandb",
            catalog.TRACKERS["wandb"],
            "ftmatrix.trackers.wandb",
            "wandb sync {where}/offline-run-*",
        ),
    )
}


class TrackerMissing(ImportError):
    """A tracker was asked for whose library is not installed."""


def install_hint(name: str) -> str:
    return f"pip install 'ftmatrix[{name}]'"


def missing(trackers: Iterable[str]) -> list[str]:
    """One problem per tracker in `trackers` that cannot be used: an unknown name, or a
    library that is not installed (naming the extra that installs it). Imports nothing."""
    problems = []
    for name in trackers:
        tracker = TRACKERS.get(name)
        if tracker is None:
            problems.append(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")
        elif importlib.util.find_spec(tracker.library) is None:
            problems.append(
                f"tracker '{name}' needs the {tracker.library} package: {install_hint(name)}"
            )
    return problems


def _sender(name: str):
    tracker = TRACKERS.get(name)
    if tracker is None:
        raise ValueError(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")
    if importlib.util.find_spec(tracker.library) is None:
        raise TrackerMissing(
            f"tracker '{name}' needs the {tracker.library} package: {install_hint(name)}"
        )
    return importlib.import_module(tracker.module)


def export_command(run_root: Path, tracker: str, uri: str | None = None) -> str:
    """The command that sends a run folder's finished jobs to `tracker` again."""
    command = f"ftmatrix export {run_root.name} --to {tracker}"
    if run_root.parent.name != "runs":
        command += f" --runs-dir {run_root.parent}"
    return command + (f" --uri {uri}" if uri and tracker == "mlflow" else "")


@dataclass
class Exported:
    """What `export` did."""

    tracker: str
    where: str  # the folder or tracking URI the jobs went to
    opens: str  # the command that shows them
    sent: list[str] = field(default_factory=list)  # job ids
    failed: dict[str, str] = field(default_factory=dict)  # job id -> error
    error: str | None = None  # why nothing could be sent (the store is unreachable)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed


def export(run_root: Path, *, to: str, uri: str | None = None) -> Exported:
    """Send every finished job of the run folder `run_root` to the tracker `to`.

    Idempotent: a job sent before is updated, never duplicated. Raises ValueError for an
    unknown tracker, TrackerMissing when its library is not installed, FileNotFoundError
    when `run_root` holds no plan.json (DamagedFile when it cannot be read); a store that
    cannot be reached is reported in `Exported.error`, a job that could not be sent (or
    read) in `Exported.failed`, neither raised."""
    sender = _sender(to)
    where = sender.where(run_root, uri)
    done = Exported(to, where, TRACKERS[to].opens.format(root=run_root, where=where))
    plan = jobs.plan(run_root)
    found, damaged = jobs.finished(run_root)
    try:
        failed = sender.send(found, run_root=run_root, matrix=plan.name, uri=uri)
    except Exception as err:  # the store itself failed: say so, with the way to retry
        done.error = f"{type(err).__name__}: {err}"
        return done
    done.failed = {**damaged, **failed}
    done.sent = [j.id for j in found if j.id not in failed]
    return done


def track(
    job_dir: Path,
    *,
    trackers: Iterable[str],
    run_root: Path,
    matrix_name: str | None = None,
    uri: str | None = None,
    entry: PlanEntry | None = None,
) -> list[str]:
    """Send one finished job to each of `trackers`; the warnings (empty when all went
    well). Never raises: a tracker's failure must not fail the job or the run, and each
    warning names the `ftmatrix export` command that sends the job later.

    `entry` (the job's line of plan.json) saves reading plan.json again; `matrix_name`
    defaults to the plan's name. A job without result.json is not sent."""
    warnings = []
    try:
        plan = jobs.plan(run_root) if entry is None or matrix_name is None else None
        if entry is None and plan is not None:
            entry = next((e for e in plan.jobs if e.id == job_dir.name), None)
        matrix = matrix_name or (plan.name if plan else run_root.name)
        job = jobs.read(job_dir, entry=entry)
    except Exception as err:  # an unreadable plan or folder: nothing to send
        return [f"trackers: could not read {job_dir} ({type(err).__name__}: {err})"]
    if job is None:
        return []
    for name in trackers:
        if name not in TRACKERS:
            warnings.append(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}")
            continue
        again = export_command(run_root, name, uri)
        try:
            failed = _sender(name).send([job], run_root=run_root, matrix=matrix, uri=uri)
            error = failed.get(job.id)
        except Exception as err:
            error = f"{type(err).__name__}: {err}"
        if error:
            warnings.append(f"{name}: job {job.id} was not sent ({error}); later: {again}")
    return warnings

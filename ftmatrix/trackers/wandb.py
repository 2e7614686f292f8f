"""Weights & Biases, offline: one W&B run per job under `runs/<matrix>/wandb/`.

group = the matrix, name = the job's label, id = the job id, config = the job's config
flattened (and the varying settings as `setting.<key>`), history = one row per epoch
(step = epoch), summary = the test metrics. Offline by default (`WANDB_MODE=online`
sends at once); `wandb sync runs/<matrix>/wandb/offline-run-*` uploads later. The
project is `WANDB_PROJECT`, or `ftmatrix`.

Idempotent: a job's earlier offline run folder is removed before it is written again,
so `wandb sync` never sees one job twice.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ftmatrix.trackers.job import FinishedJob, epoch_scalars

FOLDER = "wandb"  # wandb's own folder name under the `dir` it is given
PROJECT = "ftmatrix"


def where(run_root: Path, uri: str | None = None) -> str:
    """The folder of the offline runs (`uri` is not used)."""
    return str(run_root / FOLDER)


def send(
    jobs: list[FinishedJob], *, run_root: Path, matrix: str, uri: str | None = None
) -> dict[str, str]:
    """Write an offline run per job; {job id: error} for the jobs that failed."""
    import wandb

    failed = {}
    for job in jobs:
        try:
            send_job(wandb, run_root=run_root, matrix=matrix, job=job)
        except Exception as err:  # one job's failure does not stop the others
            failed[job.id] = f"{type(err).__name__}: {err}"
    return failed


def send_job(wandb: Any, *, run_root: Path, matrix: str, job: FinishedJob) -> Path:
    """One job's offline run; its folder."""
    for old in (run_root / FOLDER).glob(f"*-run-*-{job.id}"):
        shutil.rmtree(old, ignore_errors=True)
    config = dict(job.config)
    config.update({f"setting.{key}": value for key, value in job.settings.items()})
    run = wandb.init(
        mode=os.environ.get("WANDB_MODE", "offline"),
        dir=str(run_root),
        project=os.environ.get("WANDB_PROJECT", PROJECT),
        group=matrix,
        name=job.name,
        id=job.id,
        job_type="train",
        config=config,
        tags=[job.result.status],
        reinit="create_new",
        settings=wandb.Settings(
            silent=True, console="off", x_disable_stats=True, x_disable_meta=True
        ),
    )
    try:
        for epoch in job.epochs:
            run.log(epoch_scalars(epoch), step=epoch.epoch)
        summary: dict[str, Any] = dict(job.test_metrics())
        summary["status"] = job.result.status
        if job.result.best_epoch is not None:
            summary["best_epoch"] = job.result.best_epoch
        run.summary.update(summary)
    finally:
        run.finish(exit_code=0 if job.result.status == "done" else 1)
    return Path(run.dir).parent

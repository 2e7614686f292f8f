"""MLflow: one experiment per matrix, one run per job.

A run holds the job's config flattened as params (and the varying settings as
`setting.<key>`), the per-epoch metrics with the epoch as step, the test metrics at the
last step, result.json and the location of the weights as artifacts, and the job id as
the tag `ftmatrix.job_id`. The default store is a SQLite file in the run folder
(`mlflow ui --backend-store-uri sqlite:///runs/<matrix>/mlflow.db`); a tracking URI
(a server) may be given instead.

Idempotent: a job's run is found by its job-id tag and updated (metric points it already
holds are not sent again), so a resumed or re-exported job never makes a second run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftmatrix.result import RESULT
from ftmatrix.trackers.job import JOB_ID_TAG, FinishedJob, epoch_scalars

DB = "mlflow.db"  # the default store, in the run folder
ARTIFACTS = "mlartifacts"  # the default store's artifacts, in the run folder
# A tracking server that is down must cost seconds, not MLflow's default of minutes of
# retries: the runner goes on to the next job and `ftmatrix export` sends it later.
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
PARAM_CHARS = 6000  # MLflow's limit on a param value
BATCH = 100  # params per log_batch call (MLflow's limit)
STATUS = {"done": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def where(run_root: Path, uri: str | None = None) -> str:
    """The tracking URI: `uri`, or the SQLite store in the run folder."""
    return uri or f"sqlite:///{(run_root / DB).resolve()}"


def send(
    jobs: list[FinishedJob], *, run_root: Path, matrix: str, uri: str | None = None
) -> dict[str, str]:
    """Create or update the run of every job; {job id: error} for the jobs that failed.
    Raises when the store cannot be reached at all."""
    from mlflow import MlflowClient

    failed: dict[str, str] = {}
    with _quick_http():
        client = MlflowClient(tracking_uri=where(run_root, uri))
        artifacts = None if uri else (run_root / ARTIFACTS).resolve().as_uri()
        experiment = experiment_id(client, matrix, artifacts=artifacts)
        for job in jobs:
            try:
                send_job(client, experiment, job)
            except Exception as err:  # one job's failure does not stop the others
                failed[job.id] = f"{type(err).__name__}: {err}"
    return failed


@contextlib.contextmanager
def _quick_http() -> Iterator[None]:
    set_here = [k for k in QUICK_HTTP if k not in os.environ]
    os.environ.update({k: QUICK_HTTP[k] for k in set_here})
    for name in ("mlflow", "alembic"):  # table creation logs at INFO on every new store
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for key in set_here:
            os.environ.pop(key, None)


def experiment_id(client: Any, name: str, *, artifacts: str | None) -> str:
    """The experiment named after the matrix, created on first use."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifacts)


def find_run(client: Any, experiment: str, job_id: str) -> str | None:
    """The id of the run tagged with `job_id`, if the experiment has one."""
    runs = client.search_runs(
        [experiment], filter_string=f"tags.`{JOB_ID_TAG}` = '{job_id}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def send_job(client: Any, experiment: str, job: FinishedJob) -> str:
    """Create or update the job's run; its run id."""
    from mlflow.entities import Metric, Param, RunTag

    points = metric_points(job)
    run_id = find_run(client, experiment, job.id)
    held: set[tuple[str, int]] = set()
    if run_id is not None:
        held, conflict = _held(client, run_id, points)
        if conflict:  # the job was re-run from scratch: its old history no longer holds
            client.delete_run(run_id)
            run_id, held = None, set()
    if run_id is None:
        run_id = client.create_run(
            experiment, start_time=int(job.started() * 1000), run_name=job.name
        ).info.run_id
    tags = {JOB_ID_TAG: job.id, "mlflow.runName": job.name, **_tags(job)}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    params = [Param(k, v) for k, v in params_of(job).items()]
    for i in range(0, len(params), BATCH):
        client.log_batch(run_id, params=params[i : i + BATCH])
    new = [Metric(k, v, ms, step) for k, v, ms, step in points if (k, step) not in held]
    for i in range(0, len(new), 1000):
        client.log_batch(run_id, metrics=new[i : i + 1000])
    client.log_artifact(run_id, str(job.folder / RESULT))
    weights = job.weights()
    location = {"job_dir": str(job.folder.resolve()), "weights": str(weights) if weights else None}
    client.log_dict(run_id, location, "location.json")
    client.set_terminated(
        run_id, status=STATUS.get(job.result.status, "FAILED"), end_time=int(job.finished() * 1000)
    )
    return run_id


def _held(
    client: Any, run_id: str, points: list[tuple[str, float, int, int]]
) -> tuple[set[tuple[str, int]], bool]:
    """The (metric, step) points the run already holds, and whether one of them differs
    from the job's value at that step."""
    want = {(k, step): v for k, v, _, step in points}
    held, conflict = set(), False
    for key in {k for k, _, _, _ in points}:
        for m in client.get_metric_history(run_id, key):
            held.add((key, m.step))
            if (key, m.step) in want and abs(want[(key, m.step)] - m.value) > 1e-12:
                conflict = True
    return held, conflict


def metric_points(job: FinishedJob) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp ms, step) of every epoch scalar and the test metrics."""
    points = []
    for epoch, when in zip(job.epochs, job.epoch_times(), strict=True):
        for key, value in epoch_scalars(epoch).items():
            points.append((key, value, int(when * 1000), epoch.epoch))
    last = job.epochs[-1].epoch if job.epochs else 0
    ended = int(job.finished() * 1000)
    points += [(key, value, ended, last) for key, value in job.test_metrics().items()]
    return points


def params_of(job: FinishedJob) -> dict[str, str]:
    """The config flattened (`train.lr`) and the varying settings (`setting.lora`)."""
    params = {key: _text(value) for key, value in job.config.items()}
    params.update({f"setting.{key}": _text(value) for key, value in job.settings.items()})
    return params


def _text(value: Any) -> str:
    return ("None" if value is None else str(value))[:PARAM_CHARS]


def _tags(job: FinishedJob) -> dict[str, str]:
    result = job.result
    tags = {
        "ftmatrix.label": job.label,
        "ftmatrix.status": result.status,
        "ftmatrix.job_dir": str(job.folder.resolve()),
    }
    weights = job.weights()
    if weights is not None:
        tags["ftmatrix.weights"] = str(weights)
    if result.error_class:
        tags["ftmatrix.error_class"] = result.error_class
    if result.device:
        tags["ftmatrix.device"] = result.device
    return tags

"""TensorBoard: event files per job in `runs/<matrix>/tensorboard/<label> (<id>)/`.

Scalars per epoch (train/val loss and metrics, lr, epoch time and throughput), the test
metrics at the last epoch, and the HParams plugin's session start and end, so that
`tensorboard --logdir runs/<matrix>` shows the study and its HParams tab compares the
jobs by the settings that vary. Written with tensorboard's own event writer and protos:
no TensorFlow, no torch.

Idempotent: a job's folder is written beside the old one and swapped in, so sending a
job again (a resume, an export) replaces its events instead of adding to them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ftmatrix.trackers.job import FinishedJob, epoch_scalars, folder_name

FOLDER = "tensorboard"  # in the run folder, beside the job folders


def where(run_root: Path, uri: str | None = None) -> str:
    """The folder the events go to (`uri` is not used: TensorBoard reads files)."""
    return str(run_root / FOLDER)


def send(
    jobs: list[FinishedJob], *, run_root: Path, matrix: str, uri: str | None = None
) -> dict[str, str]:
    """Write (or rewrite) the event files of `jobs`; {job id: error} for those that failed."""
    base = run_root / FOLDER
    base.mkdir(parents=True, exist_ok=True)
    failed = {}
    for job in jobs:
        try:
            write_job(base, job)
        except Exception as err:  # one job's failure does not stop the others
            failed[job.id] = f"{type(err).__name__}: {err}"
    return failed


def write_job(base: Path, job: FinishedJob) -> Path:
    """One job's event folder under `base`, replacing any earlier one of the same job."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    final = base / folder_name(job)
    staging = base / f".{job.id}.writing"
    shutil.rmtree(staging, ignore_errors=True)
    writer = EventFileWriter(str(staging), max_queue_size=1000, flush_secs=3600)
    try:
        for event in events(job):
            writer.add_event(event)
    finally:
        writer.close()
    # An earlier label (a renamed axis) leaves a folder under another name: same id.
    for old in [base / job.id, *base.glob(f"* ({job.id})")]:
        shutil.rmtree(old, ignore_errors=True)
    staging.rename(final)
    return final


def events(job: FinishedJob) -> list[Any]:
    """The job's events: hparams session start, scalars per epoch, test, session end."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2, summary_v2

    started = job.started()
    start_info = summary_v2.hparams_pb(
        hparams(job), trial_id=job.name, start_time_secs=int(started)
    )
    found = [event_pb2.Event(wall_time=started, step=0, summary=start_info)]
    times = job.epoch_times()
    for epoch, when in zip(job.epochs, times, strict=True):
        found.append(
            event_pb2.Event(
                wall_time=when, step=epoch.epoch, summary=_scalars(epoch_scalars(epoch))
            )
        )
    last = job.epochs[-1].epoch if job.epochs else 0
    ended = job.finished()
    if job.test_metrics():
        found.append(
            event_pb2.Event(wall_time=ended, step=last, summary=_scalars(job.test_metrics()))
        )
    # The HParams API knows success and failure; a pruned trial stopped on purpose.
    status = "STATUS_FAILURE" if job.result.status == "failed" else "STATUS_SUCCESS"
    end_info = plugin_data_pb2.SessionEndInfo(
        status=api_status(status),
        end_time_secs=int(ended),
    )
    end = summary_pb2.Summary()
    end.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(
            plugin_data_pb2.HParamsPluginData(session_end_info=end_info)
        ),
        tensor=metadata.NULL_TENSOR,
    )
    found.append(event_pb2.Event(wall_time=ended, step=last, summary=end))
    return found


def api_status(name: str) -> int:
    """The HParams API's session status number for `name` (STATUS_SUCCESS, ...)."""
    from tensorboard.plugins.hparams import api_pb2

    return api_pb2.Status.Value(name)


def hparams(job: FinishedJob) -> dict[str, bool | float | str]:
    """The settings that vary, typed for the HParams tab: the config's own value where
    the setting is a config key (a number stays a number), else the display value."""
    out: dict[str, bool | float | str] = {}
    for key, shown in job.settings.items():
        value = job.config.get(key, shown)
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = float(value)
        else:
            out[key] = _number_or_text(str(shown))
    return out


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _scalars(values: dict[str, float]) -> Any:
    from tensorboard.compat.proto import summary_pb2

    summary = summary_pb2.Summary()
    for tag, value in values.items():
        summary.value.add(tag=tag, simple_value=value)
    return summary

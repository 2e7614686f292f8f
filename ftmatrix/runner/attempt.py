"""One attempt at one job, and what every executor shares around it.

An executor (the local queue, a tuned search, Slurm) claims a job with `store.claim`,
then `run` starts it through a launcher, follows its progress.jsonl into the display
(and into a `watch`, which may stop it: a search's pruner), stops it at --timeout or
Ctrl-C, and records how it ended when the job could not say so itself: result.json
with failed (crash, timeout) or pruned. Around that, every executor uses the same
`Options`, `todo` (which states run again), `checked` (pre-flight), `CtrlC` and
`summary` (the closing count and the exit code).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ftmatrix.job import CODE_DIR
from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.result import (
    PROGRESS,
    RESULT,
    DamagedFile,
    Result,
    log_tail,
    read_metrics,
    read_progress,
    write_json_atomic,
)
from ftmatrix.runner import params_model, preflight, store
from ftmatrix.runner.launchers.process import Handle, Launcher
from ftmatrix.runner.progress import Plain

INTERRUPTED = 130  # the exit code after Ctrl-C


@dataclass
class Options:
    only: str | None = None  # --only EXPR
    retry_failed: bool = False
    force: bool = False
    gpu: str | None = None  # CUDA_VISIBLE_DEVICES for the jobs
    timeout: float | None = None  # seconds per job
    fail_fast: bool = False
    grace: float = 10.0  # seconds between SIGINT, SIGTERM and SIGKILL when stopping a job
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the jobs
    # jobs at once, one per slot: each slot's CUDA_VISIBLE_DEVICES (None: `gpu`, or no GPU)
    slots: list[str | None] = field(default_factory=lambda: [None])
    track: tuple[str, ...] = ()  # trackers each finished job is sent to
    track_uri: str | None = None  # MLflow's tracking URI (None: the run folder's store)


class CtrlC:
    """First Ctrl-C: stop the running jobs gracefully and leave. Second: stop at once."""

    def __init__(self):
        self.count = 0
        self.handles: set[Handle] = set()  # the running jobs (several with a pool)
        self.previous = signal.signal(signal.SIGINT, self._on)
        self.previous_term = signal.signal(signal.SIGTERM, self._on)

    def _on(self, signum, _frame) -> None:
        self.count += 1
        if self.count >= 2:
            for handle in list(self.handles):
                handle.stop(grace=0)
            os._exit(INTERRUPTED)

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self.previous)
        signal.signal(signal.SIGTERM, self.previous_term)


def todo(state: str, options: Options) -> bool:
    """Whether a job in `state` runs (again) under these options."""
    if options.force:
        return True
    if state in ("pending", "interrupted"):
        return True
    return state == "failed" and options.retry_failed


def checked(
    jobs: list[Job], *, plan: Plan, root: Path, display: Plain, launcher: object = None
) -> bool:
    """Preflight: True when the jobs can start; otherwise every problem is shown. A
    launcher with a server that imported torch already checks the models there."""
    problems = preflight.check(
        jobs,
        root=root,
        base_dir=plan.path.parent,
        matrix=plan.path,
        models=getattr(launcher, "check_models", None),
    )
    problems += params_model.check(plan, jobs)  # params_schema: module:Model, own process
    for p in problems:
        display.console.print(f"preflight: {p}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        display.console.print(f"{len(problems)} problem(s) before the first job; nothing was run.")
    return not problems


def states(jobs: list[Job], *, root: Path, display: Plain) -> dict[str, str]:
    """Job id -> state, saying which result.json files cannot be read (those jobs run
    again: a damaged result finishes nothing)."""
    out = {}
    for job in jobs:
        seen = store.inspect(root / job.id)
        if seen.damaged:
            display.console.print(
                f"{seen.damaged}; the job counts as unfinished",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        out[job.id] = seen.state
    return out


def summary(jobs: list[Job], *, root: Path, display: Plain) -> int:
    """Print the count of jobs per state; the exit code: 0 when all are done (or
    pruned), 1 otherwise."""
    final = [store.state(root / j.id) for j in jobs]
    counts = {s: final.count(s) for s in store.STATES if s in final}
    display.console.print(
        "summary: " + ", ".join(f"{n} {s}" for s, n in counts.items()), highlight=False
    )
    if "failed" in final:
        display.console.print("re-run failed jobs with --retry-failed", highlight=False)
        return 1
    return 0 if all(s in ("done", "pruned") for s in final) else 1


# Called with each new progress event of a running job; a message stops the job as
# pruned (the search's pruner rejected it), None lets it go on.
Watch = Callable[[dict], str | None]


@dataclass
class _Follow:
    """A running job's progress.jsonl, read as it grows, and what the watch decided."""

    job: Job
    path: Path
    display: Plain
    watch: Watch | None
    offset: int = 0
    verdicts: list[str] = field(default_factory=list)  # why the watch stopped it (pruned)

    def __call__(self) -> None:
        self.offset = follow_progress(
            self.path, self.offset, self.job, self.display, self._on_event
        )

    def _on_event(self, event: dict) -> None:
        if self.watch is not None and not self.verdicts and (message := self.watch(event)):
            self.verdicts.append(message)


def run(
    job: Job,
    *,
    job_dir: Path,
    claim: store.Claim,
    base_dir: Path,
    launcher: Launcher,
    options: Options,
    display: Plain,
    ctrl_c: CtrlC,
    watch: Watch | None = None,
) -> str:
    """Run one claimed job to its end: done, failed, pruned or interrupted (Ctrl-C).
    `base_dir` resolves a relative data.path (the matrix file's folder)."""
    previous = store.state(job_dir, claimed=True)
    if options.force or previous == "failed":
        store.reset(job_dir, fresh=options.force)
    store.write_config(job, job_dir, base_dir=base_dir)
    # absolute: the job process may start in another folder (own code, job.py)
    env = {**os.environ, **options.env, CODE_DIR: str(Path(base_dir).resolve())}
    if options.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = options.gpu
    progress = job_dir / PROGRESS
    follow = _Follow(
        job, progress, display, watch, progress.stat().st_size if progress.exists() else 0
    )
    display.job_started(job)
    handle = launcher.start(job_dir, env=env, lock_fd=claim.fd)
    # --timeout counts from here: a fork server's one-time imports are not the job's
    started = time.monotonic()
    ctrl_c.handles.add(handle)
    timed_out = False
    while True:
        code = handle.poll()
        follow()
        if code is not None:
            break
        if follow.verdicts or ctrl_c.count:
            code = handle.stop(grace=options.grace)
            break
        if options.timeout is not None and time.monotonic() - started > options.timeout:
            code = handle.stop(grace=options.grace)
            timed_out = True
            break
        handle.wait(0.1)  # a pause that ends when the job does: the next job starts at once
    ctrl_c.handles.discard(handle)
    follow()
    seconds = time.monotonic() - started
    result = store.read_status(job_dir)
    if result is None and ctrl_c.count and not timed_out and not follow.verdicts:
        display.job_finished(job, "interrupted", None, seconds)
        return "interrupted"
    if follow.verdicts and result is None:  # (it may have ended on its own meanwhile)
        result = record_pruned(job_dir, follow.verdicts[0])
    elif timed_out and (result is None or result.status != "done"):
        result = record_failure(
            job_dir, "timeout", f"exceeded the time limit of {options.timeout:g} s"
        )
    elif result is None:
        result = record_failure(
            job_dir, "crash", f"the job process exited with code {code} and no result"
        )
    display.job_finished(job, result.status, result, seconds)
    send_to_trackers(job_dir, options=options, display=display)
    return result.status


def send_to_trackers(job_dir: Path, *, options: Options, display: Plain) -> None:
    """A finished job to the trackers asked for; a failure is a warning, never the job's."""
    if not options.track:
        return
    from ftmatrix import trackers

    for warning in trackers.track(
        job_dir, trackers=options.track, run_root=job_dir.parent, uri=options.track_uri
    ):
        display.say(f"warning: {warning}")


def record_failure(job_dir: Path, error: str, message: str) -> Result:
    """result.json for a job that could not write its own."""
    result = Result(
        status="failed",
        job_id=job_dir.name,
        error_class=error,
        error_message=message,
        log_tail=log_tail(job_dir),
    )
    write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
    return result


def record_pruned(job_dir: Path, message: str) -> Result:
    """result.json for a job the search's pruner stopped: not failed, not finished."""
    try:
        epochs = len(read_metrics(job_dir))
    except DamagedFile:
        epochs = 0
    result = Result(
        status="pruned",
        job_id=job_dir.name,
        error_message=message,  # which epoch, which value
        epochs_run=epochs,
    )
    write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
    return result


def follow_progress(
    path: Path,
    offset: int,
    job: Job,
    display: Plain,
    on_event: Callable[[dict], None] | None = None,
) -> int:
    """Feed the display (and `on_event`) every complete new line of progress.jsonl;
    the offset to read from next."""
    events, offset = read_progress(path, offset)
    for event in events:
        if on_event is not None:  # (first: a line the display cannot show still counts)
            on_event(event)
        try:
            display.event(job, event)
        except (ValueError, KeyError, TypeError):
            continue  # (an event without the fields its kind has: advice, not a record)
    return offset

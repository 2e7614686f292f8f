"""Run a plan: claim each job, start its process, follow it, record how it ended.

Resume is the default: done jobs are skipped, interrupted jobs continue from their
checkpoint, failed ones wait for --retry-failed. Several runners may share a matrix:
each job is claimed by its lock first, and a runner waits at the end for jobs that
another process is still running, so it returns with the matrix complete.

A matrix with a `search:` block is run by `tune`, which draws its jobs trial by trial
and runs each one with `run_job`, the same code as here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.matrix.select import select
from ftmatrix.result import LOG, PROGRESS, Result, read_metrics, write_json_atomic
from ftmatrix.runner import preflight, store
from ftmatrix.runner.launch import Handle, Launcher, SpawnLauncher
from ftmatrix.runner.progress import Plain

INTERRUPTED = 130


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


def todo(job: Job, state: str, options: Options) -> bool:
    if options.force:
        return True
    if state in ("pending", "interrupted"):
        return True
    return state == "failed" and options.retry_failed


def checked(jobs: list[Job], *, plan: Plan, root: Path, display: Plain) -> bool:
    """Preflight: True when the jobs can start; otherwise every problem is shown."""
    problems = preflight.check(jobs, root=root, base_dir=plan.path.parent)
    for p in problems:
        display.console.print(f"preflight: {p}", markup=False, highlight=False, soft_wrap=True)
    if problems:
        display.console.print(f"{len(problems)} problem(s) before the first job; nothing was run.")
    return not problems


def run(
    plan: Plan,
    *,
    root: Path,
    options: Options,
    display: Plain,
    launcher: Launcher | None = None,
) -> int:
    """Run what is left of the plan; the exit code (0 done, 1 failed, 2 bad input, 130)."""
    launcher = launcher or SpawnLauncher()
    if plan.search:
        from ftmatrix.runner import tune  # imports optuna

        return tune.run(plan, root=root, options=options, display=display, launcher=launcher)
    jobs = select(plan.jobs, options.only)
    states = {j.id: store.state(root / j.id) for j in jobs}
    queue = [j for j in jobs if todo(j, states[j.id], options)]
    # running in another process (a second `ftmatrix run`): waited for, not skipped
    queued = {j.id for j in queue}
    running = [j for j in jobs if states[j.id] == "running" and j.id not in queued]
    if not checked(queue, plan=plan, root=root, display=display):
        return 2
    store.prepare(plan, root)
    display.start(len(jobs), len(queue))
    ctrl_c = CtrlC()

    def run_queue(jobs: list[Job]) -> list[Job]:
        return _run_queue(
            jobs,
            plan=plan,
            root=root,
            options=options,
            display=display,
            launcher=launcher,
            ctrl_c=ctrl_c,
        )

    try:
        elsewhere = running + run_queue(queue)
        while elsewhere and not ctrl_c.count:
            # a job the other process left unfinished (interrupted, say) is ours to run
            elsewhere = run_queue(_wait_for(elsewhere, root, display, ctrl_c))
    finally:
        ctrl_c.restore()
        display.close()
    if ctrl_c.count:
        display.console.print(
            "interrupted: finished results are kept; run the same command again to resume."
        )
        return INTERRUPTED
    return summary(jobs, root=root, display=display)


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


def _run_queue(
    queue: list[Job],
    *,
    plan: Plan,
    root: Path,
    options: Options,
    display: Plain,
    launcher: Launcher,
    ctrl_c: CtrlC,
) -> list[Job]:
    """Run the queue, one job per slot at a time; the jobs another process had
    claimed. One slot runs in this thread; several run in one thread each, which
    only start and watch their job processes (the work is in those processes)."""
    pending = deque(queue)
    lock = threading.Lock()
    failed = 0
    elsewhere: list[Job] = []
    errors: list[BaseException] = []

    def worker(slot: str | None) -> None:
        nonlocal failed
        mine = options if slot is None else replace(options, gpu=slot)
        while True:
            with lock:
                if ctrl_c.count or (options.fail_fast and failed) or not pending:
                    return
                job = pending.popleft()
            job_dir = root / job.id
            claim = store.claim(job_dir)
            if claim is None:
                with lock:
                    elsewhere.append(job)  # another runner has it
                continue
            try:
                # it may have finished while we looked away
                state = store.state(job_dir, claimed=True)
                if not options.force and not todo(job, state, options):
                    continue
                outcome = run_job(
                    job,
                    job_dir=job_dir,
                    claim=claim,
                    base_dir=plan.path.parent,
                    launcher=launcher,
                    options=mine,
                    display=display,
                    ctrl_c=ctrl_c,
                )
            finally:
                claim.release()
            with lock:
                failed += outcome == "failed"

    def guarded(slot: str | None) -> None:
        try:
            worker(slot)
        except BaseException as err:  # re-raised in the main thread
            errors.append(err)
            ctrl_c.count += 1  # the other slots stop too

    slots = options.slots or [None]
    if len(slots) == 1:
        worker(slots[0])
        return elsewhere
    display.parallel = True
    threads = [threading.Thread(target=guarded, args=(s,), daemon=True) for s in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # the main thread stays free to take Ctrl-C
    if errors:
        raise errors[0]
    return elsewhere


# Called with each new progress event of a running job; a message stops the job as
# pruned (the search's pruner rejected it), None lets it go on.
Watch = Callable[[dict], str | None]


def run_job(
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
    env = {**os.environ, **options.env}
    if options.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = options.gpu
    progress = job_dir / PROGRESS
    offset = progress.stat().st_size if progress.exists() else 0
    display.job_started(job)
    started = time.monotonic()
    handle = launcher.start(job_dir, env=env, lock_fd=claim.fd)
    ctrl_c.handles.add(handle)
    timed_out = False
    verdicts: list[str] = []  # why the watch stopped the job (pruned)

    def on_event(event: dict) -> None:
        if watch is not None and not verdicts and (message := watch(event)):
            verdicts.append(message)

    while True:
        code = handle.poll()
        offset = follow_progress(progress, offset, job, display, on_event)
        if code is not None:
            break
        if verdicts:
            code = handle.stop(grace=options.grace)
            break
        if ctrl_c.count:
            code = handle.stop(grace=options.grace)
            break
        if options.timeout is not None and time.monotonic() - started > options.timeout:
            code = handle.stop(grace=options.grace)
            timed_out = True
            break
        handle.wait(0.1)  # a pause that ends when the job does: the next job starts at once
    ctrl_c.handles.discard(handle)
    follow_progress(progress, offset, job, display, on_event)
    seconds = time.monotonic() - started
    result = store.read_status(job_dir)
    if result is None and ctrl_c.count and not timed_out and not verdicts:
        display.job_finished(job, "interrupted", None, seconds)
        return "interrupted"
    if verdicts and result is None:  # (it may have ended on its own meanwhile)
        result = record_pruned(job_dir, verdicts[0])
    elif timed_out and (result is None or result.get("status") != "done"):
        result = record_failure(
            job_dir, "timeout", f"exceeded the time limit of {options.timeout:g} s"
        )
    elif result is None:
        result = record_failure(
            job_dir, "crash", f"the job process exited with code {code} and no result"
        )
    state = result.get("status", "failed")
    display.job_finished(job, state, result, seconds)
    return state


def record_failure(job_dir: Path, error: str, message: str) -> dict:
    """result.json for a job that could not write its own."""
    try:
        tail = "\n".join((job_dir / LOG).read_text(errors="replace").splitlines()[-30:])
    except OSError:
        tail = ""
    result = Result(
        status="failed",
        job_id=job_dir.name,
        error_class=error,
        error_message=message,
        log_tail=tail,
    )
    data = result.model_dump(mode="json")
    write_json_atomic(job_dir / "result.json", data)
    return data


def record_pruned(job_dir: Path, message: str) -> dict:
    """result.json for a job the search's pruner stopped: not failed, not finished."""
    result = Result(
        status="pruned",
        job_id=job_dir.name,
        error_message=message,  # which epoch, which value
        epochs_run=len(read_metrics(job_dir)),
    )
    data = result.model_dump(mode="json")
    write_json_atomic(job_dir / "result.json", data)
    return data


def follow_progress(
    path: Path,
    offset: int,
    job: Job,
    display: Plain,
    on_event: Callable[[dict], None] | None = None,
) -> int:
    """Feed the display (and `on_event`) every complete new line of progress.jsonl."""
    import json

    try:
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        try:
            event = json.loads(line)
            display.event(job, event)
        except (ValueError, KeyError, TypeError):
            continue
        if on_event is not None:
            on_event(event)
    return offset + end


def _wait_for(jobs: list[Job], root: Path, display: Plain, ctrl_c: CtrlC) -> list[Job]:
    """Wait for jobs another process is running, showing how each ended; those that
    it left still to do (it was interrupted or killed), for this runner to run."""
    display.say(f"waiting for {len(jobs)} job(s) running in another process")
    pending = {j.id: j for j in jobs}
    left = []
    while pending and not ctrl_c.count:
        for job_id, job in list(pending.items()):
            if not store.is_locked(root / job_id):
                del pending[job_id]
                state = store.state(root / job_id)
                if state in ("pending", "interrupted"):  # (its failures stay failed)
                    left.append(job)
                else:
                    display.job_finished(job, state, store.read_status(root / job_id), 0.0)
        time.sleep(0.2)
    return left

"""The local queue: run a plan's jobs on this machine, one per slot at a time.

Resume is the default: done jobs are skipped, interrupted jobs continue from their
checkpoint, failed ones wait for --retry-failed. Several runners may share a matrix:
each job is claimed by its lock first, and a runner waits at the end for jobs that
another process is still running (running any it leaves unfinished), so it returns
with the matrix complete. Each job is one `attempt.run`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.matrix.select import select
from ftmatrix.runner import attempt, store
from ftmatrix.runner.attempt import CtrlC, Options
from ftmatrix.runner.launchers.process import Launcher
from ftmatrix.runner.progress import Plain


def run(
    plan: Plan,
    *,
    root: Path,
    options: Options,
    display: Plain,
    launcher: Launcher,
) -> int:
    """Run what is left of the plan; the exit code (0 done, 1 failed, 2 bad input, 130)."""
    jobs = select(plan.jobs, options.only)
    states = attempt.states(jobs, root=root, display=display)
    queue = [j for j in jobs if attempt.todo(states[j.id], options)]
    # running in another process (a second `ftmatrix run`): waited for, not skipped
    queued = {j.id for j in queue}
    running = [j for j in jobs if states[j.id] == "running" and j.id not in queued]
    if not attempt.checked(queue, plan=plan, root=root, display=display, launcher=launcher):
        return 2
    store.prepare(plan, root)
    display.start(len(jobs), len(queue))
    pool = _Pool(plan, root, options, display, launcher, CtrlC())
    try:
        elsewhere = running + pool.run(queue)
        while elsewhere and not pool.ctrl_c.count:
            # a job the other process left unfinished (interrupted, say) is ours to run
            elsewhere = pool.run(_wait_for(elsewhere, root, display, pool.ctrl_c))
    finally:
        pool.ctrl_c.restore()
        display.close()
    if pool.ctrl_c.count:
        display.console.print(
            "interrupted: finished results are kept; run the same command again to resume."
        )
        return attempt.INTERRUPTED
    return attempt.summary(jobs, root=root, display=display)


@dataclass
class _Pool:
    """The slots of one run. One slot runs in this thread; several run in one thread
    each, which only start and watch their job processes (the work is in those
    processes)."""

    plan: Plan
    root: Path
    options: Options
    display: Plain
    launcher: Launcher
    ctrl_c: CtrlC
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, queue: list[Job]) -> list[Job]:
        """Run the queue; the jobs another process had claimed."""
        pending = deque(queue)
        elsewhere: list[Job] = []
        errors: list[BaseException] = []

        def guarded(slot: str | None) -> None:
            try:
                self._worker(slot, pending, elsewhere)
            except BaseException as err:  # re-raised in the main thread
                errors.append(err)
                self.ctrl_c.count += 1  # the other slots stop too

        slots = self.options.slots or [None]
        if len(slots) == 1:
            self._worker(slots[0], pending, elsewhere)
            return elsewhere
        self.display.parallel = True
        self.display.slots = len(slots)
        threads = [threading.Thread(target=guarded, args=(s,), daemon=True) for s in slots]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # the main thread stays free to take Ctrl-C
        if errors:
            raise errors[0]
        return elsewhere

    def _worker(self, slot: str | None, pending: deque[Job], elsewhere: list[Job]) -> None:
        options = self.options if slot is None else replace(self.options, gpu=slot)
        while True:
            with self.lock:
                if self.ctrl_c.count or (options.fail_fast and self.failed) or not pending:
                    return
                job = pending.popleft()
            job_dir = self.root / job.id
            claim = store.claim(job_dir)
            if claim is None:
                with self.lock:
                    elsewhere.append(job)  # another runner has it
                continue
            try:
                # it may have finished while we looked away
                if not attempt.todo(store.state(job_dir, claimed=True), options):
                    continue
                outcome = attempt.run(
                    job,
                    job_dir=job_dir,
                    claim=claim,
                    base_dir=self.plan.path.parent,
                    launcher=self.launcher,
                    options=options,
                    display=self.display,
                    ctrl_c=self.ctrl_c,
                )
            finally:
                claim.release()
            with self.lock:
                self.failed += outcome == "failed"


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

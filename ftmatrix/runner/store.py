"""The run store: runs/<matrix>/ with one folder per job, states and kernel locks.

State of a job folder, from its files and its lock:
  done / failed / pruned   result.json says so (written last, atomically)
  running                  its lock is held (by a runner or by the job process itself)
  interrupted              no result, lock free, but the job started (a process died),
                           or its result.json cannot be read: it runs again and resumes
  pending                  never started

Locks are `fcntl.flock` locks on <job>/.lock. The runner hands the locked file to the
job process, so the lock lives exactly as long as either of them: a SIGKILL anywhere
can never leave a stale claim, and a job whose runner died keeps its claim while it
finishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.result import (
    CHECKPOINT,
    CONFIG,
    LOCK,
    LOG,
    MATRIX_SNAPSHOT,
    METRICS,
    PLAN,
    PREDICTIONS,
    PROGRESS,
    RESULT,
    STARTS,
    WEIGHTS,
    DamagedFile,
    Result,
    read_result,
    write_atomic,
    write_json_atomic,
)

STATES = ("pending", "running", "done", "failed", "pruned", "interrupted")


def root_of(plan: Plan, runs_dir: Path | None = None) -> Path:
    """runs/<name>: --runs-dir, else the matrix's runs_dir (relative to the file), else ./runs."""
    if runs_dir is not None:
        return Path(runs_dir) / plan.name
    if plan.runs_dir:
        return plan.path.parent / plan.runs_dir / plan.name
    return Path("runs") / plan.name


def prepare(plan: Plan, root: Path) -> None:
    """Create the run folder and snapshot the matrix file and the plan (a searched
    plan's plan.json lists its trials, so `tune` writes it as they are drawn)."""
    root.mkdir(parents=True, exist_ok=True)
    if plan.path.is_file():
        write_atomic(root / MATRIX_SNAPSHOT, plan.path.read_text(encoding="utf-8"))
    if not plan.search:
        write_json_atomic(root / PLAN, plan.to_planfile().model_dump(mode="json"))


def write_config(job: Job, job_dir: Path, *, base_dir: Path) -> None:
    """config.json for the trainer, with a relative data.path made absolute against the
    matrix file's folder (the id keeps the path as written)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    config = job.config.model_dump(mode="json")
    path = (config["data"] or {}).get("path")  # none for a script or function job
    if path and not Path(path).is_absolute():
        config["data"]["path"] = str((base_dir / path).resolve())
    write_json_atomic(job_dir / CONFIG, config)


@dataclass
class Claim:
    """A held job lock; `fd` is passed to the job process so it holds the lock too."""

    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim(job_dir: Path) -> Claim | None:
    """Take the job's lock without waiting; None when another process holds it.

    Three tries 10 ms apart: `is_locked` (another runner's status look) holds the lock
    for microseconds, a job for its whole life."""
    job_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(job_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    for attempt in range(3):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return Claim(fd)
        except BlockingIOError:
            if attempt < 2:
                time.sleep(0.01)
    os.close(fd)
    return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive kernel lock on the file `path`, waiting for it: a short
    critical section that several runners share (drawing a search's next trial)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_locked(job_dir: Path) -> bool:
    try:
        fd = os.open(job_dir / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@dataclass
class Seen:
    """A job folder as its files and lock show it."""

    state: str  # one of STATES
    result: Result | None = None  # result.json, when it is there and readable
    damaged: str | None = None  # "damaged: <path>: <problem>": the job counts as unfinished


def inspect(job_dir: Path, *, claimed: bool = False) -> Seen:
    """The job's state, its result and what is wrong with result.json, if anything;
    `claimed` when this process holds its lock (so it is not "running" for that reason).

    A result.json that cannot be read (truncated, not UTF-8, not a result) does not
    finish a job: it counts as interrupted and runs again (resuming from its checkpoint)."""
    damaged = None
    try:
        result = read_result(job_dir)
    except DamagedFile as err:
        result, damaged = None, str(err)
    if result is not None:
        return Seen(result.status, result)
    if not job_dir.exists():
        return Seen("pending")
    if not claimed and is_locked(job_dir):
        return Seen("running", damaged=damaged)
    if (job_dir / LOG).exists() or (job_dir / CHECKPOINT).exists() or damaged:
        return Seen("interrupted", damaged=damaged)
    return Seen("pending")


def state(job_dir: Path, *, claimed: bool = False) -> str:
    """The job's state (see `inspect`)."""
    return inspect(job_dir, claimed=claimed).state


def read_status(job_dir: Path) -> Result | None:
    """result.json, or None: not finished, or not readable (see `inspect`)."""
    try:
        return read_result(job_dir)
    except DamagedFile:
        return None


def reset(job_dir: Path, *, fresh: bool) -> None:
    """Forget a job's outcome before running it again; `fresh` also drops its
    checkpoint and metrics so it starts from epoch 1 (--force)."""
    (job_dir / RESULT).unlink(missing_ok=True)
    if fresh:
        for name in (METRICS, PROGRESS, PREDICTIONS, STARTS):
            (job_dir / name).unlink(missing_ok=True)
        for name in (CHECKPOINT, WEIGHTS):
            shutil.rmtree(job_dir / name, ignore_errors=True)

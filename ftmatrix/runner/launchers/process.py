"""What every launcher shares about a job process.

- `Handle` / `Launcher`: the seam. A launcher turns a job folder into a running process
  and gives back a handle the runner polls, waits on and stops.
- `stop`: the one stop ladder, SIGINT, then SIGTERM, then SIGKILL, `grace` seconds apart.
- `send`: a signal to the job's process group (the job and its data workers), or to the
  job alone while it has no group yet (forked, not yet in its own session).
- `follow` / `alive`: a process the runner did not start itself (a job forked by a
  server), followed by pid. psutil keeps its start time, so a pid that the kernel has
  since handed to another process is never taken for the job.
- `log_header`: the `--- start ...` line each start of a job adds to log.txt.
- `become_job`: the preamble a forked job runs before the trainer, so that it is the
  same process a spawned one is: own session, the job's environment and folder, output
  to log.txt, default signal handlers. `redirect_output` is its output half, which a
  Slurm task (a process Slurm made) runs too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Protocol

import psutil

from ftmatrix.result import LOG


class Handle(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float) -> int | None: ...

    def signal(self, sig: int) -> None: ...

    def stop(self, *, grace: float) -> int: ...


class Launcher(Protocol):
    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Handle: ...


class FollowedHandle:
    """What a handle on a job this process did not spawn itself shares: its `pid`, the
    psutil process it is `followed` by, signals sent only while it runs, the one stop
    ladder. Subclasses give `poll` and `wait`."""

    pid: int
    followed: psutil.Process | None

    def poll(self) -> int | None:
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        if self.poll() is None:
            send(self.pid, sig, self.followed)

    def stop(self, *, grace: float) -> int:
        return stop(self, grace=grace)


def stop(handle: Handle, *, grace: float) -> int:
    """SIGINT, then SIGTERM, then SIGKILL, `grace` seconds apart (the job keeps its
    checkpoint on the first two); the exit code. `handle.wait` wakes when the job ends."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if (code := handle.poll()) is not None:
            return code
        handle.signal(sig)
        if (code := handle.wait(grace)) is not None:
            return code
    handle.signal(signal.SIGKILL)
    while (code := handle.wait(1.0)) is None:
        pass
    return code


def send(pid: int, sig: int, process: psutil.Process | None) -> None:
    """Signal the job's process group; where there is none yet (a job forked but not yet
    in its own session), the job process alone, if `process` still runs (it is never
    another process that got the pid later)."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass
    except PermissionError:  # the pid is a group of someone else's: not our job's
        return
    if process is not None and alive(process):
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def follow(pid: int) -> psutil.Process | None:
    """The process `pid`, with its start time, to follow by pid; None when it is gone."""
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def alive(process: psutil.Process | None) -> bool:
    """Whether the followed process still runs: not ended, not a zombie, and its pid
    not since reused by another process (psutil compares start times)."""
    if process is None:
        return False
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def wait_gone(process: psutil.Process | None, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a followed process (not our child) to end; True
    when it has. Wakes as soon as it ends (psutil.wait_procs); a reused pid counts as
    ended."""
    if not alive(process):
        return True
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs([process], timeout=max(timeout, 0))
    return not alive(process)


def exit_code(status: int) -> int:
    """A shell's exit code from an exit status or a negative signal number: a job
    killed by signal N -> 128 + N."""
    return status if status >= 0 else 128 - status


def log_header(job_dir: Path | str, how: str = "") -> None:
    """Add the line that opens each start of a job in log.txt."""
    tail = f" ({how})" if how else ""
    with open(Path(job_dir) / LOG, "ab") as log:
        log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')}{tail}\n".encode())


def redirect_output(job_dir: Path | str) -> None:
    """stdout and stderr to the job's log.txt (appended), stdin from /dev/null."""
    log = os.open(os.path.join(job_dir, LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def become_job(job_dir: str, env: dict[str, str]) -> None:
    """In a process forked from a server: become a job process like a spawned one."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)  # a stop from here on ends it, whatever the server did
    os.setsid()  # own process group, so the runner can signal it and its workers
    os.environ.clear()
    os.environ.update(env)  # before anything touches CUDA (CUDA_VISIBLE_DEVICES)
    os.chdir(job_dir)
    redirect_output(job_dir)

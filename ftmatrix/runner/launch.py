"""Starting and stopping one job process: the seam where other launchers plug in.

A launcher turns a job folder into a running process and gives back a handle the
runner can poll and stop. `SpawnLauncher` starts a fresh interpreter per job:
`[sys.executable, "-m", "ftmatrix.trainers", job_dir]`, no shell, in its own session
(so a terminal's Ctrl-C reaches the runner, which decides), output to log.txt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from ftmatrix.result import LOG


class Handle(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def stop(self, *, grace: float) -> int: ...


class Launcher(Protocol):
    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Handle: ...


class Process:
    """A job process and its process group."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def stop(self, *, grace: float) -> int:
        """SIGINT, then SIGTERM, then SIGKILL, `grace` seconds apart; the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.popen.poll() is not None:
                    return self.popen.returncode
                time.sleep(0.05)
        self.signal(signal.SIGKILL)
        return self.popen.wait()


class SpawnLauncher:
    """A fresh Python interpreter per job."""

    def __init__(self, module: str = "ftmatrix.trainers"):
        self.module = module

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Process:
        job_dir = job_dir.resolve()
        with open(job_dir / LOG, "ab") as log:
            log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                [sys.executable, "-m", self.module, str(job_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=job_dir,
                start_new_session=True,
                pass_fds=(lock_fd,),  # the job holds its own lock while it lives
            )
        return Process(popen)

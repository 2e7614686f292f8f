"""A fresh Python interpreter per job: `[sys.executable, "-m", "ftmatrix.trainers",
job_dir]`, no shell, in its own session (so a terminal's Ctrl-C reaches the runner,
which decides), output to log.txt. The launcher that never depends on what the parent
holds; it pays the imports (torch & co.) at every job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ftmatrix.result import LOG
from ftmatrix.runner.launchers import process


class Spawned:
    """A job process this runner started (its child) and its process group."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None after `timeout` seconds: the runner's pause between
        looks at progress.jsonl, which ends as soon as the job does."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:  # (once reaped, its pid may be someone else's)
            process.send(self.pid, sig, None)

    def stop(self, *, grace: float) -> int:
        return process.stop(self, grace=grace)


class SpawnLauncher:
    """A fresh Python interpreter per job."""

    def __init__(self, module: str = "ftmatrix.trainers"):
        self.module = module

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Spawned:
        job_dir = job_dir.resolve()
        process.log_header(job_dir)
        with open(job_dir / LOG, "ab") as log:
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
        return Spawned(popen)

"""What the runner tests share: the tiny real matrix, a runner started as a user starts
one (`python -m ftmatrix.cli run`), and small readers of job folders. Fixtures live in
conftest.py; these are plain functions and classes, imported where used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.tiny import tiny_matrix

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The tiny matrix (tests/tiny.py): every job is a real trainer process on a few hundred
# digits with a one-layer ViT, so each costs mostly its imports. 4 jobs: lr x LoRA.
MATRIX = tiny_matrix()


def ids(matrix: Path) -> list[str]:
    from ftmatrix.matrix import plan

    return [j.id for j in plan.load_plan(matrix).jobs]


def starts(matrix: Path, job_id: str) -> list[str]:
    """starts.log of a job of the tiny matrix: one line per start of its process."""
    log = matrix.parent / "runs" / "tiny" / job_id / "starts.log"
    return log.read_text().splitlines() if log.exists() else []


@dataclass
class Runner:
    """`ftmatrix run MATRIX` in a subprocess, with a launcher, pool options and
    environment that a test (or a parametrized fixture) picks."""

    launcher: str = "auto"
    pool: list[str] = field(default_factory=list)  # e.g. ["--workers", "2"]
    env: dict[str, str] = field(default_factory=dict)  # e.g. where the warm server listens

    def __call__(self, matrix: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
        command = [sys.executable, "-m", "ftmatrix.cli", "run", str(matrix)]
        return subprocess.Popen(
            [*command, "--launcher", self.launcher, *self.pool, *args],
            env={**os.environ, **self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running, not a zombie (a child of this process that is never reaped here)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def job_pids(job_dir: Path) -> list[int]:
    """The job's process if it is alive (its pid is in the last line of starts.log)."""
    log = job_dir / "starts.log"
    if not log.exists():
        return []
    pid = int(log.read_text().splitlines()[-1].rsplit("pid=", 1)[1])
    return [pid] if alive(pid) else []

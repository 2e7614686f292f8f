"""Tiny real matrices for the runner tests: every job is a real trainer process on a
few hundred digits with a one-layer ViT, so each costs mostly its imports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MATRIX = """
name: tiny
runs_dir: runs
base:
  data: {builtin: digits, limit: 300}
  model:
    name: google/vit-base-patch16-224
    pretrained: false
    image_size: 16
    config: {hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, patch_size: 8}
  train: {epochs: 3, batch_size: 64, lr: 0.003}
grid:
  train.lr: [0.003, 0.001]
  lora.enabled: [false, true]
"""


@pytest.fixture(autouse=True)
def no_warm_server(tmp_path_factory, monkeypatch):
    """No test finds a warm server it did not start (a developer's own, say): each looks
    in an empty folder unless it asks for `warm_server`."""
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", str(tmp_path_factory.mktemp("no-server")))


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(MATRIX))
    return path


def ids(matrix: Path) -> list[str]:
    from ftmatrix.matrix import plan

    return [j.id for j in plan.load_plan(matrix).jobs]


def starts(matrix: Path, job_id: str) -> list[str]:
    log = matrix.parent / "runs" / "tiny" / job_id / "starts.log"
    return log.read_text().splitlines() if log.exists() else []


LAUNCHER = "auto"  # set per test by the parametrized fixture in test_execute.py
POOL: list[str] = []  # extra run options, e.g. ["--workers", "2"] (same fixture)
ENV: dict[str, str] = {}  # extra environment, e.g. where the warm server listens


@pytest.fixture(scope="session")
def warm_server(tmp_path_factory):
    """One warm server (`ftmatrix server start`) for the tests that fork from it, in a
    folder of its own so that no other test finds it; stopped, and checked gone, after."""
    from ftmatrix.runner import server

    env = {"FTMATRIX_SERVER_DIR": str(tmp_path_factory.mktemp("server"))}
    with pytest.MonkeyPatch.context() as patch:  # only while starting: no other test sees it
        patch.setenv("FTMATRIX_SERVER_DIR", env["FTMATRIX_SERVER_DIR"])
        info, _seconds, log = server.start(idle=600)
    assert info is not None, log.read_text()
    yield env
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTMATRIX_SERVER_DIR", env["FTMATRIX_SERVER_DIR"])
        stopped, left = server.stop(), server.running()
    assert [s["pid"] for s in stopped] == [info["pid"]] and left == []
    wait_for(lambda: not _alive(info["pid"]), 10)


def _alive(pid: int) -> bool:
    """Running, not a zombie (the server is this process's child, never reaped here)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def runner(matrix: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ftmatrix.cli",
            "run",
            str(matrix),
            "--launcher",
            LAUNCHER,
            *POOL,
            *args,
        ],
        env={**os.environ, **ENV, **(env or {})},
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


def job_pids(job_dir: Path) -> list[int]:
    """The job's process if it is alive (its pid is in the last line of starts.log)."""
    log = job_dir / "starts.log"
    if not log.exists():
        return []
    pid = int(log.read_text().splitlines()[-1].rsplit("pid=", 1)[1])
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split()[2]
    except OSError:
        return []
    return [] if state == "Z" else [pid]

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

    def wait(self, timeout: float) -> int | None: ...

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

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None after `timeout` seconds: the runner's pause between
        looks at progress.jsonl, which ends as soon as the job does."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

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


# ---------------------------------------------------------------- fork server

PRELOAD = ["torch", "torchvision", "transformers", "peft", "ftmatrix.trainers.job"]


def become_job(job_dir: str, env: dict[str, str]) -> None:
    """In a process forked from a server: become a job process like a spawned one."""
    os.setsid()  # own process group, so the runner can signal it and its workers
    os.environ.clear()
    os.environ.update(env)  # before anything touches CUDA (CUDA_VISIBLE_DEVICES)
    os.chdir(job_dir)
    log = os.open(os.path.join(job_dir, LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _forked_job(job_dir: str, env: dict[str, str], lock) -> None:
    """Runs in a child of the fork server."""
    lock.detach()  # the runner's locked file: held until this process ends
    become_job(job_dir, env)
    from ftmatrix.trainers.job import main

    code = main(job_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ForkedProcess(Process):
    """A job forked from the server: same handle as a spawned process."""

    def __init__(self, process):
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        code = self.process.exitcode
        if code is None:
            return None
        return code if code >= 0 else 128 - code  # killed by signal N -> 128 + N

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def wait(self, timeout: float) -> int | None:
        self.process.join(timeout)  # wakes on the job's exit, not at the next tick
        return self.poll()

    def stop(self, *, grace: float) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.signal(sig)
            self.process.join(grace)
            if self.process.exitcode is not None:
                return self.poll()
        self.signal(signal.SIGKILL)
        self.process.join()
        return self.poll()


class ForkServerLauncher:
    """Jobs forked from a server that imported torch, transformers and peft once.

    Each job is still its own process (own memory, own CUDA context: the server never
    initialises CUDA), in its own process group, with output in log.txt. Start it early
    with `warm()` so the imports overlap with validation and planning."""

    def __init__(self):
        import atexit
        import multiprocessing

        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        atexit.unregister(_stop_server)  # once, however many launchers
        atexit.register(_stop_server)

    def warm(self) -> None:
        import threading
        from multiprocessing import forkserver

        threading.Thread(target=forkserver.ensure_running, daemon=True).start()

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> ForkedProcess:
        from multiprocessing.reduction import DupFd

        job_dir = job_dir.resolve()
        with open(job_dir / LOG, "ab") as log:
            log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')} (forked)\n".encode())
        # DupFd hands the locked file itself to the child (SCM_RIGHTS through the server)
        process = self.ctx.Process(
            target=_forked_job, args=(str(job_dir), dict(env), DupFd(lock_fd)), daemon=False
        )
        process.start()
        return ForkedProcess(process)


def _stop_server() -> None:
    """At the runner's exit, end the fork server at once (SIGTERM, which it does not
    handle). Left alone it notices the runner is gone and exits like any interpreter
    that imported torch, transformers and peft: about 2 s of tearing down modules on a
    core, holding the runner's stdout open all the while (`ftmatrix run | tee log` waits
    for it). It has nothing to save, and its jobs have ended by now (a job that has
    not is in its own session, which this does not touch). The server is this
    process's child and is never reaped here, so its pid cannot have been reused."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)  # None: never started
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


def choose(name: str = "auto"):
    """The launcher asked for; auto: a warm server where one runs for this code and
    setting (`ftmatrix server start`), else the fork server where fork is safe, else
    spawn. `server` without a warm server is a LookupError.

    auto takes spawn off Linux (fork without exec is unsafe or unsupported on macOS and
    Windows) and in a parent that has already initialised CUDA (a notebook or script
    calling the runner after touching the GPU): a CUDA context cannot cross a fork, and
    a fresh interpreter per job is the one launcher that never depends on what the
    parent holds. An explicit `forkserver` is honoured as asked."""
    if name == "spawn":
        return SpawnLauncher()
    if name == "auto" and (not sys.platform.startswith("linux") or cuda_initialised()):
        return SpawnLauncher()
    if name in ("auto", "server"):
        from ftmatrix.runner import server

        if warm := server.connect():
            return warm
        if name == "server":
            raise LookupError(
                "no warm server runs for this code and setting; start one with "
                "`ftmatrix server start` (it must see the same HF_*/TORCH* variables)"
            )
    return ForkServerLauncher()


def cuda_initialised() -> bool:
    """Whether this process has initialised CUDA; never imports torch to find out (a
    parent that has not imported it cannot have initialised CUDA)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return bool(cuda is not None and cuda.is_initialized())


def gpu_indices() -> list[str]:
    """The GPUs this machine has, as CUDA_VISIBLE_DEVICES indices, read with nvidia-smi
    (never by initialising CUDA here: the runner stays torch-free). Where the runner
    itself was given CUDA_VISIBLE_DEVICES, those."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]

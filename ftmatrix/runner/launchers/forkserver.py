"""Jobs forked from a fork server this run starts (multiprocessing's "forkserver").

The server imports torch, torchvision, transformers, peft and the trainer once (while
the matrix is validated, with `warm()`), then forks each job: about 0.1 s a job instead
of a fresh interpreter's imports. Each job is still its own process (own memory, own
CUDA context: the server never initialises CUDA), in its own session, with output in
log.txt and the runner's claim lock held for its life.

multiprocessing has no public way to ask for its fork server's pid, which the runner
needs to end the server at exit; `server_pid` is the one place that reads its
internals, and tests/runner/test_launchers.py fails loudly when a Python changes them.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing import forkserver
from multiprocessing.reduction import DupFd
from pathlib import Path

from ftmatrix.runner.launchers import process

# Imported once by the server (and by the warm server); `ftmatrix.trainers.job` is the
# entry every job calls: an import path older servers resolve too, so it stays.
# `ftmatrix.trainers` first: it quiets a library's import-time warning (see there).
PRELOAD = ["ftmatrix.trainers", "torch", "torchvision", "transformers", "peft"]
PRELOAD += ["ftmatrix.trainers.job"]


def forked_job(job_dir: str, env: dict[str, str], lock) -> None:
    """Runs in a child of the fork server: the job."""
    lock.detach()  # the runner's locked file: held until this process ends
    process.become_job(job_dir, env)
    from ftmatrix.trainers.job import main

    code = main(job_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def checked_models(payload: str, conn) -> None:
    """Runs in a child of the fork server: pre-flight's model check (a JSON list of job
    configs -> a list of problem lists, as `python -m ftmatrix.trainers.architecture`),
    sent back through `conn`; its output goes nowhere (the runner prints the problems)."""
    try:
        quiet()
        from ftmatrix.trainers.architecture import check_all

        conn.send(("ok", check_all(payload)))
    except BaseException as err:  # the runner falls back to a process of its own
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        os._exit(0)


def quiet() -> None:
    """This process's output goes nowhere (a model check's: the runner prints what it
    found, not what the libraries say while building the models)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


class Forked(process.FollowedHandle):
    """A job forked from the fork server: the same handle as a spawned process."""

    def __init__(self, child: multiprocessing.process.BaseProcess):
        self.child = child
        self.pid = child.pid
        self.followed = process.follow(child.pid)

    def poll(self) -> int | None:
        code = self.child.exitcode
        return None if code is None else process.exit_code(code)

    def wait(self, timeout: float) -> int | None:
        self.child.join(timeout)  # wakes on the job's exit, not at the next tick
        return self.poll()


class ForkServerLauncher:
    """Jobs forked from a server that imported torch, transformers and peft once.
    Start it early with `warm()` so the imports overlap with validation and planning."""

    def __init__(self):
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(PRELOAD)
        atexit.unregister(stop_server)  # once, however many launchers
        atexit.register(stop_server)

    def warm(self) -> None:
        threading.Thread(target=forkserver.ensure_running, daemon=True).start()

    def check_models(self, payload: str, *, timeout: float) -> list:
        """Pre-flight's model check in a child of the server, which has imported torch
        and transformers already: a fraction of a second where a fresh interpreter
        takes several. Raises when it cannot answer (the caller then asks a process of
        its own)."""
        receive, send = self.ctx.Pipe(duplex=False)
        child = self.ctx.Process(target=checked_models, args=(payload, send), daemon=True)
        child.start()
        send.close()
        try:
            if not receive.poll(timeout):
                child.kill()
                raise TimeoutError(f"no answer in {timeout:g} s")
            status, value = receive.recv()  # EOFError: the child died first
        finally:
            receive.close()
            child.join(5)
        if status != "ok":
            raise RuntimeError(value)
        return value

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Forked:
        job_dir = job_dir.resolve()
        process.log_header(job_dir, "forked")
        # DupFd hands the locked file itself to the child (SCM_RIGHTS through the server)
        child = self.ctx.Process(
            target=forked_job, args=(str(job_dir), dict(env), DupFd(lock_fd)), daemon=False
        )
        child.start()
        return Forked(child)


def server_pid() -> int | None:
    """The pid of this process's fork server; None while none has started.

    Reads multiprocessing's internals (there is no public way to ask): where a Python
    changes them, this raises instead of guessing."""
    server = getattr(forkserver, "_forkserver", None)
    if server is None or not hasattr(server, "_forkserver_pid"):
        raise RuntimeError(
            f"multiprocessing.forkserver of Python {sys.version.split()[0]} no longer has "
            "_forkserver._forkserver_pid: ftmatrix.runner.launchers.forkserver.server_pid "
            "needs another way to find the fork server"
        )
    return server._forkserver_pid


def stop_server() -> None:
    """At the runner's exit, end the fork server at once (SIGTERM, which it does not
    handle). Left alone it notices the runner is gone and exits like any interpreter
    that imported torch, transformers and peft: about 2 s of tearing down modules on a
    core, holding the runner's stdout open all the while (`ftmatrix run | tee log` waits
    for it). It has nothing to save, and its jobs have ended by now (a job that has
    not is in its own session, which this does not touch). The server is this
    process's child and is never reaped here, so its pid cannot have been reused."""
    try:
        pid = server_pid()
    except RuntimeError:  # (the test of server_pid says so; here, only 2 s are lost)
        return
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)

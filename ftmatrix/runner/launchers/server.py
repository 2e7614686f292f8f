"""The warm job server process (`ftmatrix server start` runs
`python -m ftmatrix.runner.launchers.server --idle SECONDS`): import once, listen on the
socket named by the code's fingerprint, fork the jobs runners send, report each exit;
answer pre-flight's model checks from a forked child.
See launchers/warm.py for the protocol and the runner's side."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from ftmatrix.runner.launchers import process
from ftmatrix.runner.launchers.forkserver import PRELOAD, quiet
from ftmatrix.runner.launchers.warm import IDLE_MINUTES, MESSAGE, address, fingerprint


@dataclass
class _Server:
    """What the loop holds: the listening socket, the SIGCHLD wakeup pair, the jobs
    running (pid -> the connection their runner waits on), why it stops."""

    listener: socket.socket
    exited: socket.socket  # readable when a signal arrived (a job ended)
    wake: socket.socket  # the signal wakeup fd's end
    status: dict  # the ping reply, less the job count
    jobs: dict[int, socket.socket] = field(default_factory=dict)
    stopping: list[int] = field(default_factory=list)  # 0: asked; else the signal


def serve(*, idle: float) -> int:
    """Import, listen, fork jobs until `idle` seconds pass with no job running."""
    fp = fingerprint()  # before the imports: what the runner computes, unchanged
    path = address(fp)
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115  (held for the server's life)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"a server for {fp} is already running", flush=True)
        return 0
    began = time.time()
    for name in PRELOAD:  # never CUDA: each forked job makes its own context
        importlib.import_module(name)
    imported = time.time() - began
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    listener.bind(str(temp))
    listener.listen(64)
    os.replace(temp, path)  # a runner finds the socket only once the server is warm
    print(f"serving {path} (pid {os.getpid()}), imports took {imported:.1f} s", flush=True)

    # a job's exit wakes the loop at once (its runner is waiting to start the next job)
    exited, wake = socket.socketpair()
    exited.setblocking(False)
    wake.setblocking(False)
    status = {"pid": os.getpid(), "fingerprint": fp, "started": time.time()}
    server = _Server(listener, exited, wake, status)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: server.stopping.append(signum))
    signal.signal(signal.SIGCHLD, lambda *_: None)  # (the wakeup fd needs a handler)
    signal.set_wakeup_fd(wake.fileno())
    try:
        _loop(server, idle=idle)
    finally:
        path.unlink(missing_ok=True)  # (the lock keeps any other server of this fp out)
        listener.close()
        for conn in server.jobs.values():
            conn.close()  # their runners follow the jobs by pid from here
    return 0


def _loop(server: _Server, *, idle: float) -> None:
    selector = selectors.DefaultSelector()
    selector.register(server.listener, selectors.EVENT_READ)
    selector.register(server.exited, selectors.EVENT_READ)
    last_busy = time.monotonic()
    while not server.stopping:
        for key, _events in selector.select(timeout=0.5):
            if key.fileobj is server.exited:
                with contextlib.suppress(BlockingIOError):
                    server.exited.recv(4096)
                continue
            with contextlib.suppress(BlockingIOError, InterruptedError):
                conn, _ = server.listener.accept()
                _answer(conn, server=server, selector=selector)
        _reap(server.jobs)
        if server.jobs:
            last_busy = time.monotonic()
        elif time.monotonic() - last_busy > idle:
            print(f"idle for {idle:g} s: stopping", flush=True)
            return
    why = server.stopping[0]
    print(f"stopping ({'asked' if why == 0 else f'signal {why}'})")


def _answer(conn: socket.socket, *, server: _Server, selector) -> None:
    try:
        conn.settimeout(5)
        data, fds, _flags, _addr = socket.recv_fds(conn, MESSAGE, 4)
        message = json.loads(data)
    except (OSError, ValueError):
        conn.close()
        return
    if message.get("ping"):
        conn.send(json.dumps({**server.status, "jobs": len(server.jobs)}).encode())
        conn.close()
        return
    if message.get("stop"):
        conn.send(json.dumps({"stopping": True}).encode())
        conn.close()
        server.stopping.append(0)
        return
    if "models" in message:
        if os.fork() == 0:
            _models(message["models"], conn=conn, server=server, selector=selector)
        conn.close()  # the child answers; reaped like a job, but no runner waits on it
        return
    pid = os.fork()
    if pid == 0:
        _job(message, conn=conn, server=server, selector=selector)  # never returns
    for fd in fds:
        os.close(fd)  # the lock is the job's now
    try:
        conn.send(json.dumps({"pid": pid}).encode())
    except OSError:
        conn.close()  # the runner is gone; the job runs on and keeps its lock
        return
    conn.settimeout(None)
    server.jobs[pid] = conn


def _job(message: dict, *, conn: socket.socket, server: _Server, selector) -> None:
    """In the forked child: drop the server's sockets and handlers, become the job."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        process.become_job(message["job_dir"], message["env"])  # default handlers first
        selector.close()
        for sock in (server.listener, server.exited, server.wake, conn, *server.jobs.values()):
            sock.close()
        from ftmatrix.trainers.job import main

        code = main(message["job_dir"])
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _models(payload: str, *, conn: socket.socket, server: _Server, selector) -> None:
    """In a forked child: pre-flight's model check, answered on `conn`."""
    reply: dict = {"error": "no answer"}
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        selector.close()
        for sock in (server.listener, server.exited, server.wake, *server.jobs.values()):
            sock.close()
        quiet()
        from ftmatrix.trainers.architecture import check_all

        reply = {"ok": check_all(payload)}
    except BaseException as err:  # the runner checks the models in a process of its own
        reply = {"error": f"{type(err).__name__}: {err}"}
    finally:
        data = json.dumps(reply).encode()
        if len(data) > MESSAGE:
            data = json.dumps({"error": f"an answer of {len(data)} bytes"}).encode()
        with contextlib.suppress(OSError):
            conn.send(data)
        os._exit(0)


def _reap(jobs: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = jobs.pop(pid, None)
        if conn is not None:
            code = process.exit_code(os.waitstatus_to_exitcode(status))
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"exit": code}).encode())
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="ftmatrix's warm job server")
    parser.add_argument("--idle", type=float, default=IDLE_MINUTES * 60, help="seconds")
    code = serve(idle=parser.parse_args().idle)
    sys.stdout.flush()
    os._exit(code)  # no 2 s of tearing torch down: nothing is left to save


if __name__ == "__main__":
    main()

"""A warm job server: one process that has imported torch, torchvision, transformers,
peft and the trainer once, and forks the jobs of every `ftmatrix run` started while it
is up, so a run pays no import at all (`ftmatrix server start`).

A job forked here is the job process the runner's own fork server makes
(`launch.become_job`): its own session, memory and CUDA context (the server never
initialises CUDA), output in log.txt, the runner's claim lock held for its life. Only
its parent differs, so its exit status travels back over the connection that asked
for it.

A runner uses a server only where the server runs the same code in the same setting:
the socket is named by a fingerprint of the interpreter, the installed torch,
torchvision, transformers and peft, every ftmatrix source file (size and mtime) and
the environment variables those libraries read when imported (HF_*, TORCH*, ...).
Edit the code, upgrade torch or change such a variable, and runs fall back to their own
fork server until a server for the new fingerprint is started. A server exits after
`idle` seconds with no job running, or on `ftmatrix server stop`; jobs it forked run
on (they are in their own sessions) and their runners follow them by pid.

One connection per request; SOCK_SEQPACKET keeps each JSON message whole:

    {"job_dir": ..., "env": {...}} + the lock fd  ->  {"pid": N}, later {"exit": CODE}
    {"ping": true}                                ->  {"pid": ..., "jobs": n, ...}
    {"stop": true}                                ->  {"stopping": true}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import select
import selectors
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from ftmatrix.result import LOG
from ftmatrix.runner.launch import PRELOAD, ForkServerLauncher, Process, become_job

IDLE_MINUTES = 30
# read when those libraries are imported, so a server must have been started with the
# same values as the runner (CUDA_VISIBLE_DEVICES is set per job, read at CUDA init)
ENV_PREFIXES = (
    "HF_",
    "HUGGINGFACE",
    "TRANSFORMERS",
    "TORCH",
    "PYTORCH",
    "TOKENIZERS",
    "OMP_",
    "MKL_",
    "PYTHON",
    "CUDA_",
    "NCCL_",
    "LD_",
)
MESSAGE = 1 << 20  # the largest request (a job's environment), in bytes


def folder() -> Path:
    """Where the servers' sockets live: $FTMATRIX_SERVER_DIR, else a folder of this
    user's under $XDG_RUNTIME_DIR or the temp folder, readable by this user only."""
    given = os.environ.get("FTMATRIX_SERVER_DIR")
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    path = Path(given) if given else base / f"ftmatrix-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} must belong to this user alone (mode 700)")
    return path


def fingerprint() -> str:
    """What a forked job inherits from its server and cannot change afterwards."""
    digest = hashlib.sha256(f"{sys.executable}\n{sys.version}\n{PRELOAD}\n".encode())
    for name in ("torch", "torchvision", "transformers", "peft"):
        try:
            spec = importlib.util.find_spec(name)  # a top-level name: found, not imported
        except (ImportError, ValueError):  # (ValueError: a module without a spec)
            spec = None
        origin = Path(spec.origin) if spec and spec.origin else None
        stamp = origin.stat().st_mtime_ns if origin else None
        digest.update(f"{name}:{origin}:{stamp}\n".encode())
    package = Path(__file__).resolve().parent.parent
    digest.update(f"{package}\n".encode())
    for path in sorted(package.rglob("*.py")):
        info = path.stat()
        digest.update(f"{path.relative_to(package)}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    for key in sorted(os.environ):
        if key.startswith(ENV_PREFIXES) and key != "CUDA_VISIBLE_DEVICES":
            digest.update(f"{key}={os.environ[key]}\n".encode())
    return digest.hexdigest()[:16]


def address(fp: str | None = None) -> Path:
    return folder() / f"{fp or fingerprint()}.sock"


def request(path: Path, message: dict, *, timeout: float = 5.0) -> dict:
    """One request and its first reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.send(json.dumps(message).encode())
        return json.loads(conn.recv(MESSAGE))


def ping(path: Path | None = None) -> dict | None:
    """The server's status where one for this code and setting answers, else None."""
    path = path or address()
    if not path.exists():
        return None
    try:
        return request(path, {"ping": True}, timeout=2.0)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the runner's side


class ServedProcess(Process):
    """A job forked by the server: the same handle as a spawned process."""

    def __init__(self, conn: socket.socket, pid: int):
        self.conn = conn
        self.pid = pid
        self.code: int | None = None
        self.orphaned = False  # the server went away before the job ended

    def _read(self, timeout: float) -> None:
        if self.code is not None or self.orphaned:
            return
        if not select.select([self.conn], [], [], max(timeout, 0))[0]:
            return
        try:
            data = self.conn.recv(MESSAGE)
        except OSError:
            data = b""
        if data:
            self.code = json.loads(data)["exit"]
        else:
            self.orphaned = True
        self.conn.close()

    def poll(self) -> int | None:
        self._read(0)
        if self.orphaned and self.code is None and not _alive(self.pid):
            # its exit status went with the server; result.json says how it ended
            self.code = 255
        return self.code

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def wait(self, timeout: float) -> int | None:
        if self.orphaned:
            deadline = time.monotonic() + timeout
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            return self.code
        self._read(timeout)  # wakes when the server reports the exit
        return self.poll()

    def stop(self, *, grace: float) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.wait(min(0.1, grace)) is not None:
                    return self.code
        self.signal(signal.SIGKILL)
        while self.wait(0.1) is None:
            pass
        return self.code


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ServerLauncher:
    """Jobs forked by a warm server (see the module's doc). Should the server stop
    during the run (`ftmatrix server stop`, say), the run's later jobs go to a fork
    server of its own."""

    def __init__(self, path: Path, info: dict):
        self.path = path
        self.info = info  # the ping reply: pid, started, jobs
        self.fallback: ForkServerLauncher | None = None

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Process:
        job_dir = job_dir.resolve()
        if self.fallback is None:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                conn.connect(str(self.path))
            except OSError:  # gone before this job was sent: nothing of it started
                conn.close()
                self.fallback = ForkServerLauncher()
            else:
                return self._send(conn, job_dir, env=env, lock_fd=lock_fd)
        return self.fallback.start(job_dir, env=env, lock_fd=lock_fd)

    def _send(self, conn, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> ServedProcess:
        with open(job_dir / LOG, "ab") as log:
            log.write(f"--- start {time.strftime('%Y-%m-%d %H:%M:%S')} (warm server)\n".encode())
        try:
            conn.settimeout(30)
            message = json.dumps({"job_dir": str(job_dir), "env": dict(env)}).encode()
            socket.send_fds(conn, [message], [lock_fd])
            reply = json.loads(conn.recv(MESSAGE))
            conn.settimeout(None)
        except BaseException:
            conn.close()
            raise
        return ServedProcess(conn, reply["pid"])


def connect() -> ServerLauncher | None:
    """A launcher on the warm server for this code and setting, if one answers."""
    try:
        path = address()
    except OSError:  # no folder of ours to look in
        return None
    info = ping(path)
    return ServerLauncher(path, info) if info else None


# ---------------------------------------------------------------- the server


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

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    # a job's exit wakes the loop at once (its runner is waiting to start the next job)
    exited, wake = socket.socketpair()
    exited.setblocking(False)
    wake.setblocking(False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # (the wakeup fd needs a handler)
    signal.set_wakeup_fd(wake.fileno())
    jobs: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(exited, selectors.EVENT_READ)
    last_busy = time.monotonic()
    started = time.time()
    try:
        while not stopping:
            for key, _events in selector.select(timeout=0.5):
                if key.fileobj is exited:
                    with contextlib.suppress(BlockingIOError):
                        exited.recv(4096)
                    continue
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    conn, _ = listener.accept()
                    _answer(
                        conn,
                        listener=listener,
                        selector=selector,
                        jobs=jobs,
                        status={"pid": os.getpid(), "fingerprint": fp, "started": started},
                        stopping=stopping,
                        exited=exited,
                        wake=wake,
                    )
            _reap(jobs)
            if jobs:
                last_busy = time.monotonic()
            elif time.monotonic() - last_busy > idle:
                print(f"idle for {idle:g} s: stopping", flush=True)
                break
        if stopping:
            print(f"stopping ({'asked' if stopping[0] == 0 else f'signal {stopping[0]}'})")
    finally:
        path.unlink(missing_ok=True)  # (the lock keeps any other server of this fp out)
        listener.close()
        for conn in jobs.values():
            conn.close()  # their runners follow the jobs by pid from here
    return 0


def _answer(conn, *, listener, selector, jobs, status, stopping, exited, wake) -> None:
    try:
        conn.settimeout(5)
        data, fds, _flags, _addr = socket.recv_fds(conn, MESSAGE, 4)
        message = json.loads(data)
    except (OSError, ValueError):
        conn.close()
        return
    if message.get("ping"):
        conn.send(json.dumps({**status, "jobs": len(jobs)}).encode())
        conn.close()
        return
    if message.get("stop"):
        conn.send(json.dumps({"stopping": True}).encode())
        conn.close()
        stopping.append(0)
        return
    pid = os.fork()
    if pid == 0:  # the job
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            selector.close()
            listener.close()
            exited.close()
            wake.close()
            for other in jobs.values():
                other.close()
            conn.close()
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            from ftmatrix.trainers.job import main

            become_job(message["job_dir"], message["env"])
            code = main(message["job_dir"])
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)  # the lock is the job's now
    try:
        conn.send(json.dumps({"pid": pid}).encode())
    except OSError:
        conn.close()  # the runner is gone; the job runs on and keeps its lock
        return
    conn.settimeout(None)
    jobs[pid] = conn


def _reap(jobs: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        conn = jobs.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"exit": code if code >= 0 else 128 - code}).encode())
            conn.close()


def start(*, idle: float, timeout: float = 300.0) -> tuple[dict | None, float, Path]:
    """Start a server in the background (its own session, output in a log beside its
    socket) and wait until it answers: (its ping reply or None, seconds, log path)."""
    import subprocess

    fp = fingerprint()
    log_path = folder() / f"{fp}.log"
    began = time.monotonic()
    with open(log_path, "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "ftmatrix.runner.server", "--idle", str(idle)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command and its terminal
        )
    path = address(fp)
    while time.monotonic() - began < timeout:
        if info := ping(path):
            return info, time.monotonic() - began, log_path
        time.sleep(0.1)
    return None, time.monotonic() - began, log_path


def running() -> list[tuple[Path, dict]]:
    """Every server of this user that answers, for any code or setting."""
    return [(p, info) for p in sorted(folder().glob("*.sock")) if (info := ping(p))]


def stop() -> list[dict]:
    """Stop every server of this user (old code's too); their ping replies."""
    stopped = []
    for path, info in running():
        with contextlib.suppress(OSError, ValueError):
            request(path, {"stop": True})
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped.append(info)
    return stopped


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="ftmatrix's warm job server")
    parser.add_argument("--idle", type=float, default=IDLE_MINUTES * 60, help="seconds")
    code = serve(idle=parser.parse_args().idle)
    sys.stdout.flush()
    os._exit(code)  # no 2 s of tearing torch down: nothing is left to save

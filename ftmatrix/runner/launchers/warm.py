"""The warm job server, the runner's side: find one, start one, stop them, and the
launcher that has it fork a run's jobs (`ftmatrix server start|stop|status`).

The server (launchers/server.py) is one process that has imported torch, torchvision,
transformers, peft and the trainer once, and forks the jobs of every `ftmatrix run`
started while it is up, so a run pays no import at all. A job forked there is the job
process the runner's own fork server makes (`process.become_job`): its own session,
memory and CUDA context (the server never initialises CUDA), output in log.txt, the
runner's claim lock held for its life. Only its parent differs, so its exit status
travels back over the connection that asked for it.

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
    {"models": JSON list of job configs}          ->  {"ok": problems} or {"error": ...}

The last is pre-flight's model check (runner/preflight.py), in a forked child.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from ftmatrix.runner.launchers import process
from ftmatrix.runner.launchers.forkserver import PRELOAD, ForkServerLauncher

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
SERVER_MODULE = "ftmatrix.runner.launchers.server"


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
    package = Path(__file__).resolve().parents[2]  # ftmatrix/
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


class Served(process.FollowedHandle):
    """A job forked by the server: the same handle as a spawned process. Its exit code
    comes over the connection; should the server go away first, the job is followed by
    pid (and start time: a pid reused by another process is not the job)."""

    def __init__(self, conn: socket.socket, pid: int, followed: psutil.Process | None):
        self.conn = conn
        self.pid = pid
        self.followed = followed  # None: it was gone before it could be looked at
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
        if self.orphaned and self.code is None and not process.alive(self.followed):
            # its exit status went with the server; result.json says how it ended
            self.code = 255
        return self.code

    def wait(self, timeout: float) -> int | None:
        if not self.orphaned:
            self._read(timeout)  # wakes when the server reports the exit
        if self.orphaned and self.code is None:
            process.wait_gone(self.followed, timeout)
        return self.poll()


class ServerLauncher:
    """Jobs forked by a warm server (see the module's doc). Should the server stop
    during the run (`ftmatrix server stop`, say), the run's later jobs go to a fork
    server of its own."""

    def __init__(self, path: Path, info: dict):
        self.path = path
        self.info = info  # the ping reply: pid, started, jobs
        self.fallback: ForkServerLauncher | None = None

    def start(self, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> process.Handle:
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

    def check_models(self, payload: str, *, timeout: float) -> list:
        """Pre-flight's model check in a child of the server (see ForkServerLauncher's);
        raises when the server cannot answer."""
        if self.fallback is not None:
            return self.fallback.check_models(payload, timeout=timeout)
        reply = request(self.path, {"models": payload}, timeout=timeout)
        if "ok" not in reply:
            raise RuntimeError(reply.get("error", f"no answer: {reply}"))
        return reply["ok"]

    def _send(self, conn, job_dir: Path, *, env: dict[str, str], lock_fd: int) -> Served:
        process.log_header(job_dir, "warm server")
        try:
            conn.settimeout(30)
            message = json.dumps({"job_dir": str(job_dir), "env": dict(env)}).encode()
            socket.send_fds(conn, [message], [lock_fd])
            reply = json.loads(conn.recv(MESSAGE))
            conn.settimeout(None)
        except BaseException:
            conn.close()
            raise
        # looked at at once, while the pid is surely the job's (a job already over
        # and reaped is not followed: the server sends its exit on the connection)
        return Served(conn, reply["pid"], process.follow(reply["pid"]))


def connect() -> ServerLauncher | None:
    """A launcher on the warm server for this code and setting, if one answers."""
    try:
        path = address()
    except OSError:  # no folder of ours to look in
        return None
    info = ping(path)
    return ServerLauncher(path, info) if info else None


def start(*, idle: float, timeout: float = 300.0) -> tuple[dict | None, float, Path]:
    """Start a server in the background (its own session, output in a log beside its
    socket) and wait until it answers: (its ping reply or None, seconds, log path)."""
    fp = fingerprint()
    log_path = folder() / f"{fp}.log"
    began = time.monotonic()
    with open(log_path, "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--idle", str(idle)],
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

"""The reporting API for your own training script or function: `from ftmatrix import job`.

A script job (`script:` in the matrix) runs as a child of the job process, which reads
its stdout; a function job (`function:`) is called inside the job process. Either way:

    cfg = job.config()                  # the job's config.json as a dict (params too)
    state = job.checkpoint_dir() / "state.pt"
    start = load(state) + 1 if job.resuming() else 1
    for epoch in range(start, cfg["train"]["epochs"] + 1):
        ...train, save to state...
        job.log_epoch(epoch, val_loss=..., val_accuracy=...)   # metrics.jsonl, pruning
        if job.should_stop():           # Ctrl-C, --timeout, or the search's pruner
            return
    job.log_test(accuracy=..., loss=...)  # result.json's test metrics

A script in any language reports the same with JSON lines on stdout:
`{"ftmatrix": "epoch", "epoch": 1, "val_loss": 0.4}` and
`{"ftmatrix": "test", "accuracy": 0.9}`; every other line is just log. The job
process gives the script FTMATRIX_JOB_DIR, FTMATRIX_CONFIG (config.json),
FTMATRIX_CHECKPOINT_DIR (kept across a SIGKILL and a rerun) and FTMATRIX_RESUMING
("1" when that folder holds something from an earlier start).

Standard library only: a script pays nothing for importing it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

JOB_DIR = "FTMATRIX_JOB_DIR"
CONFIG = "FTMATRIX_CONFIG"
CHECKPOINT_DIR = "FTMATRIX_CHECKPOINT_DIR"
RESUMING = "FTMATRIX_RESUMING"
CODE_DIR = "FTMATRIX_CODE_DIR"  # the matrix file's folder: a script's default cwd
TAG = "ftmatrix"  # the key that marks a stdout line as a report

# Set by the job process while it calls a function job: reports go straight to it.
sink: Callable[[dict[str, Any]], None] | None = None
_stop: list[int] = []  # the signal that asked the job to stop, once one has
_handlers = False


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"{name} is not set: run this as an ftmatrix job (script: or function:)")
    return value


def config() -> dict[str, Any]:
    """The job's resolved config (config.json) as plain data; `params` holds your own
    settings. Also makes Ctrl-C and the runner's stop a request (`should_stop`)."""
    _watch_signals()
    return json.loads(Path(_env(CONFIG)).read_text(encoding="utf-8"))


def params() -> dict[str, Any]:
    """The job's `params:` section."""
    return config().get("params") or {}


def job_dir() -> Path:
    return Path(_env(JOB_DIR))


def checkpoint_dir() -> Path:
    """Where to save what a resume needs; the same folder on every start of the job."""
    path = Path(_env(CHECKPOINT_DIR))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resuming() -> bool:
    """Whether this start follows an earlier one that left a checkpoint."""
    return os.environ.get(RESUMING) == "1"


def log_epoch(epoch: int, **metrics: float) -> None:
    """One finished epoch's metrics (1-based epoch). Names like val_loss, val_accuracy,
    train_loss fill the standard columns; others are kept beside them."""
    _emit({TAG: "epoch", "epoch": int(epoch), **metrics})


def log_test(**metrics: float) -> None:
    """The final (test) metrics: accuracy, loss, f1_macro, ... or your own names."""
    _emit({TAG: "test", **metrics})


def should_stop() -> bool:
    """True once the job was asked to stop (Ctrl-C, timeout, the search's pruner): save
    what a resume needs and return. Its first call starts listening for the request."""
    _watch_signals()
    return bool(_stop)


def request_stop(signum: int) -> None:
    """Mark the job as asked to stop (the job process does this for a function job)."""
    _stop.append(signum)


def _emit(line: dict[str, Any]) -> None:
    if sink is not None:
        sink(line)
        return
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _watch_signals() -> None:
    global _handlers
    if _handlers or sink is not None or threading.current_thread() is not threading.main_thread():
        return  # a function job: the job process owns the signals and calls request_stop
    _handlers = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: request_stop(signum))

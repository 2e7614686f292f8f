"""A job that runs your own code: a `script:` command or a `function:` (custom.py).

`trainers/job.py`'s `main` hands such a job here, so every launcher (fork server, warm
server, spawn, pool, Slurm) runs it as it runs the built-in trainer. This process:

1. gives the code FTMATRIX_JOB_DIR, FTMATRIX_CONFIG, FTMATRIX_CHECKPOINT_DIR and
   FTMATRIX_RESUMING (ftmatrix/job.py documents them);
2. runs the command without a shell (each argument one argv item, placeholders filled
   from config.json) and reads its stdout line by line: a JSON object with
   "ftmatrix": "epoch" or "test" is a report, anything else is log (echoed to log.txt);
   or calls the function inside this process with the config, reports arriving
   through `ftmatrix.job`;
3. turns the reports into the standard files: a metrics.jsonl line and a progress
   "epoch" event per epoch (so status, pruning and reports read it as any job), and
   result.json at the end: done, or failed with an error class (oom from the output,
   crash with the exit code or signal) and the log tail.

SIGINT/SIGTERM (Ctrl-C, --timeout, a pruner) reach the script through the process
group; this process waits for it and exits 128+signal without result.json, so the job
is interrupted and the next run starts it again with FTMATRIX_RESUMING=1.
No torch here: a script job's process imports only what its launcher already had.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ftmatrix import custom
from ftmatrix import job as api
from ftmatrix.result import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    PROGRESS,
    RESULT,
    STARTS,
    EpochMetrics,
    Result,
    TestMetrics,
    log_tail,
    write_atomic,
    write_json_atomic,
)

CODE_DIR = api.CODE_DIR  # the matrix file's folder (set by the runner)
OOM_MARKERS = ("out of memory", "memoryerror", "cuda error: out of memory")


class Recorder:
    """What the code reported, written as the standard files as it arrives."""

    def __init__(self, job_dir: Path, config: dict[str, Any]):
        self.job_dir = job_dir
        self.lr = (config.get("train") or {}).get("lr")
        self.rows = _read_rows(job_dir / METRICS)  # kept from earlier starts
        self.test: dict[str, Any] | None = None
        self.last = time.time()
        self.lock = threading.Lock()

    def take(self, line: dict[str, Any]) -> None:
        kind = line.get(api.TAG)
        fields = {k: v for k, v in line.items() if k != api.TAG}
        with self.lock:
            if kind == "epoch":
                self._epoch(fields)
            elif kind == "test":
                self.test = {**(self.test or {}), **fields}

    def _epoch(self, fields: dict[str, Any]) -> None:
        now = time.time()
        fields.setdefault("seconds", now - self.last)
        fields.setdefault("lr", self.lr)
        self.last = now
        try:
            row = EpochMetrics.model_validate(fields).model_dump(mode="json")
        except ValueError as err:
            print(f"ftmatrix: epoch report ignored ({err.__class__.__name__}): {fields}")
            return
        # a start that resumes from an older checkpoint reports those epochs again
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        text = "".join(json.dumps(r) + "\n" for r in self.rows)
        write_atomic(self.job_dir / METRICS, text.encode())
        _emit(self.job_dir, "epoch", **row)


def handles(job_dir: Path) -> bool:
    """Whether the job in `job_dir` runs its own code (config.json names a script or a
    function); an unreadable config is the built-in trainer's to report."""
    try:
        return custom.is_own(json.loads((job_dir / CONFIG).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def main(job_dir: Path) -> int:
    """Run the job's own code; the exit status (0 done, 1 failed, 128+signal)."""
    started = time.time()
    config = json.loads((job_dir / CONFIG).read_text(encoding="utf-8"))
    checkpoint = job_dir / CHECKPOINT
    resuming = checkpoint.is_dir() and any(checkpoint.iterdir())
    checkpoint.mkdir(exist_ok=True)
    env = {
        api.JOB_DIR: str(job_dir),
        api.CONFIG: str(job_dir / CONFIG),
        api.CHECKPOINT_DIR: str(checkpoint),
        api.RESUMING: "1" if resuming else "0",
    }
    recorder = Recorder(job_dir, config)
    with (job_dir / STARTS).open("a", encoding="utf-8") as f:
        f.write(f"{_now()} pid={os.getpid()} resuming={int(resuming)}\n")
    result = Result(status="failed", job_id=job_dir.name, started_at=_now())
    if resuming and recorder.rows:
        result.resumed_from_epoch = recorder.rows[-1]["epoch"]
    _emit(
        job_dir,
        "start",
        epochs=(config.get("train") or {}).get("epochs"),
        start_epoch=len(recorder.rows) + 1,
    )
    stop: list[int] = []
    previous = {
        s: signal.signal(s, lambda n, _f: stop.append(n) or api.request_stop(n))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        if config.get("script"):
            code, message = _script(config, env=env, recorder=recorder)
        else:
            code, message = _function(config, env=env, recorder=recorder)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop:
        _emit(job_dir, "end", status="interrupted")
        print(f"interrupted by signal {stop[0]}; the checkpoint is kept", flush=True)
        return 128 + stop[0]
    metrics_file = (config.get("script") or {}).get("metrics_file")
    if metrics_file:
        for line in _read_lines(job_dir / metrics_file):
            recorder.take(line)
    result.epochs_run = len(recorder.rows)
    result.timing["total"] = time.time() - started
    result.finished_at = _now()
    if recorder.test is not None:
        result.test = TestMetrics.model_validate(recorder.test)
    if code == 0:
        result.status = "done"
        write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
        if not (config.get("output") or {}).get("keep_checkpoint"):
            import shutil

            shutil.rmtree(checkpoint, ignore_errors=True)
        _emit(job_dir, "end", status="done")
        return 0
    sys.stdout.flush()
    tail = log_tail(job_dir)
    result.error_class = "oom" if any(m in (tail or "").lower() for m in OOM_MARKERS) else "crash"
    result.error_message = message
    result.log_tail = tail
    write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
    _emit(job_dir, "end", status="failed", error_class=result.error_class)
    print(f"FAILED ({result.error_class}): {message}", flush=True)
    return 1


def _script(config: dict[str, Any], *, env: dict[str, str], recorder: Recorder) -> tuple[int, str]:
    script = config["script"]
    argv = [custom.substitute(item, config) for item in script["command"]]
    cwd = str(Path(os.environ.get(CODE_DIR, os.getcwd()), script.get("cwd") or "."))
    program = Path(cwd) / argv[0]
    if argv[0] in ("python", "python3"):
        # the interpreter running ftmatrix: the script sees the same packages (ftmatrix.job
        # included) whether or not the virtual environment is activated
        argv[0] = sys.executable
    elif "/" not in argv[0] and program.is_file() and os.access(program, os.X_OK):
        argv[0] = str(program)  # a file beside the matrix, not on PATH
    full_env = {**os.environ, **script.get("env", {}), **env}
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=None,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as err:
        return 127, f"cannot start {argv[0]}: {err}"
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        report = parse(line)
        if report is not None:
            recorder.take(report)
    code = proc.wait()
    if code < 0:
        try:
            name: Any = signal.Signals(-code).name
        except ValueError:
            name = -code
        return code, f"{argv[0]} was killed by signal {name}"
    return code, f"{argv[0]} exited with code {code}"


def _function(
    config: dict[str, Any], *, env: dict[str, str], recorder: Recorder
) -> tuple[int, str]:
    module_name, _, name = config["function"].partition(":")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cwd = os.environ.get(CODE_DIR)
    if cwd and cwd not in sys.path:
        sys.path.insert(0, cwd)
    api.sink = recorder.take
    try:
        fn = getattr(importlib.import_module(module_name), name)
        returned = fn(config)
        if isinstance(returned, dict):
            recorder.take({api.TAG: "test", **returned})
        return 0, ""
    except Exception as err:
        traceback.print_exc()
        return 1, f"{type(err).__name__}: {err}"
    finally:
        api.sink = None
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def parse(line: str) -> dict[str, Any] | None:
    """A report from one stdout line, or None (log text, bad JSON, another object)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get(api.TAG) not in ("epoch", "test"):
        return None
    if data[api.TAG] == "epoch" and not isinstance(data.get("epoch"), int):
        return None
    return data


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in _read_lines(path, tagged=False):
        if isinstance(line.get("epoch"), int):
            rows.append(line)
    return rows


def _read_lines(path: Path, *, tagged: bool = True) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for raw in text.splitlines():
        if tagged:
            got = parse(raw)
        else:
            try:
                got = json.loads(raw)
            except ValueError:
                got = None
        if isinstance(got, dict):
            out.append(got)
    return out


def _emit(job_dir: Path, event: str, **fields: Any) -> None:
    with (job_dir / PROGRESS).open("a", encoding="utf-8") as f:
        f.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

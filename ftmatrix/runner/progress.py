"""What `ftmatrix run` shows: a rich live view on a terminal, plain lines elsewhere
(CI logs, nohup), nearly nothing with --quiet."""

from __future__ import annotations

import functools
import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ftmatrix.matrix.plan import Job
from ftmatrix.result import Result


def _summary(job: Job, state: str, result: Result | None, seconds: float) -> str:
    name = job.label or job.id
    test = result.test if result is not None else None
    if state == "done" and test is not None and (test.accuracy is None or test.f1_macro is None):
        shown = ", ".join(
            f"{k} {v:.4g}"
            for k, v in test.model_dump(exclude_defaults=True).items()
            if isinstance(v, float)
        )  # own code: what it reported
        return f"{name}: done — test {shown or 'metrics none'} ({seconds:.1f} s)"
    if state == "done" and test is not None:
        return (
            f"{name}: done — test acc {test.accuracy:.4f}, F1 {test.f1_macro:.4f} ({seconds:.1f} s)"
        )
    if state == "failed":
        error = (result.error_class if result is not None else None) or "crash"
        message = (result.error_message if result is not None else None) or ""
        return f"{name}: FAILED ({error}) {message[:120]} ({seconds:.1f} s)"
    if state == "pruned":
        message = (result.error_message if result is not None else None) or ""
        return f"{name}: pruned — {message} ({seconds:.1f} s)"
    return f"{name}: {state} ({seconds:.1f} s)"


def eta(*, queued: int, running: list[float], mean: float, slots: int) -> float:
    """Seconds until the matrix is done: the jobs running now (each expected to take
    `mean` seconds, `running` holds how long each has run) and `queued` jobs of `mean`
    seconds each, on `slots` jobs at a time."""
    left = [max(mean - ran, 0.0) for ran in running]
    spread = (sum(left) + queued * mean) / max(slots, 1)
    return max(spread, max(left, default=0.0), mean if queued else 0.0)


_VAL_ACC = ("val_accuracy", "val acc", ".3f")  # an epoch event's key, its name, its format


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Plain:
    """One line per event, for logs. With a pool (`parallel`), lines of several jobs
    interleave, so each epoch line names its job; calls come from the pool's threads,
    one at a time (see `_serialised`)."""

    def __init__(self, console: Console, *, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.total = 0
        self.finished = 0
        self.started = time.monotonic()
        self.parallel = False  # several jobs at a time (a pool)
        self.slots = 1  # how many

    def start(self, total: int, todo: int) -> None:
        self.total = total
        self.say(f"{total} jobs: {total - todo} already done, {todo} to run")

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def job_started(self, job: Job) -> None:
        self.say(f"[{self.finished + 1}/{self.total}] start {job.label or job.id} ({job.id})")

    def event(self, job: Job, event: dict) -> None:
        if event.get("event") == "epoch":
            # a script or function job reports only the metrics it has: its val loss
            # stands in for a train loss it does not report
            loss = "train_loss" if _number(event.get("train_loss")) else "val_loss"
            shown = [
                f"{name} {event[key]:{form}}"
                for key, name, form in ((loss, loss.replace("_", " "), ".4f"), _VAL_ACC)
                if _number(event.get(key))
            ]
            speed = event.get("samples_per_second")
            tail = f" ({speed:.0f} samples/s)" if _number(speed) else ""
            who = f"{job.label or job.id} " if self.parallel else ""
            self.say(f"  {who}epoch {event['epoch']}: {', '.join(shown)}{tail}")

    def job_finished(self, job: Job, state: str, result: Result | None, seconds: float) -> None:
        self.finished += 1
        self.say(f"[{self.finished}/{self.total}] " + _summary(job, state, result, seconds))

    def close(self) -> None:
        pass


class Live(Plain):
    """A matrix bar, a bar for the running job, a line per finished job."""

    def __init__(self, console: Console):
        super().__init__(console)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.matrix = None
        self.running: dict[str, int] = {}  # job id -> its bar (one per running job)
        self.began: dict[str, float] = {}  # job id -> when it started (running jobs)
        self.epochs: dict[str, int] = {}
        self.durations: list[float] = []

    def start(self, total: int, todo: int) -> None:
        self.total = total
        self.bars.start()
        self.matrix = self.bars.add_task("matrix", total=total, completed=total - todo, info="")
        self.console.print(f"{total} jobs: {total - todo} already done, {todo} to run")

    def job_started(self, job: Job) -> None:
        if job.id in self.running:
            self.bars.remove_task(self.running.pop(job.id))
        label = f"  {job.label or job.id}"[:50]
        self.running[job.id] = self.bars.add_task(label, total=None, info="")
        self.began[job.id] = time.monotonic()

    def event(self, job: Job, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.epochs[job.id] = event.get("epochs")
        elif kind == "step" and job.id in self.running:
            info = (
                f"epoch {event['epoch']}/{self.epochs.get(job.id, '?')} "
                f"loss {event['loss']:.4f} {event['samples_per_second']:.0f}/s"
            )
            self.bars.update(
                self.running[job.id], total=event["steps"], completed=event["step"], info=info
            )

    def job_finished(self, job: Job, state: str, result: Result | None, seconds: float) -> None:
        if job.id in self.running:
            self.bars.remove_task(self.running.pop(job.id))
        self.began.pop(job.id, None)
        self.finished += 1
        if seconds > 0:  # (not a job that another runner ran: it says nothing of ours)
            self.durations.append(seconds)
        self.bars.console.print(_summary(job, state, result, seconds), highlight=False)
        left = max(self.total - self.bars.tasks[0].completed - 1, 0)
        info = ""
        if self.durations:
            now = time.monotonic()
            running = [now - began for began in self.began.values()]
            seconds_left = eta(
                queued=max(left - len(running), 0),
                running=running,
                mean=sum(self.durations) / len(self.durations),
                slots=self.slots,
            )
            info = f"ETA {seconds_left:.0f} s"
        self.bars.update(self.matrix, advance=1, info=info)

    def close(self) -> None:
        self.bars.stop()


_LOCK = threading.RLock()


def _serialised(cls: type[Plain]) -> type[Plain]:
    """The display's methods, one call at a time: a pool's threads share it."""

    def guard(method):
        @functools.wraps(method)
        def call(*args, **kwargs):
            with _LOCK:
                return method(*args, **kwargs)

        return call

    for name in ("start", "say", "job_started", "event", "job_finished", "close"):
        setattr(cls, name, guard(getattr(cls, name)))
    return cls


Plain = _serialised(Plain)
Live = _serialised(Live)


def display(console: Console, *, quiet: bool) -> Plain:
    if quiet or not console.is_terminal:
        return Plain(console, quiet=quiet)
    return Live(console)

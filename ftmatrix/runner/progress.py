"""What `ftmatrix run` shows: a rich live view on a terminal, plain lines elsewhere
(CI logs, nohup), nearly nothing with --quiet."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ftmatrix.runner.plan import Job


def _summary(job: Job, state: str, result: dict | None, seconds: float) -> str:
    name = job.label or job.id
    test = (result or {}).get("test") or {}
    if state == "done" and test:
        return (
            f"{name}: done — test acc {test['accuracy']:.4f}, F1 {test['f1_macro']:.4f} "
            f"({seconds:.1f} s)"
        )
    if state == "failed":
        error = (result or {}).get("error_class", "crash")
        message = (result or {}).get("error_message") or ""
        return f"{name}: FAILED ({error}) {message[:120]} ({seconds:.1f} s)"
    if state == "pruned":
        message = (result or {}).get("error_message") or ""
        return f"{name}: pruned — {message} ({seconds:.1f} s)"
    return f"{name}: {state} ({seconds:.1f} s)"


class Plain:
    """One line per event, for logs."""

    def __init__(self, console: Console, *, quiet: bool = False):
        self.console = console
        self.quiet = quiet
        self.total = 0
        self.finished = 0
        self.started = time.monotonic()

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
            val = event.get("val_accuracy")
            tail = f", val acc {val:.3f}" if val is not None else ""
            self.say(
                f"  epoch {event['epoch']}: train loss {event['train_loss']:.4f}{tail} "
                f"({event['samples_per_second']:.0f} samples/s)"
            )

    def job_finished(self, job: Job, state: str, result: dict | None, seconds: float) -> None:
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
        self.current = None
        self.durations: list[float] = []

    def start(self, total: int, todo: int) -> None:
        self.total = total
        self.bars.start()
        self.matrix = self.bars.add_task("matrix", total=total, completed=total - todo, info="")
        self.console.print(f"{total} jobs: {total - todo} already done, {todo} to run")

    def job_started(self, job: Job) -> None:
        if self.current is not None:
            self.bars.remove_task(self.current)
        self.current = self.bars.add_task(f"  {job.label or job.id}"[:50], total=None, info="")

    def event(self, job: Job, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.epochs = event.get("epochs")
        elif kind == "step":
            info = (
                f"epoch {event['epoch']}/{getattr(self, 'epochs', '?')} "
                f"loss {event['loss']:.4f} {event['samples_per_second']:.0f}/s"
            )
            self.bars.update(self.current, total=event["steps"], completed=event["step"], info=info)

    def job_finished(self, job: Job, state: str, result: dict | None, seconds: float) -> None:
        self.finished += 1
        self.durations.append(seconds)
        self.bars.console.print(_summary(job, state, result, seconds), highlight=False)
        left = self.total - self.bars.tasks[0].completed - 1
        mean = sum(self.durations) / len(self.durations)
        self.bars.update(self.matrix, advance=1, info=f"ETA {max(left, 0) * mean:.0f} s")

    def close(self) -> None:
        self.bars.stop()


def display(console: Console, *, quiet: bool) -> Plain:
    if quiet or not console.is_terminal:
        return Plain(console, quiet=quiet)
    return Live(console)

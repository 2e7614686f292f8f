"""Job folders -> rows. Reads plan.json, result.json, metrics.jsonl, config.json only,
through the readers of `ftmatrix.result`. A damaged file never stops a report: it is
named in `Study.problems`, its job shows as "damaged" (a damaged result.json) or
without curves or settings, and every healthy job is reported as usual."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftmatrix import catalog
from ftmatrix.reports import extras
from ftmatrix.result import (
    CONFIG,
    PLAN,
    RESULT,
    DamagedFile,
    PlanEntry,
    read_config,
    read_metrics,
    read_plan,
    read_result,
)

# --metric names -> (key in a row's metrics, larger is better)
METRICS_KNOWN = {
    "test.accuracy": True,
    "test.f1_macro": True,
    "test.f1_weighted": True,
    "test.precision_macro": True,
    "test.recall_macro": True,
    "test.topk": True,
    "test.loss": False,
    "test.exact_match": True,  # causal-lm
    "test.perplexity": False,  # causal-lm
}


ALIASES = {
    "f1": "test.f1_macro",
    "precision": "test.precision_macro",
    "recall": "test.recall_macro",
    "acc": "test.accuracy",
}
# An own metric whose name holds one of these is smaller-is-better (else larger is)
SMALLER = re.compile(r"loss|err|perplexity|mse|mae|time|seconds|latency|distance|(^|_)[wc]er(_|$)")
DIRECTIONS = {"max": True, "min": False}


class Metric(str):
    """A test metric's key in a row's metrics ('test.exact'), knowing whether larger is
    better and, when no --metric was given, saying why it was chosen (`note`)."""

    larger: bool
    note: str

    def __new__(cls, key: str, *, larger: bool, note: str = "") -> Metric:
        made = super().__new__(cls, key)
        made.larger, made.note = larger, note
        return made


def larger_is_better(metric: str) -> bool:
    """A Metric's own direction; a built-in metric's; else guessed from its name."""
    if isinstance(metric, Metric):
        return metric.larger
    if metric in METRICS_KNOWN:
        return METRICS_KNOWN[metric]
    return not SMALLER.search(metric.removeprefix("test.").lower())


def metric_name(name: str | None, jobs: Iterable[JobRow] = ()) -> Metric:
    """The metric to sort and compare `jobs` by. `name`: `accuracy` for `test.accuracy`,
    `f1` for `test.f1_macro`, a built-in metric or one some job reported under its own
    name, with `:min` or `:max` to say which way is better (default: the built-in's
    direction, or smaller for a name holding loss/error/perplexity/mse/mae/time..., else
    larger). None: test accuracy, or else the first metric the jobs reported."""
    if name is None:
        return default_metric(jobs)
    base, colon, way = name.rpartition(":") if ":" in name else (name, "", "")
    if colon and way not in DIRECTIONS:
        raise ValueError(f"--metric '{name}': write NAME, NAME:min or NAME:max")
    key = ALIASES.get(base, base)
    if not key.startswith("test."):
        key = "test." + key
    reported = {m for j in jobs for m in j.metrics}
    if key not in METRICS_KNOWN and key not in reported:
        choices = [*METRICS_KNOWN, *sorted(reported - METRICS_KNOWN.keys())]
        hint = catalog.did_you_mean(key, choices)
        raise ValueError(f"unknown metric '{key}'; choose from {', '.join(choices)}{hint}")
    return Metric(key, larger=DIRECTIONS[way] if colon else larger_is_better(key))


def default_metric(jobs: Iterable[JobRow]) -> Metric:
    """Test accuracy when some job reported it (a causal-lm job writes its exact match
    there too) or none reported anything; else the first metric reported: scores before
    losses, built-in names before a job's own (in name order)."""
    reported = {m for j in jobs for m in j.metrics}
    if "test.accuracy" in reported or not reported:
        return Metric("test.accuracy", larger=True)
    own = sorted(reported - METRICS_KNOWN.keys())
    order = [m for m in METRICS_KNOWN if METRICS_KNOWN[m]]
    order += [m for m in own if larger_is_better(m)]
    order += [m for m in METRICS_KNOWN if not METRICS_KNOWN[m]]
    first = next(m for m in [*order, *own] if m in reported)
    larger = larger_is_better(first)
    note = (
        f"No job reported test accuracy: compared by {first} ({'larger' if larger else 'smaller'}"
        " is better), the first test metric the jobs reported; choose with --metric."
    )
    return Metric(first, larger=larger, note=note)


@dataclass
class JobRow:
    id: str
    label: str
    settings: dict[str, str]
    state: str  # done | failed | pruned | pending | damaged (result.json unreadable)
    metrics: dict[str, float] = field(default_factory=dict)  # test.* values
    best_epoch: int | None = None
    tested_epoch: int | None = None  # the epoch whose weights were tested
    tested_by: str | None = None  # the rule that chose it: "last", "best val_loss (min)"
    epochs_run: int | None = None
    trainable: int | None = None
    trainable_percent: float | None = None
    adapter_bytes: int | None = None  # the saved PEFT adapter's size on disk
    peak_memory_bytes: int | None = None  # CUDA's max allocated, else the peak RSS
    tokens_per_second: float | None = None  # causal-lm training throughput
    seconds_per_epoch: float | None = None
    seconds: float | None = None
    device: str | None = None
    error: str | None = None
    per_class: dict[str, float] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)  # rows: true, cols: predicted
    class_names: list[str] = field(default_factory=list)
    k: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Study:
    name: str
    description: str
    axes: list[str]
    jobs: list[JobRow]
    stale: int = 0  # job folders on disk no longer in the matrix
    root: Path = Path(".")
    problems: list[str] = field(default_factory=list)  # "damaged: <file>: <problem>"


def load(root: Path, *, curves: bool = True) -> Study:
    """The run folder as rows: planned jobs in plan order. Without a readable plan.json,
    every job folder on disk (one holding a config.json), unlabelled."""
    problems: list[str] = []
    try:
        plan = read_plan(root)
        if plan is not None:
            _check_ids(root, plan.jobs)
    except DamagedFile as err:
        problems.append(f"{err}; listing the job folders on disk instead")
        plan = None
    if plan is None:
        entries = [PlanEntry(id=p.name, label="") for p in _job_folders(root)]
        name, description, axes = root.name, "", []
    else:
        entries, name, description, axes = plan.jobs, plan.name, plan.description, plan.axes
    rows = [_row(root / e.id, e, curves=curves, problems=problems) for e in entries]
    stale = len(_job_folders(root, leaving={e.id for e in entries}))
    return Study(name, description, axes, rows, stale, root, problems)


def _job_folders(root: Path, *, leaving: set[str] | frozenset[str] = frozenset()) -> list[Path]:
    """The job folders (holding a config.json) whose names are not in `leaving`."""
    return sorted(
        p for p in root.iterdir() if p.name not in leaving and p.is_dir() and (p / CONFIG).exists()
    )


def _check_ids(root: Path, entries: list[PlanEntry]) -> None:
    """A job id is a folder name: a plan.json that says otherwise is damaged."""
    for index, entry in enumerate(entries):
        if entry.id in ("", ".", "..") or "/" in entry.id or "\0" in entry.id:
            raise DamagedFile(root / PLAN, f"jobs.{index}.id {entry.id!r} is not a job folder")


def _row(job_dir: Path, entry: PlanEntry, *, curves: bool, problems: list[str]) -> JobRow:
    settings = {k: str(v) for k, v in entry.settings.items()}
    row = JobRow(entry.id, entry.label, settings, "pending")
    try:
        result = read_result(job_dir)
    except DamagedFile as err:
        problems.append(str(err))
        row.state, row.error = "damaged", RESULT
        return row
    if result is None:
        return row
    row.state = result.status
    row.error = result.error_class
    if result.test is not None:
        for key in METRIC_FIELDS:
            value = getattr(result.test, key)
            if value is not None:
                row.metrics[f"test.{key}"] = float(value)
        row.metrics.update(extras.own_metrics(result.test))  # a job's own names
        row.per_class = result.test.per_class_accuracy
        row.confusion = result.test.confusion_matrix
        row.class_names = result.test.class_names
        row.k = result.test.k
    if result.params is not None:
        row.trainable = result.params.trainable
        row.trainable_percent = result.params.trainable_percent
    row.adapter_bytes = result.adapter_bytes
    row.peak_memory_bytes = result.peak_memory_bytes
    row.tokens_per_second = result.tokens_per_second
    row.seconds_per_epoch = result.timing.get("per_epoch")
    row.seconds = result.timing.get("total")
    row.best_epoch = result.best_epoch
    # results written before the rule was recorded tested their best epoch
    row.tested_epoch = result.tested_epoch if result.tested_by else result.best_epoch
    row.tested_by = result.tested_by
    row.epochs_run = result.epochs_run
    row.device = result.device
    try:
        row.config = read_config(job_dir) or {}
    except DamagedFile as err:
        problems.append(str(err))
    if curves:
        row.curves = curves_of(job_dir, problems)
    return row


# result.json's test fields that become `test.<name>` metrics of a row
METRIC_FIELDS = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "topk",
    "loss",
    "exact_match",
    "perplexity",
)


def curves_of(job_dir: Path, problems: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl as dicts, one per epoch; [] (and the problem noted) when damaged."""
    try:
        return [m.model_dump() for m in read_metrics(job_dir)]
    except DamagedFile as err:
        problems.append(str(err))
        return []


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}} -> {'train.lr': 0.1} (lists kept as JSON text)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        elif isinstance(value, (list, dict)):
            out[path] = json.dumps(value)
        else:
            out[path] = value
    return out

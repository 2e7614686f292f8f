"""Job folders -> rows. Reads plan.json, result.json, metrics.jsonl, config.json only."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftmatrix.result import CONFIG, METRICS, PLAN, RESULT

# --metric names -> (key in a row's metrics, larger is better)
METRICS_KNOWN = {
    "test.accuracy": True,
    "test.f1_macro": True,
    "test.f1_weighted": True,
    "test.precision_macro": True,
    "test.recall_macro": True,
    "test.topk": True,
    "test.loss": False,
}


def metric_name(name: str) -> str:
    """Accept `accuracy` for `test.accuracy`, `f1` for `test.f1_macro`."""
    aliases = {
        "f1": "test.f1_macro",
        "precision": "test.precision_macro",
        "recall": "test.recall_macro",
        "acc": "test.accuracy",
    }
    name = aliases.get(name, name)
    if not name.startswith("test."):
        name = "test." + name
    if name not in METRICS_KNOWN:
        raise ValueError(f"unknown metric '{name}'; choose from {', '.join(METRICS_KNOWN)}")
    return name


@dataclass
class JobRow:
    id: str
    label: str
    settings: dict[str, str]
    state: str  # done | failed | pruned | pending
    metrics: dict[str, float] = field(default_factory=dict)  # test.* values
    best_epoch: int | None = None
    epochs_run: int | None = None
    trainable: int | None = None
    trainable_percent: float | None = None
    seconds_per_epoch: float | None = None
    seconds: float | None = None
    device: str | None = None
    error: str | None = None
    per_class: dict[str, float] = field(default_factory=dict)
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


def load(root: Path, *, curves: bool = True) -> Study:
    plan = json.loads((root / PLAN).read_text(encoding="utf-8"))
    rows = [_row(root / e["id"], e, curves=curves) for e in plan["jobs"]]
    planned = {e["id"] for e in plan["jobs"]}
    stale = sum(
        1 for p in root.iterdir() if p.is_dir() and p.name not in planned and (p / CONFIG).exists()
    )
    return Study(plan["name"], plan.get("description", ""), plan.get("axes", []), rows, stale, root)


def _row(job_dir: Path, entry: dict, *, curves: bool) -> JobRow:
    row = JobRow(entry["id"], entry.get("label", ""), entry.get("settings", {}), "pending")
    try:
        result = json.loads((job_dir / RESULT).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return row
    row.state = result.get("status", "failed")
    row.error = result.get("error_class")
    test = result.get("test") or {}
    for key in (
        "accuracy",
        "f1_macro",
        "f1_weighted",
        "precision_macro",
        "recall_macro",
        "topk",
        "loss",
    ):
        if test.get(key) is not None:
            row.metrics[f"test.{key}"] = float(test[key])
    row.per_class = test.get("per_class_accuracy") or {}
    row.k = test.get("k")
    params = result.get("params") or {}
    row.trainable = params.get("trainable")
    row.trainable_percent = params.get("trainable_percent")
    timing = result.get("timing") or {}
    row.seconds_per_epoch = timing.get("per_epoch")
    row.seconds = timing.get("total")
    row.best_epoch = result.get("best_epoch")
    row.epochs_run = result.get("epochs_run")
    row.device = result.get("device")
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        row.config = json.loads((job_dir / CONFIG).read_text(encoding="utf-8"))
    if curves:
        row.curves = read_curves(job_dir)
    return row


def read_curves(job_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as dicts (a torn last line is skipped)."""
    rows = []
    try:
        text = (job_dir / METRICS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return rows
    for line in text.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


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

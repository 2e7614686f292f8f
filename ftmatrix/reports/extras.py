"""Test metrics a job reported under its own names: a script's or function's
`job.log_test(my_score=...)` or JSON line, or the built-in trainer's `train.metrics`.
result.json keeps them beside the standard ones (extras of its test metrics); a report
shows each as a column after the standard ones."""

from __future__ import annotations

import math
from typing import Any

from ftmatrix.result import TestMetrics

STANDARD = frozenset(f"test.{name}" for name in TestMetrics.model_fields)


def own_metrics(test: TestMetrics) -> dict[str, float]:
    """'test.<name>' -> value for each finite number among the test metrics' extras
    (flags, text and lists are left out)."""
    found: dict[str, float] = {}
    for name, value in (test.model_extra or {}).items():
        if _number(value):
            found[f"test.{name}"] = float(value)
    return found


def columns(jobs: list[Any]) -> list[tuple[str, str]]:
    """(metric key, header) for each own metric some job has, in name order; jobs are
    report rows (collect.JobRow: `metrics` maps 'test.<name>' to a number)."""
    names = sorted({m for job in jobs for m in job.metrics} - STANDARD)
    return [(m, m.removeprefix("test.").replace("_", " ")) for m in names]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

"""Check a matrix's `search:` block against the job schema: its metric, its space (from
the matrix and any NNI space file), and that every value it can draw is a valid setting.
The schema of the block and the distributions themselves are search.py."""

from __future__ import annotations

from pathlib import Path

from ftmatrix import catalog
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.labels import fmt
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.search import METRICS, Dist, SearchSpec, parse_space, read_space_file
from ftmatrix.matrix.units import Assignment
from ftmatrix.matrix.validation import Validator

WHERE = ("search",)


def check(
    search: SearchSpec,
    *,
    axes: set[str],
    jobs: list[Job],
    validator: Validator,
    base_dir: Path,
    problems: Problems,
) -> list[Dist]:
    """The distributions of a search, with every problem reported at its key: names,
    bounds, and that every bound (or choice) is a valid setting (lr >= 0 ...). `axes`
    are the keys the grid and zip groups set, which a search may not also vary."""
    if search.metric not in METRICS:
        problems.add(
            (*WHERE, "metric"),
            "search.metric",
            f"unknown metric '{search.metric}'; expected one of: {', '.join(METRICS)}"
            f"{catalog.did_you_mean(search.metric, METRICS)}",
        )
    space = dict(search.space)
    if search.space_file:
        try:
            space.update(read_space_file(base_dir / search.space_file))
        except (OSError, ValueError) as err:
            problems.add((*WHERE, "space_file"), "search.space_file", f"cannot read: {err}")
    if not space:
        problems.add(WHERE, "search.space", "the search space is empty")
    dists, found = parse_space(space, fixed=axes)
    for key, message in found:
        problems.add((*WHERE, "space", key), f"search.space.{key}", message)
    if search.strategy == "grid":
        for d in dists:
            try:
                d.grid_values()
            except ValueError as err:
                problems.add((*WHERE, "space", d.path), f"search.space.{d.path}", str(err))
    task = jobs[0].part("task") if jobs else "image-classification"
    _check_values(dists, task=task, validator=validator)
    return dists


def _check_values(dists: list[Dist], *, task: str, validator: Validator) -> None:
    """Every bound (or choice) must itself be a valid setting; checked on the unit it
    belongs to, against the base (skipped where the base alone is incomplete)."""
    invalid = validator.base_units(task).invalid
    for d in dists:
        for value in d.bounds():
            a = Assignment(d.path, value, (*WHERE, "space", d.path), fmt(value), ("q", d.path))
            for entry in a.entries:
                if entry.unit not in invalid:
                    validator.unit(entry.unit, [entry], task)

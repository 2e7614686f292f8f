"""Check a matrix's `search:` block against the job schema: its metric, its space (from
the matrix and any NNI space file), that every value it can draw is a valid setting, and
that each grid point has valid trials at all. The schema of the block and the
distributions themselves are search.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ftmatrix import catalog
from ftmatrix.config import JobConfig, cross_check
from ftmatrix.matrix import errors, paths
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.labels import fmt
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.search import METRICS, Dist, parse_space, read_space_file
from ftmatrix.matrix.spec import MatrixSpec
from ftmatrix.matrix.units import Assignment
from ftmatrix.matrix.validation import Validator

WHERE = ("search",)
MAX_TRIED_POINTS = 1_000  # grid points tried with sample trials (the rest are alike)


def check(
    spec: MatrixSpec,
    *,
    jobs: list[Job],
    validator: Validator,
    base_dir: Path,
    problems: Problems,
) -> list[Dist]:
    """The distributions of the matrix's search, with every problem reported at its
    key: names, bounds, every bound (or choice) a valid setting (lr > 0 ...), and no
    grid point whose every trial would be an invalid job."""
    search = spec.search
    assert search is not None
    before = len(problems)
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
    dists, found = parse_space(space, fixed=axis_settings(spec))
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
    if dists and jobs and len(problems) == before:
        _check_trials(dists, jobs, problems=problems)
    return dists


def axis_settings(spec: MatrixSpec) -> dict[str, str]:
    """Every setting the grid and zip axes write -> the axis that writes it."""
    axes = [(key, values) for key, values in spec.grid.items()]
    axes += [(key, values) for zipped in spec.zip_ for key, values in zipped.items()]
    out: dict[str, str] = {}
    for key, values in axes:
        items = list(values.values()) if isinstance(values, dict) else values
        for value in items if isinstance(items, list) else []:  # else refused as an axis
            for leaf in paths.leaves(str(key), value):
                out.setdefault(leaf, str(key))
    return out


def _check_values(dists: list[Dist], *, task: str, validator: Validator) -> None:
    """Every bound (or choice) must itself be a valid setting; checked on the unit it
    belongs to, against the base (skipped where the base alone is incomplete)."""
    invalid = validator.base_units(task).invalid
    for d in dists:
        for i, value in enumerate(d.bounds()):
            origin = (*WHERE, "space", d.path)
            a = Assignment(d.path, value, origin, fmt(value), ("q", d.path, i))
            for entry in a.entries:
                if entry.unit not in invalid:
                    validator.unit(entry.unit, [entry], task)


def _check_trials(dists: list[Dist], jobs: list[Job], *, problems: Problems) -> None:
    """Refuse a grid point none of whose sample trials (each setting at its low end, at
    its high end, in the middle, each choice in turn) is a valid job: its whole budget
    would go to failing trials."""
    tries = sample_trials(dists)
    for job in jobs[:MAX_TRIED_POINTS]:
        why = ""
        for values in tries:
            config, why = trial_config(job.config, values)
            if config is not None:
                break
        else:
            point = f"the grid point '{job.label}'" if job.label else "the matrix"
            problems.add(
                (*WHERE, "space"),
                "search.space",
                f"no trial of {point} would be a valid job ({len(tries)} tried, from each "
                f"end, the middle and every choice): {why}",
            )
            return


def sample_trials(dists: list[Dist]) -> list[dict[str, Any]]:
    """A few trials spread over a space: every setting at its low end, at its high end,
    in the middle, then each choice in turn."""
    tries = [
        {d.path: d.bounds()[0] for d in dists},
        {d.path: d.bounds()[-1] for d in dists},
        {d.path: d.middle() for d in dists},
    ]
    most = max((len(d.values) for d in dists if d.kind == "choice"), default=0)
    for k in range(1, min(most, 16)):
        tries.append(
            {d.path: d.values[k % len(d.values)] if d.values else d.middle() for d in dists}
        )
    return tries


def trial_config(config: JobConfig, values: dict[str, Any]) -> tuple[JobConfig | None, str]:
    """A grid point's config with a trial's settings set (merged as a matrix merges
    them), validated like any job; or (None, why not)."""
    raw = config.model_dump()
    for path, value in values.items():
        raw = paths.assign(raw, path.split("."), value)
    try:
        trial = JobConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = errors.config_key("", first).lstrip(".")
        parent = key.rpartition(".")[0]
        message = errors.message(first, fields=paths.fields_of(parent))
        return None, f"{key}: {message}" if key else message
    problems = cross_check(trial)
    if problems:
        return None, f"{problems[0][0]}: {problems[0][1]}"
    return trial, ""

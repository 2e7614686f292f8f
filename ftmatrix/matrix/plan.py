"""Expand a matrix into jobs: grid × zip, exclude, include, seeds; validate; dedupe.

Each job gets an id (hash of its normalised config), a label built from the settings
that vary, and its validated JobConfig. The steps, each in its own module:

    points.py      the points: grid axes × zip groups, minus excludes, plus includes
    units.py       the units a config is validated and hashed in
    validation.py  each distinct unit validated once (a 100,000-point matrix with a few
                   values per axis validates a few hundred small dicts, not 100,000 jobs)
    hashing.py     every point validated and hashed, sharing work between neighbours
    labels.py      how settings are shown
    teachers.py    distillation teachers picked among the jobs
    space.py       the search space checked against the job schema
    jobs.py        Job and Plan
    problems.py    where each problem is reported (errors.py: pydantic's, in our words)

`load_plan` and `expand` are the entry points; every problem of a file is reported at
once (MatrixError), each at file:line:col with its dotted key. Whatever a matrix sets
merges onto what `base` set there (paths.assign): a mapping key by key, and a section
written by its name alone (`train.optimizer: sgd`) as `{name: sgd}`.
"""

from __future__ import annotations

import math
from itertools import chain
from operator import getitem
from pathlib import Path

from ftmatrix import catalog
from ftmatrix.config import JobConfig
from ftmatrix.identity import normalized
from ftmatrix.matrix import (
    components,
    load,
    owncode,
    params,
    paths,
    points,
    space,
    teachers,
    validation,
)
from ftmatrix.matrix import spec as matrix_spec
from ftmatrix.matrix.hashing import Found, Repeat, Walk, hash_each, point_assignments
from ftmatrix.matrix.jobs import Header, Job, Plan
from ftmatrix.matrix.labels import fmt
from ftmatrix.matrix.load import MatrixError, Positions, Problem
from ftmatrix.matrix.points import Group, Point
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.spec import MatrixSpec
from ftmatrix.matrix.units import Assignment, assemble
from ftmatrix.matrix.validation import Validator

__all__ = ["DEFAULT_MAX_JOBS", "Job", "Plan", "expand", "load_plan"]

DEFAULT_MAX_JOBS = 10_000


def load_plan(path: str | Path, *, max_jobs: int = DEFAULT_MAX_JOBS) -> Plan:
    """Read, validate and expand a matrix file; MatrixError lists every problem."""
    path = Path(path)
    data, positions = load.read(path)
    spec, problems = matrix_spec.validate_spec(data, positions)
    if spec is None:
        raise MatrixError(problems)
    plan = expand(spec, positions=positions, path=path, max_jobs=max_jobs, problems=problems)
    if problems:
        raise MatrixError(problems)
    return plan


def expand(
    spec: MatrixSpec,
    *,
    positions: Positions | None = None,
    path: Path | None = None,
    max_jobs: int = DEFAULT_MAX_JOBS,
    problems: list[Problem] | None = None,
) -> Plan:
    """Expand a validated spec. Problems are appended to `problems` (raised if None)."""
    raise_now = problems is None
    found: list[Problem] = [] if problems is None else problems
    report = Problems(positions or Positions(str(path or "<matrix>")), found)
    validator = Validator(spec.base, report)
    jobs, axes, count = _expand(spec, validator=validator, problems=report, max_jobs=max_jobs)
    dists = []
    if spec.search is not None:
        dists = space.check(
            spec,
            jobs=jobs,
            validator=validator,
            base_dir=Path(path).parent if path else Path("."),
            problems=report,
        )
    if jobs:  # a script's command, a function's module, params' types (owncode.py)
        base_dir = Path(path).parent if path else Path(".")
        owncode.check(jobs, base=spec.base, base_dir=base_dir, problems=report)
        components.check(jobs, base=spec.base, base_dir=base_dir, problems=report)
        params.check(jobs, spec=spec, base_dir=base_dir, problems=report, searched=dists)
    if raise_now and found:
        raise MatrixError(found)
    return Plan(
        name=spec.name,
        description=spec.description,
        path=Path(path or "."),
        runs_dir=spec.runs_dir,
        jobs=jobs,
        axes=axes,
        points=count,
        spec=spec,
        search=dists,
    )


def _expand(
    spec: MatrixSpec, *, validator: Validator, problems: Problems, max_jobs: int
) -> tuple[list[Job], list[str], int]:
    """(the jobs, their varying keys, the number of points) of a matrix; no jobs when
    anything is wrong."""
    _check_base(spec, problems)
    groups = points.groups(spec, problems)  # axes that address no field are left out
    seeds: list[int | None] = list(spec.seeds) or [None]
    product = math.prod(len(g.rows) for g in groups)
    if (product + len(spec.include)) * len(seeds) > max_jobs:
        problems.add(
            ("grid",) if spec.grid else (),
            "grid",
            f"the matrix makes {product * len(seeds):,} jobs (before exclude), more than "
            f"the limit of {max_jobs:,}; raise it with --max-jobs to plan it",
        )
        return [], [], 0
    every = points.points(spec, groups, problems=problems)
    seed_sets: list[Assignment | None] = [
        None if seed is None else Assignment("train.seed", seed, ("seeds", i), str(seed), ("s", i))
        for i, seed in enumerate(seeds)
    ]
    validation.check_train_section(spec.base, problems)
    count = len(every) * len(seed_sets)
    before = len(problems)
    repeats: list[Repeat] = []
    found = _validate_and_hash(
        validator, groups=groups, every=every, seeds=seed_sets, repeats=repeats
    )
    if len(problems) > before:
        return [], [], count
    axes = [k for g in groups for k in g.keys]
    for p in every:
        axes += [s.path for s in p.sets if s.path not in axes]
    if seeds != [None]:
        axes.append("train.seed")  # shown only if it varies, like every axis
    jobs, varying = _jobs(found, axes=axes, groups=groups, problems=problems)
    _check_repeats(repeats, jobs=jobs, problems=problems)
    if len(problems) > before:
        return [], [], count
    if validator.uses_teachers():
        jobs = teachers.resolve(jobs, problems)
    return jobs, varying, count


def _check_base(spec: MatrixSpec, problems: Problems) -> None:
    fields = list(JobConfig.model_fields)
    for key in spec.base:
        if key not in JobConfig.model_fields:
            problems.add(
                ("base", key),
                f"base.{key}",
                f"unknown key '{key}'{catalog.did_you_mean(str(key), fields)}; "
                f"a job config has: {', '.join(fields)}",
            )


def _validate_and_hash(
    validator: Validator,
    *,
    groups: list[Group],
    every: list[Point],
    seeds: list[Assignment | None],
    repeats: list[Repeat],
) -> dict[str, Found]:
    """Every valid job by id, with the first point that makes it; include points that
    make a grid point's job go to `repeats`."""
    assignments = [s for g in groups for row in g.rows for s in row]
    assignments += [s for p in every for s in p.sets] + [s for s in seeds if s]
    validator.varied = {e.unit for s in assignments for e in s.entries}
    if "task" in validator.varied:
        # the task changes the template itself: validate every job whole (rare)
        return hash_each(validator, groups=groups, points=every, seeds=seeds, repeats=repeats)
    walk = Walk(validator, groups=groups, points=every, seeds=seeds)
    found = walk.run()
    repeats += walk.repeats
    return found


def _check_repeats(repeats: list[Repeat], *, jobs: list[Job], problems: Problems) -> None:
    """An include that matches no point is a point of its own; one whose point is a job
    the grid makes already changes nothing (a value written otherwise, e.g. as text)."""
    if not repeats:
        return
    labels = {j.id: j.label or j.id for j in jobs}
    for p, same_as in repeats:
        include = p.sets[0].origin[:2]  # ("include", i)
        problems.add(
            include,
            f"include[{include[1]}]",
            f"this include matches no point, so it is a point of its own, but it makes "
            f"the same job as '{labels[same_as]}': it changes nothing (does a value differ "
            f"from the axis's only in how it is written, e.g. as text?)",
        )


def _jobs(
    found: dict[str, Found], *, axes: list[str], groups: list[Group], problems: Problems
) -> tuple[list[Job], list[str]]:
    """The jobs, labelled by the settings that vary between them (in axis order), and
    those settings' keys. Two jobs must not share a label."""
    shown = _displays(found, axes=axes, groups=groups)
    columns = list(zip(*shown, strict=True)) if shown else [() for _ in axes]
    varying = [i for i, column in enumerate(columns) if len(set(column)) > 1]
    keys = tuple(axes[i] for i in varying)
    header = Header(keys)
    if len(varying) == len(axes):
        values = shown
    else:
        values = [tuple([row[i] for i in varying]) for row in shown]
    jobs = [
        Job(jid, header, vals, parts=f)
        for (jid, f), vals in zip(found.items(), values, strict=True)
    ]
    if any(f.point.rows is None or f.point.sets for f in found.values()):
        # grid points read differently by construction (points._distinct); includes may not
        _check_labels(list(found.values()), jobs=jobs, values=values, problems=problems)
    return jobs, list(keys)


def _check_labels(
    found: list[Found], *, jobs: list[Job], values: list[tuple[str, ...]], problems: Problems
) -> None:
    """Two jobs that would read the same (a setting differing only in how it is
    written): refused at the include that made the second."""
    first: dict[tuple[str, ...], Job] = {}
    for f, job, vals in zip(found, jobs, values, strict=True):
        other = first.setdefault(vals, job)
        if other is not job:
            where = f.point.sets[0].origin[:2] if f.point.sets else ("grid",)
            key = f"{where[0]}[{where[1]}]" if len(where) == 2 else "grid"
            label = f"'{job.label}'" if job.label else "no label (no setting varies)"
            problems.add(
                where,
                key,
                f"jobs {other.id} and {job.id} differ, but both read {label}: a setting "
                f"differs only in how it is written (a number and a text?)",
            )


def _displays(
    found: dict[str, Found], *, axes: list[str], groups: list[Group]
) -> list[tuple[str, ...]]:
    """For each job, the display of its value on every axis."""
    where = {a: i for i, a in enumerate(axes)}
    n = len(axes)
    by_row = [[tuple(a.display for a in row) for row in g.rows] for g in groups]
    shown = []
    for job in found.values():
        p, seed = job.point, job.seed
        if p.rows is not None and not p.sets:
            # a grid point sets exactly the axes, in axis order (seed last)
            values = tuple(chain.from_iterable(map(getitem, by_row, p.rows)))
            if seed is not None:
                values = (*values, seed.display)
            if len(values) == n:
                shown.append(values)
                continue
        listed = [""] * n  # a point added by include may lack some axes
        for a in point_assignments(groups, p, seed=seed):
            listed[where[a.path]] = a.display
        for key, i in where.items():
            if not listed[i]:
                listed[i] = _effective(job, key)
        shown.append(tuple(listed))
    return shown


def _effective(job: Found, key: str) -> str:
    """Display of a job's value at `key`; '-' where the setting does not matter."""
    try:
        return fmt(paths.get(normalized(assemble(job.parts())), key))
    except KeyError:
        return "-"

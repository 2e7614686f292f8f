"""Expand a matrix into jobs: grid × zip, exclude, include, seeds; validate; dedupe.

Each job gets an id (hash of its normalised config), a label built from the settings
that vary, and its validated JobConfig. Validation is done per distinct config
*section* (data, model, lora, train, ...) and cached, so a 100,000-point matrix with a
few distinct values per axis validates a few hundred small dicts, not 100,000 jobs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ftmatrix import catalog
from ftmatrix.config import JobConfig, TrainConfig, cross_check
from ftmatrix.identity import (
    DROP,
    ID_LENGTH,
    SECTIONS,
    canonical_json,
    hash_id,
    job_id,
    normalized,
    normalized_section,
    normalized_train_field,
)
from ftmatrix.matrix import paths
from ftmatrix.matrix import spec as matrix_file
from ftmatrix.matrix.search import METRICS, Dist, parse_space, read_space_file
from ftmatrix.matrix.spec import MatrixError, MatrixSpec, Positions, Problem
from ftmatrix.result import PlanEntry, PlanFile

DEFAULT_MAX_JOBS = 10_000
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: paths._submodel(JobConfig.model_fields[name].annotation)  # type: ignore[misc]
    for name in SECTIONS
    if name != "task"
}


class _Header:
    """The varying keys of a plan and their short names, shared by all its jobs."""

    __slots__ = ("keys", "names")

    def __init__(self, keys: tuple[str, ...], names: tuple[str, ...]):
        self.keys, self.names = keys, names


class Job:
    """One training job of a plan: id, label, the settings that vary, and its config.

    Label, settings and config are built on first use: a 100,000-job plan only pays
    for the ones it shows or runs."""

    __slots__ = ("_config", "_header", "_label", "_parts", "_values", "id")

    def __init__(
        self,
        id: str,
        header: _Header,
        values: tuple[str, ...],
        config: JobConfig | None = None,
        *,
        parts: tuple | None = None,
        label: str | None = None,
    ):
        self.id = id  # 12 hex chars: hash of the normalised config, the job folder's name
        self._header = header
        self._values = values
        self._config = config
        self._parts = parts
        self._label = label

    @property
    def label(self) -> str:
        """'lr=1e-4 lora=r8': the varying settings only ('' when nothing varies)."""
        if self._label is None:
            pairs = zip(self._header.names, self._values, strict=True)
            self._label = " ".join(f"{k}={v}" for k, v in pairs)
        return self._label

    @property
    def settings(self) -> dict[str, str]:
        """Varying dotted key -> display value, in axis order."""
        return dict(zip(self._header.keys, self._values, strict=True))

    @property
    def config(self) -> JobConfig:
        """The validated JobConfig (assembled on first use from validated parts)."""
        if self._config is None:
            self._config = _assemble(_Parts.of(self._parts))
        return self._config

    def part(self, section: str) -> Any:
        """One validated top-level section, without assembling the whole config."""
        if self._config is None and self._parts is not None:
            parts = _Parts.of(self._parts)
            if section in parts:
                return parts[section]
        return getattr(self.config, section)

    def replace_config(self, config: JobConfig) -> Job:
        """The same job with another config (and so, another id)."""
        return Job(job_id(config), self._header, self._values, config)

    def with_search(self, config: JobConfig, searched: dict[str, str]) -> Job:
        """A trial of this grid point: `config`, labelled by the point's settings and
        then the searched ones (dotted path -> display value)."""
        keys = (*self._header.keys, *searched)
        header = _Header(keys, tuple(_short_names(list(keys)).values()))
        return Job(job_id(config), header, (*self._values, *searched.values()), config)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, label={self.label!r})"


@dataclass
class Plan:
    """A matrix expanded into jobs."""

    name: str
    description: str
    path: Path
    runs_dir: str | None
    jobs: list[Job]
    axes: list[str]  # varying dotted keys, in order
    points: int = 0  # matrix points before identical jobs were merged
    spec: MatrixSpec | None = None
    # with a `search:` block, each job above is a grid point whose trials are sampled
    # at run time over these distributions
    search: list[Dist] = field(default_factory=list)

    @property
    def axis_names(self) -> list[str]:
        """Short column names of the varying axes: `lr` for `train.lr`."""
        return list(_short_names(self.axes).values())

    def to_planfile(self) -> PlanFile:
        return PlanFile(
            name=self.name,
            description=self.description,
            matrix_path=str(self.path),
            axes=self.axes,
            jobs=[PlanEntry(id=j.id, label=j.label, settings=j.settings) for j in self.jobs],
        )


class _Set:
    """One assignment a matrix point makes: `path = value`."""

    __slots__ = ("display", "label", "origin", "path", "source", "units", "value")

    def __init__(
        self,
        path: str,
        value: Any,
        origin: tuple,
        display: str,
        source: Any,
        label: str | None = None,
    ):
        self.path = path
        self.label = label  # the name of the value on a labelled axis
        self.value = value
        self.origin = origin  # where in the YAML file the value was written
        self.display = display
        self.source = source  # hashable identity of this assignment, for caching
        self.units = [(u, self, *rest) for u, *rest in _units(path, value, origin)]


def _units(path: str, value: Any, origin: tuple) -> list[tuple[str, list[str], Any, tuple]]:
    """(validation unit, path inside the unit, value, origin) for one assignment.

    A unit is a top-level section, except that `train` (no cross-field rules) is
    validated field by field: `train.lr` and `train.loss` are units of their own.
    """
    parts = path.split(".")
    if parts[0] != "train":
        return [(parts[0], parts[1:], value, origin)]
    if len(parts) > 1:
        return [(f"train.{parts[1]}", parts[2:], value, origin)]
    if isinstance(value, dict):  # an axis at `train` whose values are mappings
        return [(f"train.{k}", [], v, (*origin, k)) for k, v in value.items()]
    return [("train", [], value, origin)]


@dataclass
class _Group:
    """A grid axis (one key) or a zip group (several keys moving together)."""

    keys: list[str]
    rows: list[list[_Set]]  # rows[r] = the assignments of row r, one per key


@dataclass
class _Point:
    rows: tuple[int, ...] | None  # one row per group; None for a point added by include
    sets: list[_Set] = field(default_factory=list)  # include additions / new-point values


def load_plan(path: str | Path, *, max_jobs: int = DEFAULT_MAX_JOBS) -> Plan:
    """Read, validate and expand a matrix file; MatrixError lists every problem."""
    path = Path(path)
    data, positions = matrix_file.read(path)
    spec, problems = matrix_file.validate_spec(data, positions)
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
    problems = [] if problems is None else problems
    positions = positions or Positions(str(path or "<matrix>"))
    ex = _Expander(spec, positions, problems)
    jobs, axes, points = ex.run(max_jobs)
    dists = ex.check_search(jobs, base_dir=Path(path).parent if path else Path("."))
    if raise_now and problems:
        raise MatrixError(problems)
    return Plan(
        name=spec.name,
        description=spec.description,
        path=Path(path or "."),
        runs_dir=spec.runs_dir,
        jobs=jobs,
        axes=axes,
        points=points,
        spec=spec,
        search=dists,
    )


class _Expander:
    def __init__(self, spec: MatrixSpec, positions: Positions, problems: list[Problem]):
        self.spec = spec
        self.pos = positions
        self.problems = problems
        self.unit_cache: dict[tuple, tuple[Any, str | None] | None] = {}
        self.deferred: dict[tuple[str, str], list[Problem]] = {}
        self.cross_cache: dict[tuple, list[tuple[str, str]]] = {}

    def problem(self, origin: tuple, key: str, message: str) -> None:
        self.problems.append(self.pos.problem(origin, key, message))

    # ------------------------------------------------------------- structure

    def run(self, max_jobs: int) -> tuple[list[Job], list[str], int]:
        self.check_base()
        groups = self.groups()  # axes that address no field are reported and left out
        seeds = self.spec.seeds or [None]
        product = math.prod(len(g.rows) for g in groups)
        upper = (product + len(self.spec.include)) * len(seeds)
        if upper > max_jobs:
            where = ("grid",) if self.spec.grid else ()
            self.problem(
                where,
                "grid",
                f"the matrix makes {product * len(seeds):,} jobs (before exclude), more than "
                f"the limit of {max_jobs:,}; raise it with --max-jobs to plan it",
            )
            return [], [], 0
        axis_keys = {k: gi for gi, g in enumerate(groups) for k in g.keys}
        # broken entries are skipped (and reported) so that the jobs are still checked
        excludes = self.matchers(self.spec.exclude, "exclude", groups, axis_keys, strict=True)
        includes = self.matchers(self.spec.include, "include", groups, axis_keys, strict=False)
        points = [
            _Point(rows)
            for rows in itertools.product(*(range(len(g.rows)) for g in groups))
            if not any(all(rows[gi] in m[gi] for gi in m) for m in excludes if m)
        ]
        points += self.apply_includes(points, includes, groups, axis_keys)
        return self.jobs(points, groups, seeds)

    def check_search(self, jobs: list[Job], *, base_dir: Path) -> list[Dist]:
        """Parse and check the search space: names, bounds, and that every bound is a
        valid setting for the job schema (lr >= 0 ...), reported at the space key."""
        search = self.spec.search
        if search is None:
            return []
        where = ("search",)
        if search.metric not in METRICS:
            self.problem(
                (*where, "metric"),
                "search.metric",
                f"unknown metric '{search.metric}'; expected one of: {', '.join(METRICS)}"
                f"{catalog.did_you_mean(search.metric, METRICS)}",
            )
        space = dict(search.space)
        if search.space_file:
            try:
                space.update(read_space_file(base_dir / search.space_file))
            except (OSError, ValueError) as err:
                self.problem((*where, "space_file"), "search.space_file", f"cannot read: {err}")
        if not space:
            self.problem(where, "search.space", "the search space is empty")
        fixed = set(self.spec.grid) | {k for z in self.spec.zip_ for k in z}
        dists, problems = parse_space(space, fixed=fixed)
        for key, message in problems:
            self.problem((*where, "space", key), f"search.space.{key}", message)
        if search.strategy == "grid":
            for d in dists:
                try:
                    d.grid_values()
                except ValueError as err:
                    self.problem((*where, "space", d.path), f"search.space.{d.path}", str(err))
        # every bound (or choice) must itself be a valid setting; checked on the unit
        # it belongs to, against the base (skipped where the base alone is incomplete)
        task = jobs[0].part("task") if jobs else "image-classification"
        invalid = self.untouched(task)[4]
        for d in dists:
            for value in d.bounds():
                s = _Set(d.path, value, (*where, "space", d.path), _fmt(value), ("q", d.path))
                for entry in s.units:
                    if entry[0] not in invalid:
                        self.unit(entry[0], [entry], task)
        return dists

    def check_base(self) -> None:
        fields = list(JobConfig.model_fields)
        for key in self.spec.base:
            if key not in JobConfig.model_fields:
                self.problem(
                    ("base", key),
                    f"base.{key}",
                    f"unknown key '{key}'{catalog.did_you_mean(str(key), fields)}; "
                    f"a job config has: {', '.join(fields)}",
                )

    def groups(self) -> list[_Group]:
        groups: list[_Group] = []
        for key, values in self.spec.grid.items():
            origin = ("grid", key)
            if not self.check_path(key, origin):
                continue
            if not isinstance(values, (list, dict)):
                self.problem(
                    origin,
                    key,
                    f"an axis is a list of values or a mapping label -> value, got {values!r}; "
                    f"a single value belongs in base",
                )
                continue
            items = list(values.items()) if isinstance(values, dict) else list(enumerate(values))
            if not items:
                self.problem(origin, key, "this axis has no values")
                continue
            labelled = isinstance(values, dict)
            rows = [
                [
                    _Set(key, v, (*origin, i), str(i), ("g", key, i), label=str(i))
                    if labelled
                    else _Set(key, v, (*origin, i), _fmt(v), ("g", key, i))
                ]
                for i, v in items
            ]
            groups.append(_Group([key], rows))
        for g, zipped in enumerate(self.spec.zip_):
            origin = ("zip", g)
            keys = [k for k in zipped if self.check_path(k, (*origin, k))]
            for k in keys:
                if k in self.spec.grid:
                    self.problem((*origin, k), k, "this key is both a grid axis and in zip")
            if not zipped:
                self.problem(origin, f"zip[{g}]", "an empty zip group")
                continue
            not_lists = [k for k, v in zipped.items() if not isinstance(v, list)]
            for k in not_lists:
                self.problem((*origin, k), k, "a zip entry must be a list of values")
            if not_lists:
                continue
            lengths = {k: len(v) for k, v in zipped.items()}
            if len(set(lengths.values())) != 1:
                detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
                self.problem(origin, f"zip[{g}]", f"zip lists must have equal length ({detail})")
                continue
            if 0 in lengths.values():
                self.problem(origin, f"zip[{g}]", "zip lists have no values")
                continue
            if len(keys) != len(zipped):
                continue
            n = next(iter(lengths.values()))
            rows = [
                [
                    _Set(k, zipped[k][r], (*origin, k, r), _fmt(zipped[k][r]), ("z", k, r))
                    for k in keys
                ]
                for r in range(n)
            ]
            groups.append(_Group(keys, rows))
        if self.spec.seeds:
            if any("train.seed" in g.keys for g in groups):
                self.problem(("seeds",), "seeds", "give seeds or a train.seed axis, not both")
            dupes = sorted({s for s in self.spec.seeds if self.spec.seeds.count(s) > 1})
            if dupes:
                self.problem(("seeds",), "seeds", f"repeated seeds: {dupes}")
        seen: dict[str, int] = {}
        for g in groups:
            for k in g.keys:
                seen[k] = seen.get(k, 0) + 1
        return groups

    def check_path(self, key: str, origin: tuple) -> bool:
        message = paths.check(key)
        if message:
            self.problem(origin, key, message)
        return message is None

    def matchers(
        self,
        entries: list[dict[str, Any]],
        what: str,
        groups: list[_Group],
        axis_keys: dict[str, int],
        *,
        strict: bool,
    ) -> list[dict[int, set[int]]]:
        """For each entry, the rows of each group it matches (axis keys only)."""
        out = []
        for i, entry in enumerate(entries):
            origin = (what, i)
            if not entry:
                self.problem(origin, f"{what}[{i}]", f"an empty {what} entry")
                out.append({})
                continue
            match: dict[int, set[int]] = {}
            for key, value in entry.items():
                if key not in axis_keys:
                    if strict:
                        self.problem(
                            (*origin, key),
                            key,
                            f"exclude keys must be axes of the matrix; '{key}' is not one"
                            f"{catalog.did_you_mean(key, axis_keys)}",
                        )
                    else:
                        self.check_path(key, (*origin, key))
                    continue
                gi = axis_keys[key]
                g = groups[gi]
                col = g.keys.index(key)
                rows = {r for r, row in enumerate(g.rows) if _matches(row[col], value)}
                match[gi] = match.get(gi, rows) & rows
            out.append(match)
        return out

    def apply_includes(
        self,
        points: list[_Point],
        includes: list[dict[int, set[int]]],
        groups: list[_Group],
        axis_keys: dict[str, int],
    ) -> list[_Point]:
        new = []
        for i, (entry, match) in enumerate(zip(self.spec.include, includes, strict=True)):
            extra = [
                _Set(k, v, ("include", i, k), _fmt(v), ("i", i, k))
                for k, v in entry.items()
                if k not in axis_keys
            ]
            hit = False
            for p in points:
                if p.rows is not None and all(p.rows[gi] in rows for gi, rows in match.items()):
                    hit = True
                    p.sets = [s for s in p.sets if s.path not in entry] + extra
            if not hit:
                sets = []
                for k, v in entry.items():
                    if k in axis_keys:
                        g = groups[axis_keys[k]]
                        col = g.keys.index(k)
                        same = [row[col] for row in g.rows if _matches(row[col], v)]
                        if same:  # reuse the axis value (a label names its mapping value)
                            s = same[0]
                            sets.append(_Set(k, s.value, ("include", i, k), s.display, s.source))
                            continue
                    sets.append(_Set(k, v, ("include", i, k), _fmt(v), ("i", i, k)))
                new.append(_Point(None, sets))
        return new

    # ------------------------------------------------------------------ jobs

    def jobs(
        self, points: list[_Point], groups: list[_Group], seeds: list[int | None]
    ) -> tuple[list[Job], list[str], int]:
        axes = [k for g in groups for k in g.keys]
        for p in points:
            axes += [s.path for s in p.sets if s.path not in axes]
        if seeds != [None]:
            axes.append("train.seed")  # shown only if it varies, like every axis
        self.check_sections()
        seed_sets = [
            None if seed is None else _Set("train.seed", seed, ("seeds", i), str(seed), ("s", i))
            for i, seed in enumerate(seeds)
        ]
        every_set = [s for g in groups for row in g.rows for s in row]
        every_set += [s for p in points for s in p.sets] + [s for s in seed_sets if s]
        self.variable_units = {entry[0] for s in every_set for entry in s.units}
        found: dict[str, tuple[Any, _Point, _Set | None]] = {}
        self.group_list = groups
        count = len(points) * len(seed_sets)
        before = len(self.problems)
        if any(e[0] == "task" for s in every_set for e in s.units):
            # the task changes the template itself: validate every job whole (rare)
            for p in points:
                sets = [s for g, r in zip(groups, p.rows or (), strict=False) for s in g.rows[r]]
                for seed_set in seed_sets:
                    full = [*sets, *p.sets, *([seed_set] if seed_set else [])]
                    built = self.build(full, _by_unit(full))
                    if built is not None:
                        template, touched, fragments, _ = built
                        jid = hash_id(template.format(*fragments))
                        found.setdefault(jid, (touched, p, seed_set))
        else:
            self.walk(points, groups, seed_sets, found)
        if len(self.problems) > before:
            return [], [], count
        return self.finish(found, axes), self.varying, count

    def walk(
        self,
        points: list[_Point],
        groups: list[_Group],
        seed_sets: list[_Set | None],
        found: dict[str, tuple[Any, _Point, _Set | None]],
    ) -> None:
        """Validate and hash every job, sharing work between neighbouring points.

        Points come in product order, so consecutive points share a prefix of axis
        values. A stack holds the validated state after each axis; a point re-applies
        only the axes after its common prefix with the previous point."""
        task_unit = self.unit("task", (), None)
        if task_unit is None:
            return
        task = task_unit[0]
        base, template, slots, fragments, invalid = self.untouched(task)
        base_data, base_model, base_lora = base["data"], base["model"], base["lora"]
        cross_cache, cache = self.cross_cache, self.unit_cache
        seed_slot = slots["train.seed"] if seed_sets != [None] else None
        root = ({}, {"task": task}, list(fragments), frozenset())
        # units set again after axis d (by later axes, includes or seeds) wait until then
        units_of = [{e[0] for row in g.rows for s in row for e in s.units} for g in groups]
        # (seeds come last and set only train.seed, which no axis may also set)
        last = {e[0] for p in points for s in p.sets for e in s.units}
        defer, later = [], set(last)
        for units in reversed(units_of):
            defer.append(frozenset(units & later))
            later |= units
        defer.reverse()
        now = frozenset()
        tail = self.tail_unit(groups, units_of, last, slots) if seed_slot is None else None
        prefix: tuple = (None,)
        stack: list[Any] = [root]
        previous: tuple[int, ...] = ()
        for p in points:
            if tail is not None and p.rows is not None and not p.sets:
                # the last axis alone sets its unit: validate the rest of the point once,
                # hash the text before that unit once, and per value only the rest
                k = 0
                while k < len(previous) - 1 and previous[k] == p.rows[k]:
                    k += 1
                del stack[k + 1 :]
                for d in range(k, len(groups) - 1):
                    row = groups[d].rows[p.rows[d]]
                    stack.append(self.apply(stack[-1], row, task=task, slots=slots, defer=defer[d]))
                previous = p.rows
                state = stack[-1]
                if state is None:
                    continue
                if prefix[0] is not state:
                    # units held back for includes are final for a plain point
                    final = state
                    if state[3]:
                        final = self.apply(state, [], task=task, slots=slots, defer=now)
                    opened = (
                        (None, "", False)
                        if final is None
                        else self.open_prefix(final, tail, p, task, template, slots)
                    )
                    prefix = (state, final, *opened)
                _, final, head, after, ok = prefix
                if not ok:
                    continue
                entry = groups[-1].rows[p.rows[-1]][0].units[0]
                key = (tail, task if tail in _TASK_DEPENDENT else None, entry[1].source)
                got = cache[key] if key in cache else self.unit(tail, [entry], task)
                if got is None:
                    continue
                digest = head.copy()
                digest.update((got[1] + after).encode())
                jid = digest.hexdigest()[:ID_LENGTH]
                if jid not in found:
                    found[jid] = ((final[1], tail, got[0]), p, None)
                continue
            if p.rows is None:  # a new point from include
                state = self.apply(root, p.sets, task=task, slots=slots, defer=now)
            else:
                k = 0
                while k < len(previous) and previous[k] == p.rows[k]:
                    k += 1
                del stack[k + 1 :]
                for d in range(k, len(groups)):
                    row = groups[d].rows[p.rows[d]]
                    stack.append(self.apply(stack[-1], row, task=task, slots=slots, defer=defer[d]))
                previous = p.rows
                state = stack[-1]
                if state is not None and (p.sets or state[3]):
                    state = self.apply(state, p.sets, task=task, slots=slots, defer=now)
            if state is None:
                continue
            by_unit, touched, frags, _ = state
            if invalid and any(u not in by_unit for u in invalid):
                for unit in invalid:
                    if unit not in by_unit:
                        self.problems += self.deferred.pop((task, unit), [])
                continue
            cross_key = (
                task,
                id(touched.get("data", base_data)),
                id(touched.get("model", base_model)),
                id(touched.get("lora", base_lora)),
            )
            cross = cross_cache.get(cross_key)
            if cross is None:
                cross = [] if self.cross_ok(touched, self.point_sets(p, None)) else [True]
            if cross:
                continue
            if seed_slot is None:
                jid = hash_id(template.format(*frags))
                if jid not in found:
                    found[jid] = (touched, p, None)
                continue
            # seeds change one unit: hash the text before it once, per seed the rest
            marked = list(frags)
            marked[seed_slot] = "\x00"
            before_seed, after_seed = template.format(*marked).split("\x00")
            head = hashlib.sha256(before_seed.encode())
            for seed_set in seed_sets:
                key = ("train.seed", None, seed_set.source)
                got = cache.get(key) or self.unit("train.seed", seed_set.units, task)
                if got is None:
                    continue
                digest = head.copy()
                digest.update((got[1] + after_seed).encode())
                jid = digest.hexdigest()[:ID_LENGTH]
                if jid not in found:
                    found[jid] = ((touched, "train.seed", got[0]), p, seed_set)

    def tail_unit(self, groups, units_of, last, slots) -> str | None:
        """The unit the last axis sets, if that axis alone sets it and it needs no
        cross-section check: then points differ from their neighbours in one fragment."""
        if not groups or len(units_of[-1]) != 1:
            return None
        (unit,) = units_of[-1]
        if unit not in slots or unit in ("task", "data", "model", "lora") or unit in last:
            return None
        if any(unit in units for units in units_of[:-1]):
            return None
        if not all(len(row) == 1 and len(row[0].units) == 1 for row in groups[-1].rows):
            return None
        return unit

    def open_prefix(self, state, tail: str, p: _Point, task: str, template: str, slots):
        """(hash of the canonical text before the tail unit, the text after it, whether
        the prefix is valid) for a validated prefix state."""
        by_unit, touched, frags, _ = state
        invalid = [u for u in self.untouched(task)[4] if u not in by_unit and u != tail]
        if invalid:
            for unit in invalid:
                self.problems += self.deferred.pop((task, unit), [])
            return None, "", False
        if not self.cross_ok(touched, self.point_sets(p, None)):
            return None, "", False
        marked = list(frags)
        marked[slots[tail]] = "\x00"
        before, after = template.format(*marked).split("\x00")
        return hashlib.sha256(before.encode()), after, True

    def apply(self, state, sets: list[_Set], *, task: str, slots: dict[str, int], defer: frozenset):
        """The state (units' sets, validated units, JSON fragments, units awaiting
        validation) after `sets`; None when a unit it validates is invalid.

        A unit that a later axis also sets is validated only once all its values are
        in (`defer`): `distill.enabled: true` alone is invalid until the teacher comes."""
        if state is None:
            return None
        by_unit, touched, frags, pending = dict(state[0]), dict(state[1]), list(state[2]), state[3]
        changed = set()
        for s in sets:
            for entry in s.units:
                unit = entry[0]
                given = by_unit.get(unit)
                by_unit[unit] = [*given, entry] if given else [entry]
                changed.add(unit)
        waiting = pending | changed
        cache = self.unit_cache
        for unit in waiting - defer:
            given = by_unit[unit]
            key = (unit, task if unit in _TASK_DEPENDENT else None, _sources(given))
            got = cache[key] if key in cache else self.unit(unit, given, task)
            if got is None:
                return None
            touched[unit] = got[0]
            slot = slots.get(unit)
            if slot is not None:
                frags[slot] = got[1]
        return by_unit, touched, frags, frozenset(waiting & defer)

    def cross_ok(self, touched: dict[str, Any], sets: list[_Set]) -> bool:
        """cross_check, cached on the identity of the sections it reads."""
        task = touched["task"]
        base = self.untouched(task)[0]
        parts = [touched.get(n, base.get(n)) for n in ("data", "model", "lora")]
        key = (task, *map(id, parts))
        cross = self.cross_cache.get(key)
        if cross is None:
            cross = self.cross_cache[key] = cross_check(_assemble({**base, **touched}))
            for dotted, message in cross:
                self.problem(_origin(dotted, sets), dotted, message)
        return not cross

    def check_sections(self) -> bool:
        """Validate what no unit covers: unknown keys and the shape of base.train."""
        train = self.spec.base.get("train")
        if train is None:
            return True
        if not isinstance(train, dict):
            self.problem(("base", "train"), "base.train", "must be a mapping of settings")
            return False
        try:
            TrainConfig.model_validate(train)
        except ValidationError as err:
            for e in err.errors():
                self.report_error("train", e, [])
            return False
        return True

    def build(self, sets: list[_Set], by_unit: dict[str, list]):
        """Validate one matrix point (cached per unit); None if it is invalid. Returns
        (canonical JSON template, validated units it sets, fragments to fill the
        template with, the template slot of train.seed).

        This runs once per matrix point, so it only looks up the units the point
        touches; everything else comes from the base, validated once per task."""
        task = self.unit("task", by_unit.get("task", ()), None)
        if task is None:
            return None
        task_value = task[0]
        _, template, slots, base_fragments, invalid = self.untouched(task_value)
        touched: dict[str, Any] = {"task": task_value}
        fragments = list(base_fragments)
        cache = self.unit_cache
        for unit, given in by_unit.items():
            key = (unit, task_value if unit in _TASK_DEPENDENT else None, _sources(given))
            got = cache[key] if key in cache else self.unit(unit, given, task_value)
            if got is None:
                return None
            touched[unit] = got[0]
            slot = slots.get(unit)
            if slot is not None:
                fragments[slot] = got[1]
        missing = [u for u in invalid if u not in by_unit]
        if missing:
            for unit in missing:
                self.problems += self.deferred.pop((task_value, unit), [])
            return None
        if not self.cross_ok(touched, sets):
            return None
        return template, touched, fragments, slots.get("train.seed")

    def untouched(self, task: str):
        """Every unit as the base alone gives it, for one task: (values, a canonical
        JSON template with a slot per unit the matrix varies, slot of each such unit,
        their base fragments, units the base alone leaves invalid).

        A unit the base leaves invalid (say `model` without a name, given by an axis)
        has its problems reported only if a point really uses it."""
        key = ("untouched", task)
        if key not in self.unit_cache:
            parts, fragments, invalid = {}, {}, []
            for unit in _UNITS:
                saved, self.problems = self.problems, []
                got = self.unit(unit, (), task)
                self.deferred[(task, unit)], self.problems = self.problems, saved
                parts[unit] = _INVALID if got is None else got[0]
                fragments[unit] = "null" if got is None else got[1]
                if got is None:
                    invalid.append(unit)
            fixed = {u: f for u, f in fragments.items() if u not in self.variable_units}
            slotted = [u for u in _SLOT if u in self.variable_units]
            slots_of = set(slotted)
            marker = "\x00"  # never in JSON text: stands for a slot while escaping braces
            filled = _CANONICAL.format(*[marker if u in slots_of else fixed[u] for u in _SLOT])
            template = filled.replace("{", "{{").replace("}", "}}").replace(marker, "{}")
            slots = {u: i for i, u in enumerate(slotted)}
            base_fragments = [fragments[u] for u in slotted]
            self.unit_cache[key] = (parts, template, slots, base_fragments, invalid)
        return self.unit_cache[key]

    def unit(self, unit: str, given, task: str | None) -> tuple[Any, str | None] | None:
        """(validated value, canonical JSON of its normalised form) for one unit; cached.
        None when invalid (the problems are recorded once)."""
        key = (unit, task if unit in _TASK_DEPENDENT else None, _sources(given))
        if key in self.unit_cache:
            return self.unit_cache[key]
        section, _, field_name = unit.partition(".")
        raw = self.spec.base.get(section)
        if field_name:
            raw = raw.get(field_name) if isinstance(raw, dict) else None
        for _unit, _set, inner, value, _where in given:
            raw = _assign(raw, inner, value)
        sets = [g[1] for g in given]
        result = None
        if unit == "task":
            value = "image-classification" if raw is None else raw
            if value in catalog.TASKS:
                result = (value, json.dumps(value))
            else:
                self.problem(
                    _origin("task", sets),
                    "task",
                    f"unknown task '{value}'; expected one of: {', '.join(catalog.TASKS)}"
                    f"{catalog.did_you_mean(str(value), catalog.TASKS)}",
                )
        elif field_name:
            try:
                value = getattr(
                    TrainConfig.model_validate({} if raw is None else {field_name: raw}),
                    field_name,
                )
            except ValidationError as err:
                for e in err.errors():
                    self.report_error("train", e, sets)
            else:
                norm = normalized_train_field(field_name, _dump_field(field_name, value))
                frag = None if norm is DROP else canonical_json(norm)
                result = (value, frag)
        elif raw is None and JobConfig.model_fields[section].is_required():
            self.problem(("base",), f"base.{section}", f"required: every job needs `{section}:`")
        else:
            try:
                value = _SECTION_MODELS[section].model_validate({} if raw is None else raw)
            except ValidationError as err:
                for e in err.errors():
                    self.report_error(section, e, sets)
            else:
                result = (value, canonical_json(normalized_section(section, value, task=task)))
        self.unit_cache[key] = result
        return result

    def report_error(self, name: str, e: dict[str, Any], sets: list[_Set]) -> None:
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "union["))]
        dotted = ".".join([name, *loc])
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = ".".join([name, *loc[:-1]])
            fields = paths.fields_of(parent)
            message = (
                f"unknown key '{loc[-1]}'{catalog.did_you_mean(loc[-1], fields)}; "
                f"'{parent}' has: {', '.join(fields)}"
            )
        elif e["type"] == "missing":
            message = "required key missing"
        elif e["type"] != "unknown_name" and not isinstance(e.get("input"), (dict, list)):
            message = f"{message} (got {e.get('input')!r})"
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        self.problem(_origin(dotted, sets), dotted, message)

    def point_sets(self, p: _Point, seed_set: _Set | None) -> list[_Set]:
        """Every assignment of one job: its axis values, include keys, seed."""
        sets = [s for g, r in zip(self.group_list, p.rows or (), strict=False) for s in g.rows[r]]
        return [*sets, *p.sets, *([seed_set] if seed_set is not None else [])]

    def finish(self, found: dict[str, tuple[Any, _Point, _Set | None]], axes: list[str]):
        """Jobs with labels made of the settings that vary (in axis order)."""
        where = {a: i for i, a in enumerate(axes)}
        n = len(axes)
        groups = self.group_list
        shown = []
        for touched, p, seed_set in found.values():
            if p.rows is not None and not p.sets:
                # a grid point sets exactly the axes, in axis order (seed last)
                values = [s.display for g, r in zip(groups, p.rows) for s in g.rows[r]]  # noqa: B905
                if seed_set is not None:
                    values.append(seed_set.display)
                if len(values) == n:
                    shown.append(values)
                    continue
            values = [""] * n  # a point added by include may lack some axes
            for s in self.point_sets(p, seed_set):
                values[where[s.path]] = s.display
            for a, i in where.items():
                if not values[i]:
                    values[i] = _effective(self.full_parts(touched), a)
            shown.append(values)
        varying = [i for i in range(n) if len({v[i] for v in shown}) > 1]
        keys = tuple(axes[i] for i in varying)
        header = _Header(keys, tuple(_short_names(list(keys)).values()))
        base = {task: self.untouched(task)[0] for task in catalog.TASKS if self.has_task(task)}
        jobs = [
            Job(jid, header, tuple([values[i] for i in varying]), parts=(base, t))
            for (jid, (t, _, _)), values in zip(found.items(), shown)  # noqa: B905
        ]
        self.varying = list(keys)
        return self.resolve_teachers(jobs)

    def has_task(self, task: str) -> bool:
        return ("untouched", task) in self.unit_cache

    def full_parts(self, touched: dict[str, Any] | tuple) -> dict[str, Any]:
        if isinstance(touched, tuple):
            touched = {**touched[0], touched[1]: touched[2]}
        return {**self.untouched(touched["task"])[0], **touched}

    def resolve_teachers(self, jobs: list[Job]) -> list[Job]:
        """Point `distill.teacher_job` selectors at job ids; teachers run first."""
        distills = [v for k, v in self.unit_cache.items() if k[0] == "distill" and v]
        if not any(v[0].enabled and v[0].teacher_job for v in distills):
            return jobs
        ids = {j.id for j in jobs}
        teachers: set[str] = set()
        out = []
        for job in jobs:
            distill = job.part("distill")
            selector = distill.teacher_job if distill.enabled else None
            if selector is None or selector in ids:
                teachers.update([selector] if selector else [])
                out.append(job)
                continue
            found = [j for j in jobs if not j.part("distill").enabled and _selects(selector, j)]
            if len(found) != 1:
                which = ", ".join(j.label or j.id for j in found[:5]) or "none"
                self.problem(
                    ("base", "distill", "teacher_job"),
                    "distill.teacher_job",
                    f"'{selector}' must pick exactly one non-distilled job; it picks {which}",
                )
                out.append(job)
                continue
            teacher = found[0].id
            teachers.add(teacher)
            distill = job.config.distill.model_copy(update={"teacher_job": teacher})
            out.append(job.replace_config(job.config.model_copy(update={"distill": distill})))
        # stable: teachers first, everything else in matrix order
        return sorted(out, key=lambda j: j.id not in teachers)


_TRAIN_FIELDS = sorted(TrainConfig.model_fields)
_UNITS = [
    u
    for name in SECTIONS
    for u in ([f"train.{f}" for f in _TRAIN_FIELDS] if name == "train" else [name])
]


def _canonical_template() -> str:
    """'{"data":{},"distill":{},...,"train":{"batch_size":{},...}}' with {} per unit,
    so that filling it gives exactly `canonicalcanonical_json(normalized(cfg))`."""
    top = []
    for name in SECTIONS:
        if name == "train":
            inner = [f'"{f}":{{}}' for f in _TRAIN_FIELDS if f != "log_every"]
            top.append('"train":{{' + ",".join(inner) + "}}")
        else:
            top.append(f'"{name}":{{}}')
    return "{{" + ",".join(top) + "}}"


_CANONICAL = _canonical_template()
_INVALID = object()  # a unit the base alone leaves invalid
_TASK_DEPENDENT = frozenset({"data", "model"})  # units whose normal form depends on the task
# position of each unit's fragment in _CANONICAL (train.log_every never matters: no slot)
_SLOT = {u: i for i, u in enumerate(u for u in _UNITS if u != "train.log_every")}


class _Parts(dict):
    """A job's validated units: the base's, overlaid with the ones its point sets."""

    def __init__(self, base: dict[str, Any], touched: dict[str, Any]):
        super().__init__()
        self.base, self.touched = base, touched

    @staticmethod
    def of(packed: tuple) -> _Parts:
        """From what the expander stores per job: (base units by task, touched units)
        where touched may be (units of the point, its seed)."""
        bases, touched = packed
        if isinstance(touched, tuple):  # (units of the point, the unit its tail sets, value)
            point, unit, value = touched
            touched = {**point, unit: value}
        return _Parts(bases[touched["task"]], touched)

    def __contains__(self, key: object) -> bool:
        return key in self.touched or key in self.base

    def __getitem__(self, key: str) -> Any:
        return self.touched[key] if key in self.touched else self.base[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.touched:
            return self.touched[key]
        return self.base.get(key, default)


def _by_unit(sets: list[_Set]) -> dict[str, list]:
    """unit -> [(unit, set, path inside the unit, value, origin), ...]."""
    by_unit: dict[str, list] = {}
    for s in sets:
        for entry in s.units:
            given = by_unit.get(entry[0])
            if given is None:
                by_unit[entry[0]] = [entry]
            else:
                given.append(entry)
    return by_unit


def _sources(given) -> Any:
    """Cache key of the assignments that touch one unit (usually exactly one)."""
    if len(given) == 1:
        return given[0][1].source
    return tuple([g[1].source for g in given])


def _dump_field(name: str, value: Any) -> Any:
    """A TrainConfig field's value as JSON data, exactly as model_dump(mode='json')."""
    return TrainConfig.model_construct(**{name: value}).model_dump(mode="json", include={name})[
        name
    ]


def _assemble(parts: dict[str, Any]) -> JobConfig:
    """A JobConfig from validated units, without validating again."""
    train = TrainConfig.model_construct(
        **{f: parts[f"train.{f}"] for f in _TRAIN_FIELDS if f"train.{f}" in parts}
    )
    sections = {n: parts[n] for n in SECTIONS if n != "train" and n in parts}
    return JobConfig.model_construct(**sections, train=train)


def _assign(raw: Any, parts: list[str], value: Any) -> Any:
    """Copy of `raw` with `value` set at `parts`; mappings merge into mappings."""
    if not parts:
        if isinstance(value, dict) and isinstance(raw, dict):
            merged = dict(raw)
            for k, v in value.items():
                merged[k] = _assign(merged.get(k), [], v)
            return merged
        return value
    out = dict(raw) if isinstance(raw, dict) else {}
    out[parts[0]] = _assign(out.get(parts[0]), parts[1:], value)
    return out


def _origin(dotted: str, sets: list[_Set]) -> tuple:
    """The YAML location responsible for the value at a dotted config key: the value
    that set it, else a value set inside it (an axis made that section invalid), else
    the base."""
    for s in reversed(sets):
        if dotted == s.path or dotted.startswith(s.path + "."):
            rest = dotted[len(s.path) :].strip(".")
            return (*s.origin, *(rest.split(".") if rest else ()))
    for s in reversed(sets):
        if s.path.startswith(dotted + "."):
            return s.origin
    return ("base", *dotted.split("."))


def _matches(s: _Set, value: Any) -> bool:
    """An include/exclude value matches an axis value by value or by its label."""
    return s.value == value or (s.label is not None and s.label == str(value))


def _selects(selector: str, job: Job) -> bool:
    pairs = re.findall(r"([\w.]+)=([^\s,]+)", selector)
    if not pairs:
        return False
    for key, text in pairs:
        try:
            actual = paths.get(job.config, key)
        except KeyError:
            return False
        wanted = matrix_file.parse_yaml(text, "<selector>")[0]
        if actual != wanted and job.settings.get(key) != text and _fmt(actual) != text:
            return False
    return True


def _effective(parts: dict[str, Any], key: str) -> str:
    """Display of a job's value at `key`; '-' where the setting does not matter."""
    try:
        return _fmt(paths.get(normalized(_assemble(parts)), key))
    except KeyError:
        return "-"


def _short_names(keys: list[str]) -> dict[str, str]:
    """`train.lr` -> `lr`, `lora.enabled` -> `lora`, `model.name` -> `model`; full keys
    where two short names would collide."""
    last = []
    for k in keys:
        parts = k.split(".")
        if len(parts) > 1 and parts[-1] in ("enabled", "name"):
            parts = parts[:-1]
        last.append(parts[-1])
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _fmt(value: Any) -> str:
    """Compact, stable display of a setting: 1e-4, true, r=8,alpha=16."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3 and math.isfinite(value):
            for digits in range(16):
                text = f"{value:.{digits}e}"
                if float(text) == value:
                    break
            mantissa, exponent = text.split("e")
            return f"{mantissa}e{int(exponent)}"
        return repr(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(_fmt(v) for v in value)
    return str(value)

"""Expand a matrix into jobs: grid × zip, exclude, include, seeds; validate; dedupe.

Each job gets an id (hash of its normalised config), a label built from the settings
that vary, and its validated JobConfig. Validation is done per distinct config
*section* (data, model, lora, train, ...) and cached, so a 100,000-point matrix with a
few distinct values per axis validates a few hundred small dicts, not 100,000 jobs.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ftmatrix import catalog
from ftmatrix.config import (
    SECTIONS,
    JobConfig,
    cross_check,
    hash_id,
    job_id,
    normalized_section,
)
from ftmatrix.result import PlanEntry, PlanFile
from ftmatrix.runner import matrix as matrix_file
from ftmatrix.runner import paths
from ftmatrix.runner.matrix import MatrixError, MatrixSpec, Positions, Problem

DEFAULT_MAX_JOBS = 10_000
_SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: paths._submodel(JobConfig.model_fields[name].annotation)  # type: ignore[misc]
    for name in SECTIONS
    if name != "task"
}


@dataclass(frozen=True)
class Job:
    """One training job of a plan."""

    id: str  # 12 hex chars: hash of the normalised config, the job folder's name
    label: str  # "lr=1e-4 lora=r8": the varying settings only
    settings: dict[str, Any]  # varying dotted key -> display value, in axis order
    config: JobConfig


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

    def to_planfile(self) -> PlanFile:
        return PlanFile(
            name=self.name,
            description=self.description,
            matrix_path=str(self.path),
            axes=self.axes,
            jobs=[PlanEntry(id=j.id, label=j.label, settings=j.settings) for j in self.jobs],
        )


@dataclass(frozen=True)
class _Set:
    """One assignment a matrix point makes: `path = value`."""

    path: str
    value: Any
    origin: tuple  # where in the YAML file the value was written
    display: str
    source: Any  # hashable identity of this assignment, for caching


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
    )


class _Expander:
    def __init__(self, spec: MatrixSpec, positions: Positions, problems: list[Problem]):
        self.spec = spec
        self.pos = positions
        self.problems = problems
        self.section_cache: dict[tuple, tuple[Any, str | None, list]] = {}
        self.cross_cache: dict[tuple, list[tuple[str, str]]] = {}

    def problem(self, origin: tuple, key: str, message: str) -> None:
        self.problems.append(self.pos.problem(origin, key, message))

    # ------------------------------------------------------------- structure

    def run(self, max_jobs: int) -> tuple[list[Job], list[str], int]:
        before = len(self.problems)
        self.check_base()
        groups = self.groups()
        if len(self.problems) > before:
            return [], [], 0
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
        excludes = self.matchers(self.spec.exclude, "exclude", groups, axis_keys, strict=True)
        includes = self.matchers(self.spec.include, "include", groups, axis_keys, strict=False)
        if len(self.problems) > before:
            return [], [], 0
        points = [
            _Point(rows)
            for rows in itertools.product(*(range(len(g.rows)) for g in groups))
            if not any(all(rows[gi] in m[gi] for gi in m) for m in excludes if m)
        ]
        points += self.apply_includes(points, includes, groups, axis_keys)
        return self.jobs(points, groups, seeds)

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
                [_Set(key, v, (*origin, i), str(i) if labelled else _fmt(v), ("g", key, i))]
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
        if len(seeds) > 1:
            axes.append("train.seed")
        by_id: dict[str, tuple[JobConfig, dict[str, str], str]] = {}
        order: list[str] = []
        count = 0
        problems_before = len(self.problems)
        for p in points:
            base_sets: list[_Set] = []
            if p.rows is not None:
                for g, r in zip(groups, p.rows, strict=True):
                    base_sets += g.rows[r]
            base_sets += p.sets
            for seed in seeds:
                sets = base_sets
                if seed is not None:
                    i = self.spec.seeds.index(seed)
                    sets = [*base_sets, _Set("train.seed", seed, ("seeds", i), str(seed), ("s", i))]
                count += 1
                built = self.build(sets)
                if built is None:
                    continue
                cfg, canonical = built
                jid = hash_id(canonical)
                if jid not in by_id:
                    by_id[jid] = (cfg, {s.path: s.display for s in sets}, canonical)
                    order.append(jid)
        if len(self.problems) > problems_before:
            return [], [], count
        jobs = self.finish(order, by_id, axes)
        return jobs, self.varying, count

    def build(self, sets: list[_Set]) -> tuple[JobConfig, str] | None:
        """Validate (cached per section) and assemble one job; None if it is invalid."""
        by_section: dict[str, list[_Set]] = {}
        for s in sets:
            by_section.setdefault(s.path.split(".", 1)[0], []).append(s)
        task_sets = by_section.get("task", [])
        task = self.section("task", task_sets, None)
        if task[1] is None:
            return None
        task_value = task[0]
        parts = {}
        fragments = []
        ok = True
        for name in SECTIONS:
            value, fragment, _ = self.section(name, by_section.get(name, []), task_value)
            if fragment is None:
                ok = False
                continue
            parts[name] = value
            fragments.append(f'"{name}":{fragment}')
        if not ok:
            return None
        cfg = JobConfig.model_construct(**parts)
        key = tuple(tuple(s.source for s in by_section.get(n, ())) for n in SECTIONS)
        cross = self.cross_cache.get(key)
        if cross is None:
            cross = self.cross_cache[key] = cross_check(cfg)
            for dotted, message in cross:
                self.problem(_origin(dotted, sets), dotted, message)
        if cross:
            return None
        return cfg, "{" + ",".join(fragments) + "}"

    def section(self, name: str, sets: list[_Set], task: str | None):
        """(validated value, canonical JSON fragment or None if invalid, problems)."""
        key = (name, task, tuple(s.source for s in sets))
        hit = self.section_cache.get(key)
        if hit is not None:
            return hit
        raw = self.spec.base.get(name)
        for s in sets:
            raw = _assign(raw, s.path.split(".")[1:], s.value)
        value, fragment = None, None
        if name == "task":
            value = "image-classification" if raw is None else raw
            if value in catalog.TASKS:
                fragment = json.dumps(value)
            else:
                self.problem(
                    _origin("task", sets),
                    "task",
                    f"unknown task '{value}'; expected one of: {', '.join(catalog.TASKS)}"
                    f"{catalog.did_you_mean(str(value), catalog.TASKS)}",
                )
        else:
            model = _SECTION_MODELS[name]
            if raw is None and JobConfig.model_fields[name].is_required():
                self.problem(("base",), f"base.{name}", f"required: every job needs `{name}:`")
            else:
                try:
                    value = model.model_validate({} if raw is None else raw)
                except ValidationError as err:
                    for e in err.errors():
                        self.report_error(name, e, sets)
                else:
                    if task is not None:
                        fragment = json.dumps(
                            normalized_section(name, value, task=task),
                            sort_keys=True,
                            separators=(",", ":"),
                        )
        result = (value, fragment, [])
        self.section_cache[key] = result
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
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            message = f"{message} (got {e['input']!r})"
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        self.problem(_origin(dotted, sets), dotted, message)

    def finish(
        self,
        order: list[str],
        by_id: dict[str, tuple[JobConfig, dict[str, str], str]],
        axes: list[str],
    ) -> list[Job]:
        displays: dict[str, set[str]] = {a: set() for a in axes}
        for jid in order:
            cfg, shown, _ = by_id[jid]
            for a in axes:
                displays[a].add(shown.get(a) or _effective(cfg, a))
        varying = [a for a in axes if len(displays[a]) > 1]
        short = _short_names(varying)
        jobs = []
        for jid in order:
            cfg, shown, _ = by_id[jid]
            settings = {a: shown.get(a) or _effective(cfg, a) for a in varying}
            label = " ".join(f"{short[a]}={v}" for a, v in settings.items())
            jobs.append(Job(jid, label, settings, cfg))
        self.varying = varying
        return self.resolve_teachers(jobs)

    def resolve_teachers(self, jobs: list[Job]) -> list[Job]:
        """Point `distill.teacher_job` selectors at job ids; teachers run first."""
        ids = {j.id for j in jobs}
        teachers: set[str] = set()
        out = []
        for job in jobs:
            selector = job.config.distill.teacher_job if job.config.distill.enabled else None
            if selector is None or selector in ids:
                teachers.update([selector] if selector else [])
                out.append(job)
                continue
            found = [j for j in jobs if not j.config.distill.enabled and _selects(selector, j)]
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
            cfg = job.config.model_copy(update={"distill": distill})
            out.append(Job(job_id(cfg), job.label, job.settings, cfg))
        # stable: teachers first, everything else in matrix order
        return sorted(out, key=lambda j: j.id not in teachers)


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
    """The YAML location responsible for the value at a dotted config key."""
    for s in reversed(sets):
        if dotted == s.path or dotted.startswith(s.path + "."):
            rest = dotted[len(s.path) :].strip(".")
            return (*s.origin, *(rest.split(".") if rest else ()))
    return ("base", *dotted.split("."))


def _matches(s: _Set, value: Any) -> bool:
    """An include/exclude value matches an axis value by value or by its label."""
    return s.value == value or s.display == str(value) or s.origin[-1] == value


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


def _effective(cfg: JobConfig, key: str) -> str:
    try:
        return _fmt(paths.get(cfg, key))
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

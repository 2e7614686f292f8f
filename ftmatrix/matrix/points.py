"""The points of a matrix: grid axes × zip groups, minus excludes, plus includes.

A `Group` is one grid axis or one zip group (several keys moving together); a `Point`
picks one row of every group, or, when an include adds a point of its own, holds that
include's assignments. Labels, validation and hashing come later (plan.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ftmatrix import catalog
from ftmatrix.matrix import paths
from ftmatrix.matrix.labels import fmt
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.spec import MatrixSpec
from ftmatrix.matrix.units import Assignment, YamlPath

Match = dict[int, set[int]]  # group index -> the rows of that group an entry matches


@dataclass
class Group:
    """A grid axis (one key) or a zip group (several keys moving together)."""

    keys: list[str]
    rows: list[list[Assignment]]  # rows[r] = the assignments of row r, one per key


@dataclass
class Point:
    """One point of the matrix: a row per group, and what includes add to it."""

    rows: tuple[int, ...] | None  # one row per group; None for a point added by include
    sets: list[Assignment] = field(default_factory=list)  # include additions / own values


def check_path(key: str, origin: YamlPath, problems: Problems) -> bool:
    """Whether `key` addresses a config field; reported where it was written if not."""
    message = paths.check(key)
    if message:
        problems.add(origin, key, message)
    return message is None


def groups(spec: MatrixSpec, problems: Problems) -> list[Group]:
    """The grid axes and zip groups, in file order; broken ones are reported and left
    out, so that the rest of the matrix is still checked."""
    found = [_axis(key, values, problems) for key, values in spec.grid.items()]
    found += [_zip(g, zipped, spec, problems) for g, zipped in enumerate(spec.zip_)]
    out = [g for g in found if g is not None]
    if spec.seeds:
        if any("train.seed" in g.keys for g in out):
            problems.add(("seeds",), "seeds", "give seeds or a train.seed axis, not both")
        dupes = sorted({s for s in spec.seeds if spec.seeds.count(s) > 1})
        if dupes:
            problems.add(("seeds",), "seeds", f"repeated seeds: {dupes}")
    return out


def _axis(key: str, values: Any, problems: Problems) -> Group | None:
    origin = ("grid", key)
    if not check_path(key, origin, problems):
        return None
    if not isinstance(values, (list, dict)):
        problems.add(
            origin,
            key,
            f"an axis is a list of values or a mapping label -> value, got {values!r}; "
            f"a single value belongs in base",
        )
        return None
    items = list(values.items()) if isinstance(values, dict) else list(enumerate(values))
    if not items:
        problems.add(origin, key, "this axis has no values")
        return None
    if isinstance(values, dict):  # labelled: the label names the value
        rows = [
            [Assignment(key, v, (*origin, i), str(i), ("g", key, i), label=str(i))]
            for i, v in items
        ]
    else:
        rows = [[Assignment(key, v, (*origin, i), fmt(v), ("g", key, i))] for i, v in items]
    return Group([key], rows)


def _zip(g: int, zipped: dict[str, Any], spec: MatrixSpec, problems: Problems) -> Group | None:
    origin = ("zip", g)
    keys = [k for k in zipped if check_path(k, (*origin, k), problems)]
    for k in keys:
        if k in spec.grid:
            problems.add((*origin, k), k, "this key is both a grid axis and in zip")
    if not zipped:
        problems.add(origin, f"zip[{g}]", "an empty zip group")
        return None
    not_lists = [k for k, v in zipped.items() if not isinstance(v, list)]
    for k in not_lists:
        problems.add((*origin, k), k, "a zip entry must be a list of values")
    if not_lists:
        return None
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        problems.add(origin, f"zip[{g}]", f"zip lists must have equal length ({detail})")
        return None
    if 0 in lengths.values():
        problems.add(origin, f"zip[{g}]", "zip lists have no values")
        return None
    if len(keys) != len(zipped):
        return None
    n = next(iter(lengths.values()))
    rows = [
        [Assignment(k, zipped[k][r], (*origin, k, r), fmt(zipped[k][r]), ("z", k, r)) for k in keys]
        for r in range(n)
    ]
    return Group(keys, rows)


def points(spec: MatrixSpec, groups: list[Group], problems: Problems) -> list[Point]:
    """Every point: the product of the groups' rows, minus excludes, plus what includes
    add (keys on matching points, or points of their own)."""
    axis_keys = {k: gi for gi, g in enumerate(groups) for k in g.keys}
    # broken entries are skipped (and reported) so that the jobs are still checked
    excludes = _matchers(spec.exclude, "exclude", groups, axis_keys, problems)
    includes = _matchers(spec.include, "include", groups, axis_keys, problems)
    product: Iterable[tuple[int, ...]] = itertools.product(*(range(len(g.rows)) for g in groups))
    if any(excludes):
        product = (r for r in product if not any(_matched(r, m) for m in excludes if m))
    out = [Point(rows) for rows in product]
    return out + _include(spec, out, includes, groups, axis_keys)


def _matchers(
    entries: list[dict[str, Any]],
    what: str,
    groups: list[Group],
    axis_keys: dict[str, int],
    problems: Problems,
) -> list[Match]:
    """For each include or exclude entry, the rows of each group it matches (axis keys
    only: an include's other keys are what it adds)."""
    out: list[Match] = []
    for i, entry in enumerate(entries):
        origin = (what, i)
        if not entry:
            problems.add(origin, f"{what}[{i}]", f"an empty {what} entry")
            out.append({})
            continue
        match: Match = {}
        for key, value in entry.items():
            if key not in axis_keys:
                if what == "exclude":
                    problems.add(
                        (*origin, key),
                        key,
                        f"exclude keys must be axes of the matrix; '{key}' is not one"
                        f"{catalog.did_you_mean(key, axis_keys)}",
                    )
                else:
                    check_path(key, (*origin, key), problems)
                continue
            gi = axis_keys[key]
            g = groups[gi]
            col = g.keys.index(key)
            rows = {r for r, row in enumerate(g.rows) if matches(row[col], value)}
            match[gi] = match.get(gi, rows) & rows
        out.append(match)
    return out


def _matched(rows: tuple[int, ...], match: Match) -> bool:
    """Whether a point (its row of each group) is one an entry matches."""
    return all(rows[gi] in match[gi] for gi in match)


def matches(a: Assignment, value: Any) -> bool:
    """An include/exclude value matches an axis value by value or by its label."""
    return a.value == value or (a.label is not None and a.label == str(value))


def _include(
    spec: MatrixSpec,
    kept: list[Point],
    includes: list[Match],
    groups: list[Group],
    axis_keys: dict[str, int],
) -> list[Point]:
    """GitHub-Actions style: an include adds its other keys to every point it matches,
    and is a point of its own where it matches none."""
    new = []
    for i, (entry, match) in enumerate(zip(spec.include, includes, strict=True)):
        extra = [
            Assignment(k, v, ("include", i, k), fmt(v), ("i", i, k))
            for k, v in entry.items()
            if k not in axis_keys
        ]
        hit = False
        for p in kept:
            if p.rows is not None and all(p.rows[gi] in rows for gi, rows in match.items()):
                hit = True
                p.sets = [s for s in p.sets if s.path not in entry] + extra
        if not hit:
            new.append(Point(None, [_own(i, k, v, groups, axis_keys) for k, v in entry.items()]))
    return new


def _own(
    i: int, key: str, value: Any, groups: list[Group], axis_keys: dict[str, int]
) -> Assignment:
    """An assignment of a point an include adds; a value of an axis (or a label naming
    one) is that axis's value, so that it shares its validation."""
    if key in axis_keys:
        g = groups[axis_keys[key]]
        col = g.keys.index(key)
        same = [row[col] for row in g.rows if matches(row[col], value)]
        if same:
            a = same[0]
            return Assignment(key, a.value, ("include", i, key), a.display, a.source)
    return Assignment(key, value, ("include", i, key), fmt(value), ("i", i, key))

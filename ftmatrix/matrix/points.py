"""The points of a matrix: grid axes × zip groups, minus excludes, plus includes.

A `Group` is one grid axis or one zip group (several keys moving together); a `Point`
picks one row of every group, or, when an include adds a point of its own, holds that
include's assignments. Labels, validation and hashing come later (plan.py).

Structural mistakes are refused here, each at its key: a key in two groups, two axes
that set the same setting, values that would read the same in labels, an exclude that
matches no point or that leaves none, an include that changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ftmatrix import catalog
from ftmatrix.matrix import paths
from ftmatrix.matrix.labels import fmt, short_names
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.spec import MatrixSpec
from ftmatrix.matrix.units import Assignment, YamlPath

Match = dict[int, set[int]]  # group index -> the rows of that group an entry matches


@dataclass
class Group:
    """A grid axis (one key) or a zip group (several keys moving together)."""

    keys: list[str]
    rows: list[list[Assignment]]  # rows[r] = the assignments of row r, one per key
    origin: YamlPath = ()  # where the file wrote it: ("grid", key) or ("zip", i)


@dataclass
class Point:
    """One point of the matrix: a row per group, and what includes add to it."""

    rows: tuple[int, ...] | None  # one row per group; None for a point added by include
    sets: list[Assignment] = field(default_factory=list)  # include additions / own values


@dataclass
class Rule:
    """An include or exclude entry with its keys resolved: a key may name an axis by
    the short name labels show (`lr` for `train.lr`)."""

    what: str  # "include" or "exclude"
    index: int
    values: dict[str, Any]  # dotted key -> value (keys that address nothing left out)
    written: dict[str, str]  # dotted key -> the key as the file wrote it
    match: Match  # the rows of each group it matches (axis keys only)

    def origin(self, key: str | None = None) -> YamlPath:
        where = (self.what, self.index)
        return where if key is None else (*where, self.written[key])


def check_path(key: str, origin: YamlPath, *, problems: Problems) -> bool:
    """Whether `key` addresses a config field; reported where it was written if not."""
    message = paths.check(key)
    if message:
        problems.add(origin, key, message)
    return message is None


# ------------------------------------------------------------------ groups


def groups(spec: MatrixSpec, problems: Problems) -> list[Group]:
    """The grid axes and zip groups, in file order. Broken ones are reported and left
    out, so that the rest of the matrix is still checked, and no two groups left set
    the same setting."""
    found = [_axis(key, values, problems=problems) for key, values in spec.grid.items()]
    found += [_zip(g, zipped, spec=spec, problems=problems) for g, zipped in enumerate(spec.zip_)]
    out = _apart([g for g in found if g is not None], problems)
    if spec.seeds:
        if any(paths.overlap(leaf, "train.seed") for g in out for leaf in _leaves(g)):
            problems.add(("seeds",), "seeds", "give seeds or a train.seed axis, not both")
        dupes = sorted({s for s in spec.seeds if spec.seeds.count(s) > 1})
        if dupes:
            problems.add(("seeds",), "seeds", f"repeated seeds: {dupes}")
    return out


def _axis(key: str, values: Any, *, problems: Problems) -> Group | None:
    origin = ("grid", key)
    if not check_path(key, origin, problems=problems):
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
    _distinct([row[0] for row in rows], key, problems=problems)
    return Group([key], rows, origin)


def _zip(g: int, zipped: dict[str, Any], *, spec: MatrixSpec, problems: Problems) -> Group | None:
    origin = ("zip", g)
    keys = [k for k in zipped if check_path(k, (*origin, k), problems=problems)]
    in_grid = [k for k in keys if k in spec.grid]
    for k in in_grid:
        problems.add((*origin, k), k, "this key is both a grid axis and in zip")
    if not zipped:
        problems.add(origin, f"zip[{g}]", "an empty zip group")
        return None
    not_lists = [k for k, v in zipped.items() if not isinstance(v, list)]
    for k in not_lists:
        problems.add((*origin, k), k, "a zip entry must be a list of values")
    if not_lists or in_grid:
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
    for col, k in enumerate(keys):
        _distinct([row[col] for row in rows], k, problems=problems)
    return Group(keys, rows, origin)


def _distinct(column: list[Assignment], key: str, *, problems: Problems) -> None:
    """Two different values of one axis must read differently in labels and tables
    (`1` and `"1"` do not): else their jobs would share a label."""
    seen: dict[str, Assignment] = {}
    for a in column:
        first = seen.setdefault(a.display, a)
        same = type(first.value) is type(a.value) and first.value == a.value
        if first is a or (same and a.label is None):
            continue
        what = "labels" if a.label is not None else "values"
        problems.add(
            a.origin,
            key,
            f"{what} {_written(first)} and {_written(a)} both read '{a.display}' in job "
            f"labels; write them so that they differ",
        )


def _written(a: Assignment) -> str:
    """How the file wrote a value or label: text quoted, anything else as YAML."""
    raw = a.origin[-1] if a.label is not None else a.value
    return repr(raw) if isinstance(raw, str) else fmt(raw)


def _leaves(g: Group) -> set[str]:
    """Every setting a group writes, over all its rows."""
    return {leaf for key in g.keys for leaf in _key_leaves(g, key)}


def _key_leaves(g: Group, key: str) -> set[str]:
    """Every setting one key of a group writes, over all its rows."""
    col = g.keys.index(key)
    return {leaf for row in g.rows for leaf in paths.leaves(key, row[col].value)}


class Written(NamedTuple):
    """A setting a key of a group writes."""

    setting: str  # dotted
    key: str  # the axis key that writes it
    group: Group


def _apart(found: list[Group], problems: Problems) -> list[Group]:
    """The groups, less any that sets a setting an earlier key sets (a key in two zip
    groups; an axis `train.lr` beside an axis `train` whose values set lr): one would
    silently win over the other."""
    kept: list[Group] = []
    written: list[Written] = []  # by the kept groups
    for g in found:
        mine: list[Written] = []
        for key in g.keys:
            leaves = sorted(_key_leaves(g, key))
            other = next(
                (
                    (leaf, w)
                    for leaf in leaves
                    for w in [*written, *mine]
                    if paths.overlap(leaf, w.setting)
                ),
                None,
            )
            if other is not None:
                _clash(g, key, leaf=other[0], other=other[1], problems=problems)
                break
            mine += [Written(leaf, key, g) for leaf in leaves]
        else:
            kept.append(g)
            written += mine
    return kept


def _clash(g: Group, key: str, *, leaf: str, other: Written, problems: Problems) -> None:
    line = problems.positions.find(_key_origin(other.group, other.key))[0]
    where = "grid" if other.group.origin[:1] == ("grid",) else f"zip[{other.group.origin[1]}]"
    problems.add(
        _key_origin(g, key),
        key,
        f"this axis sets {leaf}, which the axis '{other.key}' ({where}, line {line}) sets "
        f"too: one would silently win; give each setting one axis",
    )


def _key_origin(g: Group, key: str) -> YamlPath:
    return g.origin if g.origin[:1] == ("grid",) else (*g.origin, key)


# ------------------------------------------------------------------ points


def points(spec: MatrixSpec, groups: list[Group], *, problems: Problems) -> list[Point]:
    """Every point: the product of the groups' rows, minus excludes, plus what includes
    add (keys on matching points, or points of their own)."""
    axis_keys = {k: gi for gi, g in enumerate(groups) for k in g.keys}
    # broken entries are skipped (and reported) so that the jobs are still checked
    rules = _rules(spec.exclude, "exclude", groups=groups, axis_keys=axis_keys, problems=problems)
    excludes = [r for r in rules if r.values and _matches_some(r, groups, problems=problems)]
    includes = _rules(
        spec.include, "include", groups=groups, axis_keys=axis_keys, problems=problems
    )
    product: Iterable[tuple[int, ...]] = itertools.product(*(range(len(g.rows)) for g in groups))
    if excludes:
        product = (r for r in product if not any(_matched(r, x.match) for x in excludes))
    kept = [Point(rows) for rows in product]
    new = _include(includes, kept, groups=groups, axis_keys=axis_keys, problems=problems)
    if excludes and not kept and not new:
        problems.add(
            ("exclude",),
            "exclude",
            "the excludes remove every point of the matrix: it makes no jobs",
        )
    return kept + new


def _rules(
    entries: list[dict[str, Any]],
    what: str,
    *,
    groups: list[Group],
    axis_keys: dict[str, int],
    problems: Problems,
) -> list[Rule]:
    """Each include or exclude entry with its keys resolved and the rows of each group
    it matches; keys that address nothing are reported and left out."""
    short = {name: key for key, name in short_names(list(axis_keys)).items()}
    out = []
    for i, entry in enumerate(entries):
        rule = Rule(what, i, {}, {}, {})
        if not entry:
            problems.add(rule.origin(), f"{what}[{i}]", f"an empty {what} entry")
        for written, value in entry.items():
            key = _resolve(str(written), value, axis_keys=axis_keys, short=short)
            if key not in axis_keys:
                if what == "exclude":
                    problems.add(
                        (what, i, written),
                        str(written),
                        f"exclude keys must be axes of the matrix; '{written}' is not one"
                        f"{catalog.did_you_mean(str(written), [*axis_keys, *short])}",
                    )
                    continue
                if not check_path(key, (what, i, written), problems=problems):
                    continue
            rule.values[key], rule.written[key] = value, written
            if key in axis_keys:
                gi = axis_keys[key]
                col = groups[gi].keys.index(key)
                rows = {r for r, row in enumerate(groups[gi].rows) if matches(row[col], value)}
                rule.match[gi] = rule.match.get(gi, rows) & rows
        out.append(rule)
    return out


def _resolve(key: str, value: Any, *, axis_keys: dict[str, int], short: dict[str, str]) -> str:
    """The dotted key an include/exclude key means: itself, or the axis whose short name
    it is (`lr` -> `train.lr`, `lora` -> `lora.enabled`) when it is not itself a config
    path, or is one but is given a plain value (`lora: true`)."""
    if key in axis_keys or key not in short:
        return key
    if paths.check(key) is None and isinstance(value, dict):
        return key
    return short[key]


def _matches_some(rule: Rule, groups: list[Group], *, problems: Problems) -> bool:
    """Whether an exclude matches any point; reported where it does not (a typo)."""
    for key, value in rule.values.items():
        gi = next(i for i, g in enumerate(groups) if key in g.keys)  # an axis key
        col = groups[gi].keys.index(key)
        if not any(matches(row[col], value) for row in groups[gi].rows):
            shown = ", ".join(row[col].display for row in groups[gi].rows[:8])
            problems.add(
                rule.origin(key),
                key,
                f"no point has {key} = {fmt(value)}, so this exclude removes nothing; "
                f"its values: {shown}",
            )
            return False
    if any(not rows for rows in rule.match.values()):
        problems.add(
            rule.origin(),
            f"exclude[{rule.index}]",
            "these values never occur together (a zip group pairs them otherwise), so "
            "this exclude removes nothing",
        )
        return False
    return True


def _matched(rows: tuple[int, ...], match: Match) -> bool:
    """Whether a point (its row of each group) is one an entry matches."""
    return all(rows[gi] in match[gi] for gi in match)


def matches(a: Assignment, value: Any) -> bool:
    """An include/exclude value matches an axis value by value or by its label."""
    return a.value == value or (a.label is not None and a.label == str(value))


def _include(
    includes: list[Rule],
    kept: list[Point],
    *,
    groups: list[Group],
    axis_keys: dict[str, int],
    problems: Problems,
) -> list[Point]:
    """GitHub-Actions style: an include adds its other keys to every point it matches,
    and is a point of its own where it matches none."""
    new = []
    for rule in includes:
        if not rule.values:
            continue
        extra = [
            _assignment(rule, k, value=v) for k, v in rule.values.items() if k not in axis_keys
        ]
        hit = [p for p in kept if p.rows is not None and _matched(p.rows, rule.match)]
        for p in hit:
            p.sets = [s for s in p.sets if s.path not in rule.values] + extra
        if hit and not extra:
            problems.add(
                rule.origin(),
                f"include[{rule.index}]",
                f"this include matches {len(hit)} point(s) and adds no setting to them: "
                f"an include adds keys that are not axes, or is a point of its own",
            )
        if not hit:
            own = [
                _own(rule, k, value=v, groups=groups, axis_keys=axis_keys)
                for k, v in rule.values.items()
            ]
            new.append(Point(None, own))
    return new


def _assignment(rule: Rule, key: str, *, value: Any) -> Assignment:
    return Assignment(key, value, rule.origin(key), fmt(value), ("i", rule.index, key))


def _own(
    rule: Rule, key: str, *, value: Any, groups: list[Group], axis_keys: dict[str, int]
) -> Assignment:
    """An assignment of a point an include adds; a value of an axis (or a label naming
    one) is that axis's value, so that it shares its validation."""
    if key in axis_keys:
        g = groups[axis_keys[key]]
        col = g.keys.index(key)
        same = [row[col] for row in g.rows if matches(row[col], value)]
        if same:
            a = same[0]
            return Assignment(key, a.value, rule.origin(key), a.display, a.source)
    return _assignment(rule, key, value=value)

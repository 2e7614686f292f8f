"""Validate and hash every point of a matrix, sharing the work between neighbours.

A job's id is the hash of its canonical JSON, which is a template with one slot per
unit the matrix varies (units.py). Points come in product order, so consecutive points
share a prefix of axis values: `Walk` keeps a stack of validated states, one per axis,
and a point re-applies only the axes after its common prefix with the one before. When
only the last axis (or the seed) changes, the text before its slot is hashed once and
each value hashes only the rest: 100,000 points cost about as much as their hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from ftmatrix.identity import ID_LENGTH, hash_id
from ftmatrix.matrix.points import Group, Point
from ftmatrix.matrix.units import (
    TASK_DEPENDENT,
    Assignment,
    BaseUnits,
    Checked,
    Entry,
    JobUnits,
    by_unit,
)
from ftmatrix.matrix.validation import Validator


@dataclass(slots=True)
class Found(JobUnits):
    """A valid job: its units, and the first point that makes it (later points that
    make the same job are merged into it)."""

    point: Point
    seed: Assignment | None


class Repeat(NamedTuple):
    """A point an include adds that makes the same job as a grid point: the include
    changes nothing (a value that did not match as written, say)."""

    point: Point
    same_as: str  # the job id


class State(NamedTuple):
    """What a prefix of a point's assignments makes."""

    by_unit: dict[str, list[Entry]]  # the entries applied so far, by unit
    touched: dict[str, Any]  # unit -> validated value, for the units set so far
    fragments: list[str]  # canonical JSON of each template slot
    pending: frozenset[str]  # units set, not validated yet: a later axis sets them too


class Prefix(NamedTuple):
    """A point without its last axis, ready to hash (see `LastAxis`)."""

    state: State | None  # the state after every axis but the last, as the stack holds it
    final: State | None  # that state with its pending units validated
    head: Any  # sha256 of the canonical text before the last axis's slot
    after: str  # the canonical text after that slot
    ok: bool  # whether the prefix is valid (else every point below it is skipped)


NO_PREFIX = Prefix(None, None, None, "", False)
UNSET: Any = object()  # not looked up yet


def point_assignments(
    groups: list[Group], p: Point, *, seed: Assignment | None
) -> list[Assignment]:
    """Every assignment of one job: its axis values, include keys, seed."""
    sets = [s for g, r in zip(groups, p.rows or (), strict=False) for s in g.rows[r]]
    return [*sets, *p.sets, *([seed] if seed is not None else [])]


def hash_each(
    validator: Validator,
    *,
    groups: list[Group],
    points: list[Point],
    seeds: list[Assignment | None],
    repeats: list[Repeat],
) -> dict[str, Found]:
    """Validate and hash every job on its own: for matrices whose task varies, which
    changes the template itself (rare). Include points that repeat a grid point's job
    go to `repeats`."""
    found: dict[str, Found] = {}
    for p in points:
        for seed in seeds:
            job = _job(validator, point_assignments(groups, p, seed=seed))
            if job is not None:
                jid, touched = job
                if jid not in found:
                    found[jid] = Found(validator.bases, touched, None, None, p, seed)
                elif _repeats(p, found[jid]):
                    repeats.append(Repeat(p, jid))
    return found


def _repeats(p: Point, first: Found) -> bool:
    """Whether a point added by an include makes the job of a grid point."""
    return p.rows is None and first.point.rows is not None


def _job(validator: Validator, every: list[Assignment]) -> tuple[str, dict[str, Any]] | None:
    """The id of the job some assignments make and the validated units they set, or None
    if the job is invalid."""
    units = by_unit(every)
    task_unit = validator.unit("task", units.get("task", ()), None)
    if task_unit is None:
        return None
    task = task_unit.value
    base = validator.base_units(task)
    touched: dict[str, Any] = {"task": task}
    fragments = list(base.fragments)
    for unit, given in units.items():
        got = validator.lookup(unit, given, task)
        if got is None:
            return None
        touched[unit] = got.value
        slot = base.slots.get(unit)
        if slot is not None:
            fragments[slot] = got.fragment
    missing = [u for u in base.invalid if u not in units]
    if missing:
        validator.release(task, missing)
        return None
    if not validator.cross_ok(touched, every):
        return None
    return hash_id(base.template.format(*fragments)), touched


class Walk:
    """Validate and hash the points of a matrix whose task is fixed, in product order."""

    def __init__(
        self,
        validator: Validator,
        *,
        groups: list[Group],
        points: list[Point],
        seeds: list[Assignment | None],
    ):
        self.validator = validator
        self.groups = groups
        self.points = points
        self.seeds = [s for s in seeds if s is not None]  # none: the jobs have no seeds
        self.found: dict[str, Found] = {}
        task_unit = validator.unit("task", (), None)
        self.ok = task_unit is not None  # else the task is invalid: no job at all
        self.task: str = task_unit.value if task_unit is not None else ""
        self.base: BaseUnits = validator.base_units(self.task) if self.ok else _NO_BASE
        self.root = State({}, {"task": self.task}, list(self.base.fragments), frozenset())
        self.units_of = [{e.unit for row in g.rows for s in row for e in s.entries} for g in groups]
        self.include_units = {e.unit for p in points for s in p.sets for e in s.entries}
        self.defer = deferred_units(self.units_of, self.include_units)
        self.seed_slot = self.base.slots["train.seed"] if self.ok and self.seeds else None
        self.tail = None  # the unit only the last axis sets, when the fast path applies
        if self.seed_slot is None:
            self.tail = tail_unit(
                groups, units_of=self.units_of, include_units=self.include_units, base=self.base
            )
        self.stack: list[State | None] = [self.root]  # stack[d]: the state after d axes
        self.previous: tuple[int, ...] = ()  # the rows the stack was built for
        self.seed_units: list[Checked | None] | None = None  # each seed's train.seed unit
        self.repeats: list[Repeat] = []  # include points that make a grid point's job

    def run(self) -> dict[str, Found]:
        """Every valid job, by id, with the first point that makes it."""
        if not self.ok:
            pass
        elif self.tail is not None:
            LastAxis(self, self.tail).run()
        else:
            for p in self.points:
                self.point(p)
        return self.found

    def point(self, p: Point) -> None:
        """Validate and hash one point (once per seed)."""
        if p.rows is None:  # a new point from include
            state = self.apply(self.root, p.sets, defer=frozenset())
        else:
            state = self.descend(p.rows, len(self.groups))
            if state is not None and (p.sets or state.pending):
                state = self.apply(state, p.sets, defer=frozenset())
        if state is None or not self._whole(p, state):
            return
        if self.seed_slot is None:
            jid = hash_id(self.base.template.format(*state.fragments))
            if jid not in self.found:
                self.found[jid] = Found(self.validator.bases, state.touched, None, None, p, None)
            elif _repeats(p, self.found[jid]):
                self.repeats.append(Repeat(p, jid))
        else:
            self._seeds(p, state)

    def descend(self, rows: tuple[int, ...], depth: int) -> State | None:
        """The state after the first `depth` axes of a point, reusing the stack's states
        for the axes it shares with the point before."""
        stack, previous, groups, defer = self.stack, self.previous, self.groups, self.defer
        k = 0
        limit = min(len(previous), depth)
        while k < limit and previous[k] == rows[k]:
            k += 1
        del stack[k + 1 :]
        for d in range(k, depth):
            stack.append(self.apply(stack[-1], groups[d].rows[rows[d]], defer=defer[d]))
        self.previous = rows
        return stack[-1]

    def apply(
        self, state: State | None, sets: list[Assignment], *, defer: frozenset[str]
    ) -> State | None:
        """The state after `sets`; None when a unit it validates is invalid.

        A unit that a later axis also sets is validated only once all its values are
        in (`defer`): `distill.enabled: true` alone is invalid until the teacher comes."""
        if state is None:
            return None
        units, touched, frags = dict(state.by_unit), dict(state.touched), list(state.fragments)
        changed = set()
        for s in sets:
            for entry in s.entries:
                unit = entry.unit
                given = units.get(unit)
                units[unit] = [*given, entry] if given else [entry]
                changed.add(unit)
        waiting = state.pending | changed
        lookup, slots, task = self.validator.lookup, self.base.slots, self.task
        for unit in waiting - defer:
            got = lookup(unit, units[unit], task)
            if got is None:
                return None
            touched[unit] = got.value
            slot = slots.get(unit)
            if slot is not None:
                frags[slot] = got.fragment
        return State(units, touched, frags, frozenset(waiting & defer))

    def _whole(self, p: Point, state: State) -> bool:
        """Whether a point's state is a valid job: no unit left as the invalid base
        has it, and the sections agree (cross_check, cached by their identity)."""
        base, validator = self.base, self.validator
        if base.invalid and any(u not in state.by_unit for u in base.invalid):
            validator.release(self.task, [u for u in base.invalid if u not in state.by_unit])
            return False
        touched, values = state.touched, base.values
        cross = validator.crossed.get(
            (
                self.task,
                id(touched.get("data", values["data"])),
                id(touched.get("model", values["model"])),
                id(touched.get("lora", values["lora"])),
            )
        )
        if cross is None:
            return validator.cross_ok(touched, point_assignments(self.groups, p, seed=None))
        return not cross

    def _seeds(self, p: Point, state: State) -> None:
        """Seeds change one unit: hash the text before it once, per seed the rest."""
        marked = list(state.fragments)
        marked[self.seed_slot] = "\x00"  # type: ignore[index]  # only called with seeds
        before_seed, after_seed = self.base.template.format(*marked).split("\x00")
        head = hashlib.sha256(before_seed.encode())
        found, bases, touched = self.found, self.validator.bases, state.touched
        if self.seed_units is None:  # validated when the first valid point needs them
            lookup, task = self.validator.lookup, self.task
            self.seed_units = [lookup("train.seed", seed.entries, task) for seed in self.seeds]
        for seed, got in zip(self.seeds, self.seed_units, strict=True):
            if got is None:
                continue
            digest = head.copy()
            digest.update((got.fragment + after_seed).encode())
            jid = digest.hexdigest()[:ID_LENGTH]
            if jid not in found:
                found[jid] = Found(bases, touched, "train.seed", got.value, p, seed)
            elif _repeats(p, found[jid]) and seed is self.seeds[0]:
                self.repeats.append(Repeat(p, jid))


def deferred_units(units_of: list[set[str]], include_units: set[str]) -> list[frozenset[str]]:
    """For each axis, the units it sets that a later axis or an include sets too: they
    wait until then (seeds come last and set only train.seed, which no axis may also
    set)."""
    defer, later = [], set(include_units)
    for units in reversed(units_of):
        defer.append(frozenset(units & later))
        later |= units
    defer.reverse()
    return defer


def tail_unit(
    groups: list[Group], *, units_of: list[set[str]], include_units: set[str], base: BaseUnits
) -> str | None:
    """The unit the last axis sets, if that axis alone sets it and it needs no
    cross-section check: then points differ from their neighbours in one fragment."""
    if not groups or len(units_of[-1]) != 1:
        return None
    (unit,) = units_of[-1]
    if unit not in base.slots or unit in ("task", "data", "model", "lora"):
        return None
    if unit in include_units or any(unit in units for units in units_of[:-1]):
        return None
    if not all(len(row) == 1 and len(row[0].entries) == 1 for row in groups[-1].rows):
        return None
    return unit


class LastAxis:
    """A walk whose last axis alone sets its unit (`tail`): the rest of a point is
    validated and hashed once per prefix, and each value of the last axis only adds
    its fragment to a copy of that hash."""

    def __init__(self, walk: Walk, tail: str):
        self.walk = walk
        self.tail = tail
        self.last = [row[0].entries[0] for row in walk.groups[-1].rows]  # its values' entries
        self.checked: list[Any] = [UNSET] * len(self.last)  # the tail unit of each value

    def run(self) -> None:
        walk, tail, last, checked = self.walk, self.tail, self.last, self.checked
        depth = len(walk.groups) - 1
        validator, task, found, bases = walk.validator, walk.task, walk.found, walk.validator.bases
        key_task = task if tail in TASK_DEPENDENT else None
        prefix = NO_PREFIX  # the prefix of the points being hashed
        for p in walk.points:
            rows = p.rows
            if rows is None or p.sets:
                walk.point(p)
                continue
            state = walk.descend(rows, depth)
            if state is None:
                continue
            if prefix.state is not state:
                prefix = self._open(state, p)
            if not prefix.ok:
                continue
            r = rows[-1]
            got = checked[r]
            if got is UNSET:
                entry = last[r]
                key = (tail, key_task, entry.assignment.source)
                got = checked[r] = validator.cache.get(key, UNSET)
                if got is UNSET:
                    got = checked[r] = validator.unit(tail, [entry], task)
            if got is None:
                continue
            digest = prefix.head.copy()
            digest.update((got.fragment + prefix.after).encode())
            jid = digest.hexdigest()[:ID_LENGTH]
            if jid not in found:
                found[jid] = Found(bases, prefix.final.touched, tail, got.value, p, None)  # type: ignore[union-attr]

    def _open(self, state: State, p: Point) -> Prefix:
        """Validate a prefix state for good (units held back for includes are final for a
        plain point) and hash the canonical text before the tail unit's slot."""
        walk, tail = self.walk, self.tail
        final = walk.apply(state, [], defer=frozenset()) if state.pending else state
        if final is None:
            return Prefix(state, None, None, "", False)
        invalid = [u for u in walk.base.invalid if u not in final.by_unit and u != tail]
        if invalid:
            walk.validator.release(walk.task, invalid)
            return Prefix(state, final, None, "", False)
        if not walk.validator.cross_ok(final.touched, point_assignments(walk.groups, p, seed=None)):
            return Prefix(state, final, None, "", False)
        marked = list(final.fragments)
        marked[walk.base.slots[tail]] = "\x00"
        before, after = walk.base.template.format(*marked).split("\x00")
        return Prefix(state, final, hashlib.sha256(before.encode()), after, True)


_NO_BASE = BaseUnits({}, "", {}, [], [])

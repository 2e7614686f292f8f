"""Validate units, once each: the planner's cache of checked config pieces.

`Validator.unit` checks one unit as the base and some assignments make it, and keeps the
answer; `Validator.base` gives every unit as the base alone makes it, with the canonical
JSON template a job's id is hashed from. Problems go to the file's `Problems`, placed at
the value that caused them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from ftmatrix import catalog, custom
from ftmatrix.config import JobConfig, TrainConfig, cross_check
from ftmatrix.identity import (
    SECTIONS,
    canonical_json,
    normalized_own,
    normalized_section,
    normalized_train_field,
    own_fragment,
    train_fragment,
)
from ftmatrix.matrix import errors, paths
from ftmatrix.matrix.load import Problem
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.units import (
    CANONICAL,
    INVALID,
    SLOT,
    UNITS,
    Assignment,
    BaseUnits,
    Checked,
    Entry,
    assemble,
    cache_key,
    origin_of,
)

SECTION_MODELS: dict[str, type[BaseModel]] = {
    name: paths.submodel(JobConfig.model_fields[name].annotation)  # type: ignore[misc]
    for name in SECTIONS
    if name != "task"
}


class Validator:
    """Checks units against the job schema, each distinct one once."""

    def __init__(self, base: dict[str, Any], problems: Problems):
        self.base = base  # the matrix's `base:` section
        self.problems = problems
        self.cache: dict[tuple, Checked | None] = {}
        self.bases: dict[str, BaseUnits] = {}  # by task
        # problems of units the base alone leaves invalid, reported only if a job uses one
        self.deferred: dict[tuple[str, str], list[Problem]] = {}
        self.crossed: dict[tuple, list[tuple[str, str]]] = {}  # cross_check by section ids
        self.varied: set[str] = set()  # units some axis, include or seed sets

    def lookup(
        self, unit: str, given: list[Entry] | tuple[Entry, ...], task: str
    ) -> Checked | None:
        """`unit`, from the cache when it was checked before."""
        key = cache_key(unit, task, given)
        cache = self.cache
        return cache[key] if key in cache else self.unit(unit, given, task)

    def unit(
        self, unit: str, given: list[Entry] | tuple[Entry, ...], task: str | None
    ) -> Checked | None:
        """One unit as the base and `given` make it, validated; cached. None when it is
        invalid (its problems are recorded once)."""
        key = cache_key(unit, task, given)
        if key in self.cache:
            return self.cache[key]
        section, _, field_name = unit.partition(".")
        raw = self.base.get(section)
        if field_name:
            raw = raw.get(field_name) if isinstance(raw, dict) else None
        for entry in given:
            raw = paths.assign(raw, entry.inner, entry.value, at=unit)
        assignments = [g.assignment for g in given]
        if unit == "task":
            result = self._task(raw, assignments)
        elif field_name:
            result = self._train_field(field_name, raw, assignments=assignments)
        elif section in custom.OWN_SECTIONS:
            result = self._own(section, raw, assignments=assignments)
        elif raw is None and section in ("data", "model"):
            result = Checked(None, "null") if custom.is_own(self.base) else None
            if result is None:
                self.problems.add(
                    ("base",), f"base.{section}", f"required: every job needs `{section}:`"
                )
        else:
            assert task is not None  # only the task unit is checked without one
            result = self._section(section, raw, assignments=assignments, task=task)
        self.cache[key] = result
        return result

    def _task(self, raw: Any, assignments: list[Assignment]) -> Checked | None:
        value = "image-classification" if raw is None else raw
        if value in catalog.TASKS:
            return Checked(value, json.dumps(value))
        self.problems.add(
            origin_of("task", assignments),
            "task",
            f"unknown task '{value}'; expected one of: {', '.join(catalog.TASKS)}"
            f"{catalog.did_you_mean(str(value), catalog.TASKS)}",
        )
        return None

    def _train_field(self, name: str, raw: Any, *, assignments: list[Assignment]) -> Checked | None:
        try:
            value = getattr(TrainConfig.model_validate({} if raw is None else {name: raw}), name)
        except ValidationError as err:
            for e in err.errors():
                report_error(self.problems, e, section="train", assignments=assignments)
            return None
        norm = normalized_train_field(name, _dump_field(name, value))
        return Checked(value, train_fragment(name, norm))

    def _own(self, section: str, raw: Any, *, assignments: list[Assignment]) -> Checked | None:
        """script, function or params, validated as the job config validates them."""
        try:
            value = custom.own_section(section, raw)
        except ValidationError as err:
            for e in err.errors():
                report_error(self.problems, e, section=section, assignments=assignments)
            return None
        return Checked(value, own_fragment(section, normalized_own(value)))

    def _section(
        self, section: str, raw: Any, *, assignments: list[Assignment], task: str
    ) -> Checked | None:
        try:
            value = SECTION_MODELS[section].model_validate({} if raw is None else raw)
        except ValidationError as err:
            for e in err.errors():
                report_error(self.problems, e, section=section, assignments=assignments)
            return None
        return Checked(value, canonical_json(normalized_section(section, value, task=task)))

    def base_units(self, task: str) -> BaseUnits:
        """Every unit as the base alone gives it, for one task, and the canonical JSON
        template with a slot per unit the matrix varies (`varied`, set before).

        A unit the base leaves invalid (say `model` without a name, given by an axis)
        has its problems reported only if a point really uses it."""
        if task not in self.bases:
            values: dict[str, Any] = {}
            fragments: dict[str, str] = {}
            invalid: list[str] = []
            for unit in UNITS:
                with self.problems.held() as held:
                    got = self.unit(unit, (), task)
                self.deferred[(task, unit)] = held
                values[unit] = INVALID if got is None else got.value
                fragments[unit] = "null" if got is None else got.fragment
                if got is None:
                    invalid.append(unit)
            fixed = {u: f for u, f in fragments.items() if u not in self.varied}
            slotted = [u for u in SLOT if u in self.varied]
            marker = "\x00"  # never in JSON text: stands for a slot while escaping braces
            filled = CANONICAL.format(*[marker if u in self.varied else fixed[u] for u in SLOT])
            template = filled.replace("{", "{{").replace("}", "}}").replace(marker, "{}")
            slots = {u: i for i, u in enumerate(slotted)}
            self.bases[task] = BaseUnits(
                values, template, slots, [fragments[u] for u in slotted], invalid
            )
        return self.bases[task]

    def release(self, task: str, units: list[str]) -> None:
        """Report the held problems of base units a job uses without setting them."""
        for unit in units:
            self.problems.extend(self.deferred.pop((task, unit), []))

    def cross_ok(self, touched: dict[str, Any], assignments: list[Assignment]) -> bool:
        """cross_check, cached on the identity of the sections it reads."""
        task = touched["task"]
        base = self.base_units(task).values
        parts = [touched.get(n, base.get(n)) for n in ("data", "model", "lora")]
        key = (task, *map(id, parts))
        cross = self.crossed.get(key)
        if cross is None:
            cross = self.crossed[key] = cross_check(assemble({**base, **touched}))
            for dotted, message in cross:
                self.problems.add(origin_of(dotted, assignments), dotted, message)
        return not cross

    def uses_teachers(self) -> bool:
        """Whether any validated distill unit picks its teacher among the jobs."""
        return any(
            key[0] == "distill" and got and got.value.enabled and got.value.teacher_job
            for key, got in self.cache.items()
        )


def report_error(
    problems: Problems, error: Any, *, section: str, assignments: list[Assignment]
) -> None:
    """A pydantic error of `section`, placed at the value that caused it."""
    dotted = errors.config_key(section, error)
    parent = dotted.rpartition(".")[0]
    message = errors.message(error, fields=paths.fields_of(parent), parent=parent)
    problems.add(origin_of(dotted, assignments), dotted, message)


def check_train_section(base: dict[str, Any], problems: Problems) -> None:
    """Validate what no unit covers: unknown keys and the shape of base.train."""
    train = base.get("train")
    if train is None:
        return
    if not isinstance(train, dict):
        problems.add(("base", "train"), "base.train", "must be a mapping of settings")
        return
    try:
        TrainConfig.model_validate(train)
    except ValidationError as err:
        for e in err.errors():
            report_error(problems, e, section="train", assignments=[])


def _dump_field(name: str, value: Any) -> Any:
    """A TrainConfig field's value as JSON data, exactly as model_dump(mode='json')."""
    dumped = TrainConfig.model_construct(**{name: value}).model_dump(mode="json", include={name})
    return dumped[name]

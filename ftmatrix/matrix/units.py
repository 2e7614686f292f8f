"""Validation units: the pieces a job config is checked and hashed in.

A unit is a top-level section of the job config (`data`, `model`, `lora`, ...), except
`train`, which has no cross-field rules and is checked field by field (`train.lr`,
`train.loss`). A matrix point is a handful of assignments (`train.lr = 1e-4`); each
touches one or a few units, and a job is the base's units overlaid with the ones its
point touches. So a 100,000-point matrix validates a few hundred small units, not
100,000 configs, and its canonical JSON is a template with one slot per unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ftmatrix.config import JobConfig, TrainConfig
from ftmatrix.custom import OWN_SECTIONS
from ftmatrix.identity import OPTIONAL_TRAIN_FIELDS, SECTIONS

YamlPath = tuple  # keys and list indices from the document root


class Assignment:
    """One setting a matrix point makes: `path = value`, and where the file wrote it."""

    __slots__ = ("display", "entries", "label", "origin", "path", "source", "value")

    def __init__(
        self,
        path: str,
        value: Any,
        origin: YamlPath,
        display: str,
        source: Any,
        label: str | None = None,
    ):
        self.path = path  # dotted config key
        self.value = value
        self.origin = origin  # where in the YAML file the value was written
        self.display = display  # how labels show it
        self.source = source  # hashable identity of this assignment, for caching
        self.label = label  # the name of the value on a labelled axis
        self.entries = [
            Entry(unit, self, inner, v, where)
            for unit, inner, v, where in split(path, value, origin)
        ]


class Entry(NamedTuple):
    """The part of an assignment that falls in one unit."""

    unit: str  # `model`, `train.lr`, ...
    assignment: Assignment
    inner: list[str]  # the path below the unit
    value: Any
    origin: YamlPath


class Checked(NamedTuple):
    """A validated unit: its value and the canonical JSON of its normal form ('' for a
    unit that never matters to a job's identity, such as train.log_every)."""

    value: Any
    fragment: str


def split(path: str, value: Any, origin: YamlPath) -> list[tuple[str, list[str], Any, YamlPath]]:
    """(unit, path inside the unit, value, origin) for one assignment."""
    parts = path.split(".")
    if parts[0] != "train":
        return [(parts[0], parts[1:], value, origin)]
    if len(parts) > 1:
        return [(f"train.{parts[1]}", parts[2:], value, origin)]
    if isinstance(value, dict):  # an axis at `train` whose values are mappings
        return [(f"train.{k}", [], v, (*origin, k)) for k, v in value.items()]
    return [("train", [], value, origin)]


def by_unit(assignments: list[Assignment]) -> dict[str, list[Entry]]:
    """The entries of some assignments, grouped by the unit they touch (in order)."""
    out: dict[str, list[Entry]] = {}
    for a in assignments:
        for entry in a.entries:
            given = out.get(entry.unit)
            if given is None:
                out[entry.unit] = [entry]
            else:
                given.append(entry)
    return out


def sources(given: list[Entry] | tuple[Entry, ...]) -> Any:
    """Cache key of the assignments that touch one unit (usually exactly one)."""
    if len(given) == 1:
        return given[0].assignment.source
    return tuple([g.assignment.source for g in given])


def origin_of(dotted: str, assignments: list[Assignment]) -> YamlPath:
    """The YAML location responsible for the value at a dotted config key: the value
    that set it, else a value set inside it (an axis made that section invalid), else
    the base."""
    for a in reversed(assignments):
        if dotted == a.path or dotted.startswith(a.path + "."):
            rest = dotted[len(a.path) :].strip(".")
            return (*a.origin, *(rest.split(".") if rest else ()))
    for a in reversed(assignments):
        if a.path.startswith(dotted + "."):
            return a.origin
    return ("base", *dotted.split("."))


# ------------------------------------------------------------- the unit layout

TRAIN_FIELDS = sorted(TrainConfig.model_fields)
ALL_SECTIONS = sorted((*SECTIONS, *OWN_SECTIONS))
UNITS = [
    u
    for name in ALL_SECTIONS
    for u in ([f"train.{f}" for f in TRAIN_FIELDS] if name == "train" else [name])
]
TASK_DEPENDENT = frozenset({"data", "model"})  # units whose normal form depends on the task
# position of each unit's fragment in CANONICAL (train.log_every never matters: no slot)
SLOT = {u: i for i, u in enumerate(u for u in UNITS if u != "train.log_every")}


def _canonical_template() -> str:
    """'{"data":{},"distill":{},...,"train":{"batch_size":{},...}}' with {} per unit,
    so that filling it gives exactly `canonical_json(normalized(cfg))`."""
    top, before = [], ""  # an own section's slot: key, value and comma, or nothing
    for name in ALL_SECTIONS:
        if name in OWN_SECTIONS:
            before += "{}"
        elif name == "train":
            # an optional field's slot holds its key, value and comma, or nothing
            # (identity.train_fragment): it goes in front of the next field's key
            inner, pending = [], ""
            for f in TRAIN_FIELDS:
                if f in OPTIONAL_TRAIN_FIELDS:
                    pending += "{}"
                elif f != "log_every":
                    inner.append(f'{pending}"{f}":{{}}')
                    pending = ""
            assert not pending, "the last train field cannot be optional"
            top.append(before + '"train":{{' + ",".join(inner) + "}}")
            before = ""
        else:
            top.append(before + f'"{name}":{{}}')
            before = ""
    assert not before, "the last section cannot be optional"
    return "{{" + ",".join(top) + "}}"


CANONICAL = _canonical_template()


def cache_key(unit: str, task: str | None, given: list[Entry] | tuple[Entry, ...]) -> tuple:
    """What a validated unit depends on: the unit, the task where its normal form
    depends on it, and the assignments that touch it."""
    return (unit, task if unit in TASK_DEPENDENT else None, sources(given))


# ------------------------------------------------------------ a job's units

INVALID = object()  # the value of a unit the base alone leaves invalid


class BaseUnits(NamedTuple):
    """Every unit as the base alone makes it, for one task."""

    values: dict[str, Any]  # unit -> validated value (INVALID where the base is incomplete)
    template: str  # canonical JSON of a job with a `{}` slot per unit the matrix varies
    slots: dict[str, int]  # varied unit -> its slot in the template
    fragments: list[str]  # the base's canonical JSON for each slot
    invalid: list[str]  # units the base alone leaves invalid


@dataclass(slots=True)
class JobUnits:
    """What a job's config is assembled from, on demand: the base's units and the
    validated units its point sets.

    A point's units are a dict shared by every job of that point; the one unit that
    only this job sets (its last axis's value, or its seed) is kept beside it, so that
    100,000 jobs hold a few thousand dicts, not 100,000 copies."""

    bases: dict[str, BaseUnits]  # by task: shared by every job of the plan
    units: dict[str, Any]  # unit -> validated value, for the units the point sets
    unit: str | None  # the one more unit this job sets, if any
    value: Any  # its validated value

    def touched(self) -> dict[str, Any]:
        """The units the job sets, as one dict."""
        if self.unit is None:
            return self.units
        return {**self.units, self.unit: self.value}

    def parts(self) -> Parts:
        """Every unit of the job: the base's, overlaid with the ones it sets."""
        touched = self.touched()
        return Parts(self.bases[touched["task"]].values, touched)


class Parts(dict):
    """A job's validated units: the base's, overlaid with the ones its point sets."""

    def __init__(self, base: dict[str, Any], touched: dict[str, Any]):
        super().__init__()
        self.base, self.touched = base, touched

    def __contains__(self, key: object) -> bool:
        return key in self.touched or key in self.base

    def __getitem__(self, key: str) -> Any:
        return self.touched[key] if key in self.touched else self.base[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.touched:
            return self.touched[key]
        return self.base.get(key, default)


def assemble(parts: dict[str, Any]) -> JobConfig:
    """A JobConfig from validated units, without validating again."""
    train = TrainConfig.model_construct(
        **{f: parts[f"train.{f}"] for f in TRAIN_FIELDS if f"train.{f}" in parts}
    )
    sections = {n: parts[n] for n in ALL_SECTIONS if n != "train" and n in parts}
    return JobConfig.model_construct(**sections, train=train)

"""Dotted paths into the job config (`train.lr`, `lora`, `model.config.hidden_size`).

Used to check that every axis of a matrix addresses a real field, with a suggestion
when it does not; to set a value at a path the way a matrix means it (`assign`: merged
onto what the base set there); and to list the paths for the JSON Schema.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ftmatrix import catalog
from ftmatrix.config import JobConfig


def submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation like `ModelConfig | None`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = submodel(arg)
        if found is not None:
            return found
    return None


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    return any(_is_mapping(a) for a in typing.get_args(annotation))


def check(path: str) -> str | None:
    """None when `path` addresses a config field; otherwise what is wrong with it."""
    model: type[BaseModel] | None = JobConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        if model is None:
            done = ".".join(parts[:i])
            return f"'{done}' is a single setting; it has no field '{part}'"
        fields = model.model_fields
        if part not in fields:
            prefix = ".".join(parts[:i])
            where = f"'{prefix}'" if prefix else "the job config"
            near = catalog.suggest(part, fields) if not _exact_elsewhere(part) else None
            if near is None:
                near_path = _nearest_path(part, prefix)
                hint = f" (did you mean '{near_path}'?)" if near_path else ""
            else:
                hint = f" (did you mean '{'.'.join([*parts[:i], near])}'?)"
            return f"no field '{part}' in {where}{hint}; fields: {', '.join(fields)}"
        annotation = fields[part].annotation
        if _is_mapping(annotation) and submodel(annotation) is None:
            return None  # free-form mapping (model.config): any key below is allowed
        model = submodel(annotation)
    return None


def _exact_elsewhere(part: str) -> bool:
    """Whether some field deeper in the config is named exactly `part` ('lr')."""
    return any(p.rsplit(".", 1)[-1] == part for p in all_paths())


def _nearest_path(part: str, prefix: str) -> str | None:
    """A field named like `part` elsewhere in the config ('momentum' ->
    'train.optimizer.momentum'), preferring ones under `prefix`."""
    by_last: dict[str, list[str]] = {}
    for p in all_paths():
        by_last.setdefault(p.rsplit(".", 1)[-1], []).append(p)
    last = part if part in by_last else catalog.suggest(part, by_last)
    if last is None:
        return None
    options = by_last[last]
    under = [p for p in options if p.startswith(prefix + ".")] if prefix else options
    return (under or options)[0]


@functools.cache
def all_paths() -> dict[str, str]:
    """Every addressable dotted path -> its description."""
    out: dict[str, str] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}{name}"
            out[path] = field.description or ""
            sub = submodel(field.annotation)
            if sub is not None:
                walk(sub, path + ".")

    walk(JobConfig, "")
    return out


@functools.cache
def free_form_paths() -> tuple[str, ...]:
    """Paths whose value is a free mapping, so any key below them is valid."""
    found = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sub = submodel(field.annotation)
            if sub is not None:
                walk(sub, f"{prefix}{name}.")
            elif _is_mapping(field.annotation):
                found.append(f"{prefix}{name}")

    walk(JobConfig, "")
    return tuple(found)


def get(data: Any, path: str) -> Any:
    """The value at a dotted path of a config (model or plain dicts); KeyError if absent."""
    for part in path.split("."):
        if isinstance(data, BaseModel):
            if part not in type(data).model_fields:
                raise KeyError(path)
            data = getattr(data, part)
        elif isinstance(data, dict):
            data = data[part]
        else:
            raise KeyError(path)
    return data


@functools.cache
def named_sections() -> frozenset[str]:
    """Paths of the sections that may be written as their name alone: `train.optimizer:
    sgd` means `{name: sgd}` (those whose model has a `name` and accepts a plain text)."""
    found = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sub = submodel(field.annotation)
            if sub is not None:
                if "name" in sub.model_fields and _takes_a_name(sub):
                    found.append(f"{prefix}{name}")
                walk(sub, f"{prefix}{name}.")

    walk(JobConfig, "")
    return frozenset(found)


def _takes_a_name(model: type[BaseModel]) -> bool:
    """Whether the model reads a plain text as its name (an unknown one is refused as
    an unknown name, not as "not a mapping")."""
    try:
        model.model_validate("\x00")
    except ValidationError as err:
        return all(e["type"] != "model_type" for e in err.errors())
    return True


def assign(raw: Any, parts: list[str], value: Any, *, at: str = "") -> Any:
    """Copy of `raw`, the value at dotted path `at`, with `value` set at `parts` below it.

    What is set merges onto what is there, at every depth: a mapping into a mapping key
    by key, and a section written by its name alone counts as `{name: ...}` on either
    side. So an axis `train.optimizer: [sgd, adam]` keeps the momentum and weight decay
    that `base` gave the optimizer, as `{name: sgd}` would."""
    named = at in named_sections()
    if named and isinstance(raw, str):
        raw = {"name": raw}
    if not parts:
        if named and isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and isinstance(raw, dict):
            merged = dict(raw)
            for k, v in value.items():
                merged[k] = assign(merged.get(k), [], v, at=join(at, k))
            return merged
        return value
    out = dict(raw) if isinstance(raw, dict) else {}
    out[parts[0]] = assign(out.get(parts[0]), parts[1:], value, at=join(at, parts[0]))
    return out


def join(path: str, key: Any) -> str:
    """`path.key` (`key` alone at the root)."""
    return f"{path}.{key}" if path else str(key)


def leaves(path: str, value: Any) -> list[str]:
    """The dotted settings that assigning `value` at `path` writes: the keys of a
    mapping, at every depth; `path.name` for a section written by its name alone;
    `path` itself for anything else."""
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in leaves(join(path, k), v)]
    if isinstance(value, str) and path in named_sections():
        return [f"{path}.name"]
    return [path]


def overlap(a: str, b: str) -> bool:
    """Whether two dotted settings write the same value: equal, or one inside the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def is_integer(path: str) -> bool:
    """Whether the setting at `path` holds whole numbers (`train.batch_size`, `lora.r`)."""
    model: type[BaseModel] | None = JobConfig
    annotation: Any = None
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = submodel(annotation)
    kinds = _scalar_types(annotation)
    return int in kinds and float not in kinds


def _scalar_types(annotation: Any) -> set[Any]:
    """The plain types inside an annotation like `Optional[Annotated[int, ...]]`."""
    if isinstance(annotation, type):
        return {annotation}
    return {t for arg in typing.get_args(annotation) for t in _scalar_types(arg)}


def fields_of(path: str) -> list[str]:
    """Field names of the section at `path` ('' = the job config); [] for a leaf."""
    model: type[BaseModel] | None = JobConfig
    for part in filter(None, path.split(".")):
        if model is None or part not in model.model_fields:
            return []
        model = submodel(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []

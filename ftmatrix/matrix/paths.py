"""Dotted paths into the job config (`train.lr`, `lora`, `model.config.hidden_size`).

Used to check that every axis of a matrix addresses a real field, with a suggestion
when it does not, and to list the paths for the JSON Schema.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

from pydantic import BaseModel

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
            near = catalog.suggest(part, fields)
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


def _nearest_path(part: str, prefix: str) -> str | None:
    """A field named like `part` elsewhere in the config ('momentum' ->
    'train.optimizer.momentum'), preferring ones under `prefix`."""
    by_last: dict[str, list[str]] = {}
    for p in all_paths():
        by_last.setdefault(p.rsplit(".", 1)[-1], []).append(p)
    last = catalog.suggest(part, by_last)
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


def assign(raw: Any, parts: list[str], value: Any) -> Any:
    """Copy of `raw` with `value` set at `parts` below it; mappings merge into mappings."""
    if not parts:
        if isinstance(value, dict) and isinstance(raw, dict):
            merged = dict(raw)
            for k, v in value.items():
                merged[k] = assign(merged.get(k), [], v)
            return merged
        return value
    out = dict(raw) if isinstance(raw, dict) else {}
    out[parts[0]] = assign(out.get(parts[0]), parts[1:], value)
    return out


def fields_of(path: str) -> list[str]:
    """Field names of the section at `path` ('' = the job config); [] for a leaf."""
    model: type[BaseModel] | None = JobConfig
    for part in filter(None, path.split(".")):
        if model is None or part not in model.model_fields:
            return []
        model = submodel(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []

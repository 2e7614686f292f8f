"""Your own components inside the built-in trainer: `model.factory` names a function
that returns the network, `data.factory` one that returns the splits,
`train.loss.factory` a loss and each of `train.metrics` an extra test metric, as
"module:function" (found on sys.path or beside the matrix) or
"path/to/file.py:function" (relative to the matrix file).

This module is the schema side only (no torch, nothing imported): the form of a
factory and whether its code can be found. The job process imports and calls it
(trainers/components.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ftmatrix import custom

FACTORY = re.compile(r"^(?:[A-Za-z_][\w.]*|[^:\s][^:]*\.py):[A-Za-z_]\w*$")
# the dotted settings that name a factory (train.metrics: a list of them)
FACTORY_KEYS = ("model.factory", "data.factory", "train.loss.factory", "train.metrics")


def check_factory(v: Any) -> Any:
    """A factory is "module:function" or "file.py:function"."""
    if v is not None and (not isinstance(v, str) or not FACTORY.match(v)):
        raise ValueError(
            f"'{v}' is not 'module:function' nor 'file.py:function' (e.g. mymodels:build)"
        )
    return v


def file_of(factory: str, *, base_dir: Path) -> Path | None:
    """The .py file a "file.py:function" factory names (relative to `base_dir`), else None."""
    where = factory.rpartition(":")[0]
    return base_dir / where if where.endswith(".py") else None


def problem(factory: str, *, base_dir: Path) -> str | None:
    """Why the factory's code cannot be found (nothing is imported), or None."""
    where = factory.rpartition(":")[0]
    path = file_of(factory, base_dir=base_dir)
    if path is not None:
        return None if path.is_file() else f"file {path} does not exist"
    if custom.module_found(where, base_dir=base_dir):
        return None
    return f"module '{where}' cannot be found (nothing was imported)"


def factories(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(dotted key, factory) for each factory a job's config data names."""
    found = []
    for key in FACTORY_KEYS:
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str):
            found.append((key, value))
        elif isinstance(value, list):
            found += [(f"{key}.{i}", v) for i, v in enumerate(value) if isinstance(v, str)]
    return found


def metric_name(factory: str) -> str:
    """The name an extra metric is recorded under: its function's name."""
    return factory.rpartition(":")[2]

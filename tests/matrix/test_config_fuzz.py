"""Fuzz: every shipped matrix with one value swapped for an absurd one (nan, infinities,
huge, negative, true/false, text, empty), one key dropped, renamed, written twice or
given a value of another type, or its axes reordered, still ends `validate` with exit 0
or 2, never a traceback, in under a second."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.matrix.load import parse_yaml

MATRICES = sorted((Path(__file__).parents[2] / "matrices").glob("*.yaml"))
ABSURD = [math.nan, math.inf, -math.inf, 10**12, -1, 0, True, False, "x", None, [], {}, 1e-300]


def leaves(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every value in the document (containers included)."""
    found = [path] if path else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += leaves(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += leaves(value, (*path, i))
    return found


# every fuzz test: 60 shipped-matrix mutations, no per-example deadline (planning a
# 90-job matrix takes a while on a busy machine)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def mutate(data: Any, path: tuple, value: Any, drop: bool) -> None:
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(MATRICES) - 1),
    pick=st.floats(min_value=0, max_value=1, exclude_max=True),
    value=st.sampled_from(ABSURD),
    drop=st.booleans(),
)
def test_an_absurd_value_anywhere_is_refused_cleanly(tmp_path, index, pick, value, drop):
    source = MATRICES[index]
    data, _ = parse_yaml(source.read_text(), str(source))
    paths = leaves(data)
    mutate(data, paths[int(pick * len(paths))], value, drop)
    path = tmp_path / source.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert time.perf_counter() - start < 1.0
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert f"{path}:" in result.output


def rename(data: Any, path: tuple, suffix: str) -> None:
    """The key at `path` renamed (a typo: `suffix` appended), its value kept."""
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict):
        parent[f"{path[-1]}{suffix}"] = parent.pop(path[-1])


def reorder(data: Any) -> None:
    """The grid's axes (and base's sections) in reverse order."""
    for section in ("grid", "base"):
        if isinstance(data.get(section), dict):
            data[section] = dict(reversed(list(data[section].items())))


def duplicate_a_line(text: str, pick: float) -> str:
    """One `key: value` line written twice (a duplicate key in the same mapping)."""
    lines = text.splitlines()
    keyed = [
        i
        for i, line in enumerate(lines)
        if ":" in line and not line.lstrip().startswith(("#", "-"))
    ]
    i = keyed[int(pick * len(keyed))]
    return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]) + "\n"


def swap_type(value: Any) -> Any:
    """A value of another type that reads alike: a number as text, a list as its first item."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return value[0] if value else {}
    if isinstance(value, dict):
        return list(value.values())
    return [value]


@FUZZ
@given(
    index=st.integers(min_value=0, max_value=len(MATRICES) - 1),
    pick=st.floats(min_value=0, max_value=1, exclude_max=True),
    kind=st.sampled_from(["rename", "reorder", "duplicate", "swap"]),
    suffix=st.sampled_from(["s", "_", "X", ".x"]),
)
def test_a_renamed_reordered_duplicated_or_retyped_key_is_refused_or_planned_cleanly(
    tmp_path, index, pick, kind, suffix
):
    source = MATRICES[index]
    text = source.read_text()
    if kind == "duplicate":
        text = duplicate_a_line(text, pick)
    else:
        data, _ = parse_yaml(text, str(source))
        paths = leaves(data)
        target = paths[int(pick * len(paths))]
        if kind == "rename":
            rename(data, target, suffix)
        elif kind == "reorder":
            reorder(data)
        else:
            parent = data
            for key in target[:-1]:
                parent = parent[key]
            parent[target[-1]] = swap_type(parent[target[-1]])
        text = yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / source.name
    path.write_text(text)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert time.perf_counter() - start < 1.0
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert f"{path}:" in result.output
    if kind == "duplicate":
        assert result.exit_code == 2 and "duplicate key" in result.output

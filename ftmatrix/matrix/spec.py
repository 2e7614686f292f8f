"""The matrix file: safe YAML loading with line numbers, and its pydantic schema.

`load(path)` returns a `MatrixSpec` or raises `MatrixError` with every problem found,
each pointing at file:line:column and the dotted key. Expansion into jobs (and the
checks that need the job schema) lives in plan.py.

Standard library, pydantic and yaml only: never torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftmatrix import catalog
from ftmatrix.matrix.executors import ExecutorSpec
from ftmatrix.matrix.search import SearchSpec

# Refuse alias expansion past this many nodes ("billion laughs") and deep nesting.
MAX_NODES = 200_000
MAX_DEPTH = 64

YamlPath = tuple  # keys and list indices from the document root


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake in a matrix file."""

    file: str
    line: int
    col: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class MatrixError(Exception):
    """Every problem of a matrix file, reported together."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(set(problems))
        super().__init__("\n".join(map(str, self.problems)))


class Positions:
    """Where each key and list item of the document was written."""

    def __init__(self, file: str):
        self.file = file
        self.marks: dict[YamlPath, tuple[int, int]] = {}

    def find(self, path: YamlPath) -> tuple[int, int]:
        """Line and column of `path`, or of its nearest written ancestor."""
        path = tuple(path)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (1, 1))

    def problem(self, path: YamlPath, key: str, message: str) -> Problem:
        line, col = self.find(path)
        return Problem(self.file, line, col, key, message)


# ------------------------------------------------------------------------- YAML

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `1e-4` is a float (YAML 1.1 wants `1.0e-4`),
    and only true/false are booleans, so a label `off:` or `no:` stays a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class _YamlProblem(Exception):
    def __init__(self, mark, message: str):
        self.line = mark.line + 1 if mark else 1
        self.col = mark.column + 1 if mark else 1
        self.message = message


def parse_yaml(text: str, file: str) -> tuple[Any, Positions]:
    """Parse with safe loading only; duplicate keys and alias bombs are errors."""
    positions = Positions(file)
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            raise MatrixError(
                [_located(file, mark, f"invalid YAML: {err.problem or err.context}")]
            ) from None
        except yaml.YAMLError as err:
            raise MatrixError([Problem(file, 1, 1, "", f"invalid YAML: {err}")]) from None
        if node is None:
            return None, positions
        try:
            return _Builder(loader, positions).build(node, (), 0), positions
        except _YamlProblem as err:
            raise MatrixError([Problem(file, err.line, err.col, "", err.message)]) from None
    finally:
        loader.dispose()


def _located(file: str, mark, message: str) -> Problem:
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(file, line, col, "", message)


class _Builder:
    """Turns composed YAML nodes into Python data, recording where each key was."""

    def __init__(self, loader: _Loader, positions: Positions):
        self.loader = loader
        self.positions = positions
        self.count = 0

    def build(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _YamlProblem(node.start_mark, "the file expands to too many values (aliases?)")
        if depth > MAX_DEPTH:
            raise _YamlProblem(node.start_mark, "nesting too deep (a recursive alias?)")
        self.positions.marks.setdefault(path, _mark(node))
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[Any, Any] = {}
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _YamlProblem(key_node.start_mark, "a mapping key must be a plain value")
                key = self.loader.construct_object(key_node)
                if key in out:
                    raise _YamlProblem(
                        key_node.start_mark,
                        f"duplicate key '{key}' (first written on line {first_line[key]})",
                    )
                first_line[key] = key_node.start_mark.line + 1
                self.positions.marks[(*path, key)] = _mark(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


# ----------------------------------------------------------------------- schema


class MatrixSpec(BaseModel):
    """A matrix file: one base job config and the ways it varies."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Names the run folder runs/<name>/: letters, digits, '_', '-', '.'.",
    )
    description: str = Field("", description="What the study compares; shown in reports.")
    base: dict[str, Any] = Field(
        default_factory=dict, description="A partial job config every job starts from."
    )
    grid: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted path -> values (a list, or a mapping label -> value); the "
        "cartesian product of all axes. A mapping value merges into that subtree.",
    )
    zip_: list[dict[str, Any]] = Field(
        default_factory=list,
        alias="zip",
        description="Groups of axes whose equal-length value lists move together.",
    )
    include: list[dict[str, Any]] = Field(
        default_factory=list,
        description="GitHub-Actions style: add keys to matching points, or add new points.",
    )
    exclude: list[dict[str, Any]] = Field(
        default_factory=list, description="Remove the points that match every key given."
    )
    seeds: list[int] = Field(
        default_factory=list, description="Repeat every point once per seed (train.seed)."
    )
    runs_dir: str | None = Field(
        None, description="Root of run folders, relative to this file (default: ./runs)."
    )
    search: SearchSpec | None = Field(
        None,
        description="Tuned search (random, TPE, evolution) over a space, for each grid point.",
    )
    executor: ExecutorSpec = Field(
        default_factory=ExecutorSpec,
        description="Where jobs run: local (default) or slurm, with the Slurm settings.",
    )


def read(path: str | Path) -> tuple[dict[str, Any], Positions]:
    """The raw mapping of a matrix file and where each key was written."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MatrixError([Problem(file, 1, 1, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise MatrixError([Problem(file, 1, 1, "", f"cannot read: {err}")]) from None
    data, positions = parse_yaml(text, file)
    if not isinstance(data, dict):
        message = "a matrix file must be a mapping with at least `name:`"
        raise MatrixError([positions.problem((), "", message)])
    return data, positions


def validate_spec(
    data: dict[str, Any], positions: Positions
) -> tuple[MatrixSpec | None, list[Problem]]:
    """The spec, plus problems. Broken entries are dropped and validation goes on, so
    that one typo does not hide the other mistakes of the file."""
    problems: list[Problem] = []
    data = dict(data)
    for _ in range(20):
        try:
            return MatrixSpec.model_validate(data), problems
        except ValidationError as err:
            for e in err.errors():
                loc = tuple(e["loc"])
                problems.append(spec_problem(e, loc, positions))
                _drop(data, loc)
    return None, problems


def spec_problem(e: dict[str, Any], loc: tuple, positions: Positions) -> Problem:
    key = ".".join(str(p) for p in loc)
    message = e["msg"]
    if e["type"] == "extra_forbidden":
        fields = [f.alias or n for n, f in MatrixSpec.model_fields.items()]
        message = f"unknown key '{loc[-1]}'{catalog.did_you_mean(str(loc[-1]), fields)}"
    elif e["type"] == "missing":
        message = "required key missing"
    elif e["type"] != "unknown_name" and not isinstance(e.get("input"), (dict, list)):
        message = f"{message} (got {e.get('input')!r})"
    return positions.problem(loc, key, message)


def _drop(data: dict[str, Any], loc: tuple) -> None:
    """Remove the entry an error points at (its top-level entry at most two levels down)."""
    if not loc:
        return
    top = loc[0]
    if top == "name":
        data["name"] = "invalid-name"
        return
    if len(loc) >= 2 and isinstance(data.get(top), (dict, list)):
        container = data[top] = dict(data[top]) if isinstance(data[top], dict) else list(data[top])
        if isinstance(container, dict):
            container.pop(loc[1], None)
            return
        if isinstance(loc[1], int) and loc[1] < len(container):
            container[loc[1]] = {} if top != "seeds" else 0
            return
    data.pop(top, None)


def json_schema() -> dict[str, Any]:
    """JSON Schema of matrix files, with the job schema under `base` and axis paths
    listed for editor autocompletion."""
    from ftmatrix.config import JobConfig
    from ftmatrix.matrix import paths

    job = JobConfig.model_json_schema(ref_template="#/$defs/{model}")
    defs = job.pop("$defs", {})
    job.pop("required", None)
    schema = MatrixSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ftmatrix matrix"
    schema["$defs"] = {**defs, **schema.get("$defs", {}), "JobConfig": job}
    props = schema["properties"]
    props["base"] = {"$ref": "#/$defs/JobConfig", "description": props["base"]["description"]}
    axis = {
        "anyOf": [
            {"type": "array", "minItems": 1},
            {"type": "object", "minProperties": 1},
        ]
    }
    grid_props = {p: {**axis, "description": d} for p, d in paths.all_paths().items()}
    free = {re.escape(p) + r"\..+": axis for p in paths.free_form_paths()}
    props["grid"] = {
        "type": "object",
        "description": props["grid"]["description"],
        "properties": grid_props,
        "patternProperties": free,
        "additionalProperties": False,
    }
    return schema

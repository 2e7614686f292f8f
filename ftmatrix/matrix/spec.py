"""The matrix file's schema: `MatrixSpec`, its validation with every problem located,
and the JSON Schema for editors.

Reading the YAML (positions, duplicate keys, YAML 1.2) is load.py; expansion into jobs
(and the checks that need the job schema) is plan.py. Standard library and pydantic
only: never torch.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ftmatrix import catalog
from ftmatrix.bounds import MAX_NAME, Seed
from ftmatrix.matrix import errors
from ftmatrix.matrix.executors import ExecutorSpec
from ftmatrix.matrix.load import MatrixError, Positions, Problem, parse_yaml, read
from ftmatrix.matrix.search import SearchSpec

# Loading lives in load.py; these names are used through this module too.
__all__ = [
    "MatrixError",
    "MatrixSpec",
    "Positions",
    "Problem",
    "json_schema",
    "parse_yaml",
    "read",
    "spec_problem",
    "validate_spec",
]

# ----------------------------------------------------------------------- schema

# params_schema: a JSON Schema file, or a pydantic model "module:Model"
SCHEMA_REF = re.compile(r"(?i)\.(json|ya?ml)$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class MatrixSpec(BaseModel):
    """A matrix file: one base job config and the ways it varies."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=MAX_NAME,
        description="Names the run folder runs/<name>/: letters, digits, '_', '-', '.' "
        f"(at most {MAX_NAME}).",
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
    seeds: list[Seed] = Field(
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
    track: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="Send each finished job to these trackers (each an extra: "
        "pip install 'ftmatrix[mlflow]'); ftmatrix run --track adds to them.",
    )
    track_uri: str | None = Field(
        None,
        max_length=2048,
        description="MLflow tracking URI (default: sqlite:///<run folder>/mlflow.db).",
    )
    params_schema: str | None = Field(
        None,
        max_length=1024,
        description="What every job's `params` must satisfy: a JSON Schema file (.json, "
        ".yaml, .yml; relative to this file), checked by validate; or a pydantic model "
        "'module:Model' (found from this file's folder), checked at pre-flight in a "
        "separate process. No part of a job's id.",
    )

    @field_validator("params_schema")
    @classmethod
    def _schema_or_model(cls, v: str | None) -> str | None:
        if v is not None and not SCHEMA_REF.search(v):
            raise ValueError(
                f"'{v}' is neither a JSON Schema file (.json, .yaml, .yml) nor a pydantic "
                "model 'module:Model'"
            )
        return v


def validate_spec(
    data: dict[str, Any], positions: Positions
) -> tuple[MatrixSpec | None, list[Problem]]:
    """The spec, plus problems. Broken entries are dropped and validation goes on, so
    that one typo does not hide the other mistakes of the file."""
    problems: list[Problem] = []
    data = dict(data)
    for _ in range(20):
        try:
            spec = MatrixSpec.model_validate(data)
        except ValidationError as err:
            for e in err.errors():
                loc = tuple(e["loc"])
                problems.append(spec_problem(e, loc, positions))
                _drop(data, loc)
        else:
            return spec, [
                *problems,
                *ignored_settings(spec, positions),
                *_direction(spec, positions),
                *_trackers(spec, positions),
            ]
    return None, problems


def spec_problem(e: Mapping[str, Any], loc: tuple, positions: Positions) -> Problem:
    """A pydantic error of the matrix schema at `loc`, as a problem at its place."""
    fields = [f.alias or n for n, f in MatrixSpec.model_fields.items()]
    text = errors.message({**e, "loc": loc}, fields=fields)
    return positions.problem(loc, ".".join(str(p) for p in loc), text)


# Sections whose settings apply only when their `enabled` is true.
SWITCHED = ("data.augment", "lora", "train.early_stopping", "distill")


def ignored_settings(spec: MatrixSpec, positions: Positions) -> list[Problem]:
    """Settings of a switched section (augmentation, LoRA, early stopping, distillation)
    given while no job of the matrix turns that section on: they would be ignored."""
    written = list(assignments(spec))
    problems = []
    for section in SWITCHED:
        switch = f"{section}.enabled"
        if any(path == switch and any(map(_true, values)) for path, values, _ in written):
            continue
        for path, _, where in written:
            if path.startswith(section + ".") and path != switch:
                message = (
                    f"{switch} is true in no job of this matrix, so this setting would be "
                    f"ignored: set {switch}: true (in base, an axis or include) or remove it"
                )
                problems.append(positions.problem(where, path, message))
    return problems


def _direction(spec: MatrixSpec, positions: Positions) -> list[Problem]:
    """A search that maximises a loss, or minimises a score."""
    search = spec.search
    if search is None:
        return []
    better = "minimize" if search.metric.endswith("loss") else "maximize"
    if search.direction == better:
        return []
    kind = "a loss: smaller" if better == "minimize" else "a score: larger"
    message = (
        f"direction {search.direction} contradicts metric {search.metric}, which is {kind} "
        f"is better; write direction: {better}"
    )
    return [positions.problem(("search", "direction"), "search.direction", message)]


def _trackers(spec: MatrixSpec, positions: Positions) -> list[Problem]:
    """Trackers asked for whose library is not installed (found without importing it)."""
    return [
        positions.problem(
            ("track", i),
            f"track.{i}",
            f"tracker '{name}' needs the {catalog.TRACKERS[name]} package: "
            f"pip install 'ftmatrix[{name}]'",
        )
        for i, name in enumerate(spec.track)
        if importlib.util.find_spec(catalog.TRACKERS[name]) is None
    ]


def _true(value: Any) -> bool:
    """Whether pydantic reads `value` as true in a boolean field."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "on", "yes", "y", "t")
    return value is True or (isinstance(value, int | float) and value == 1)


def assignments(spec: MatrixSpec):
    """(dotted path, values it may take, where it is written) for every setting the
    matrix writes: in base, grid and zip axes, include entries and the search space."""
    yield from _flat("", spec.base, ("base",))
    groups = [(("grid",), spec.grid)] + [(("zip", i), g) for i, g in enumerate(spec.zip_)]
    for at, group in groups:
        for key, values in group.items():
            if isinstance(values, dict):
                labelled = list(values.items())
            else:
                labelled = list(enumerate(values)) if isinstance(values, list) else []
            for label, value in labelled:
                yield from _flat(str(key), value, (*at, key, label))
    for i, entry in enumerate(spec.include):
        for key, value in entry.items():
            yield from _flat(str(key), value, ("include", i, key))
    for key, dist in (spec.search.space if spec.search else {}).items():
        choices = dist.get("choice", dist.get("_value")) if isinstance(dist, dict) else None
        values = tuple(choices) if isinstance(choices, list) else ()
        yield str(key), values, ("search", "space", key)


def _flat(prefix: str, value: Any, where: tuple):
    if not isinstance(value, dict):
        yield prefix, (value,), where
        return
    for key, inner in value.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield from _flat(path, inner, (*where, key))


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
            # a seed that is not yet there, so no false "repeated seeds" follows
            free = next(i for i in range(len(container) + 1) if i not in container)
            container[loc[1]] = {} if top != "seeds" else free
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

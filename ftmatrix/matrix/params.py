"""`params_schema:`: every job's free-form `params` checked against a schema the user
points to, before anything runs.

Two forms. A JSON Schema file (.json, .yaml or .yml, relative to the matrix file) is
checked here, by `validate` and `run`: every violation of every job at once, each at the
line that writes the offending value (at `params_schema` when a value is missing), with
its dotted key (`params.width`). A pydantic model ("module:Model") is user code, which
the planner never imports: here it is only found (like `function:`); the runner's
pre-flight validates the params in a separate process (runner/params_model.py).

The schema says what a job may be given, not what it computes: it is no part of a job's
id. A search over `params.*` has both ends of each range (or every choice) checked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ftmatrix import custom
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.load import MatrixError, read_yaml
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.search import Dist
from ftmatrix.matrix.spec import MatrixSpec, assignments

AT = ("params_schema",)
SCHEMA_SUFFIXES = (".json", ".yaml", ".yml")
MODEL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
UNSET: Any = object()


def is_model(ref: str) -> bool:
    """Whether `params_schema` names a pydantic model ("module:Model"), not a file."""
    return not ref.lower().endswith(SCHEMA_SUFFIXES) and MODEL.match(ref) is not None


def check(
    jobs: list[Job],
    *,
    spec: MatrixSpec,
    base_dir: Path,
    problems: Problems,
    searched: Sequence[Dist] = (),
) -> None:
    """Report each job's params that its schema refuses (see the module's docstring),
    and each end of a searched `params.*` range (or choice) that it would refuse."""
    ref = spec.params_schema
    if ref is None or not jobs:
        return
    if is_model(ref):
        module = ref.partition(":")[0]
        if not custom.module_found(module, base_dir=base_dir):
            problems.add(AT, "params_schema", f"module '{module}' cannot be found")
        return
    validator = _validator(base_dir / ref, problems)
    if validator is None:
        return
    _check_searched(validator, jobs[0], searched, ref=ref, problems=problems)
    written = list(assignments(spec))
    seen: set[tuple[tuple, str, str]] = set()
    for job in jobs:
        params = job.config.params or {}
        for error in validator.iter_errors(params):
            for origin, key, message in _located(error, params, written=written):
                if (origin, key, message) not in seen:
                    seen.add((origin, key, message))
                    problems.add(origin, key, f"{message} (params_schema {ref})")


def _check_searched(
    validator: Any, job: Job, searched: Sequence[Dist], *, ref: str, problems: Problems
) -> None:
    """Every bound or choice of a searched params setting, put into the first job's
    params, must satisfy the schema (as every bound of a search is a valid setting):
    otherwise the search would spend its budget on trials the script refuses."""
    for d in searched:
        if not d.path.startswith("params."):
            continue
        keys = d.path.split(".")[1:]
        for value in d.bounds():
            params = copy.deepcopy(job.config.params or {})
            parent = params
            for k in keys[:-1]:
                parent = parent.setdefault(k, {}) if isinstance(parent, dict) else {}
            parent[keys[-1]] = value
            for error in validator.iter_errors(params):
                if [str(p) for p in error.absolute_path][: len(keys)] == keys:
                    message = f"{value!r} (a value the search draws): {error.message}"
                    at = ("search", "space", d.path)
                    problems.add(at, f"search.space.{d.path}", f"{message} (params_schema {ref})")
                    break


def _validator(path: Path, problems: Problems) -> Any:
    """The JSON Schema validator of the file at `path`; None (and the problem noted at
    `params_schema`) when it is missing, unreadable or no valid JSON Schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if not path.is_file():
        problems.add(AT, "params_schema", f"schema file {path} does not exist")
        return None
    try:  # YAML 1.2 (of which JSON is a part), as matrices and search spaces are read
        schema, _ = read_yaml(path)
    except MatrixError as err:
        reason = "; ".join(map(str, err.problems))
        problems.add(AT, "params_schema", f"schema file {path} cannot be read: {reason}")
        return None
    if not isinstance(schema, (dict, bool)):
        kind = type(schema).__name__
        problems.add(AT, "params_schema", f"{path} is not a JSON Schema: it holds a {kind}")
        return None
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "its top"
        problems.add(
            AT, "params_schema", f"{path} is not a valid JSON Schema at {where}: {err.message}"
        )
        return None
    return cls(schema)


def _located(
    error: Any, params: dict[str, Any], *, written: list[tuple[str, tuple, tuple]]
) -> Iterable[tuple[tuple, str, str]]:
    """(YAML origin, dotted key, message) for one schema violation: a missing property
    is reported at `params_schema`, any other at where the job's value is written."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance:
                key = _dotted([*path, name])
                yield AT, key, f"{key} is required by the schema and no job setting gives it"
        return
    key = _dotted(path)
    value = _dig(params, path)
    yield origin(key, value, written), key, error.message


def _dotted(path: list[Any]) -> str:
    """['layers', 0, 'width'] -> 'params.layers[0].width'."""
    text = "params"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _dig(value: Any, path: list[Any]) -> Any:
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return UNSET
    return value


def origin(key: str, value: Any, written: list[tuple[str, tuple, tuple]]) -> tuple:
    """Where the matrix writes `value` at `key` (a list index: where its list is): the
    first place that writes this very value, else the first that writes the key, else
    `params_schema`."""
    dotted = key.split("[")[0]
    fallback: tuple | None = None
    for path, values, at in written:
        if dotted != path and not dotted.startswith(path + "."):
            continue
        rest = dotted[len(path) :].strip(".").split(".") if dotted != path else []
        if fallback is None:
            fallback = (*at, *rest)
        if "[" not in key and any(_same(_dig(v, rest), value) for v in values):
            return (*at, *rest)
    return fallback or AT


def _same(a: Any, b: Any) -> bool:
    return a is not UNSET and type(a) is type(b) and a == b

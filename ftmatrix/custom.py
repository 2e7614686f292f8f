"""Your own code as a job: the schema of `script:`, `function:` and `params:`.

A job is the built-in trainer unless it names a `script:` (a command, run without a
shell) or a `function:` ("module:function", called inside the job process). Such a job
needs no `data:` or `model:`; its own settings go in `params:` (free-form, part of the
job id). Arguments of a command may hold `{dotted.key}` placeholders that the job
process fills from the job's config (`{train.lr}`, `{params.width}`); each argument
stays one argument whatever the value holds. `{{` and `}}` are literal braces.

Standard library and pydantic only, like every schema module: `validate` checks that a
command or a module can be found without importing or running anything.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, TypeAdapter, field_validator

from ftmatrix.sections import Section

OWN_SECTIONS = ("function", "params", "script")  # sorted; absent: the built-in trainer
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class ScriptConfig(Section):
    """A command that trains one job, run without a shell in its own process."""

    command: list[str] = Field(
        ...,
        min_length=1,
        description="The argv list, e.g. [python, train.py, --lr, '{train.lr}']. "
        "'{dotted.key}' is replaced by that setting of the job; each item stays one "
        "argument. The first item is a program on PATH or a file relative to `cwd`.",
    )
    cwd: str | None = Field(
        None,
        description="Folder the command runs in; relative to the matrix file (default: "
        "the matrix file's folder).",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the command."
    )
    metrics_file: str | None = Field(
        None,
        description="A JSON-lines file the script writes itself (relative to the job "
        "folder), in the stdout form; read when the command ends.",
    )

    @field_validator("command")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        for item in v:
            placeholders(item)  # raises on an unclosed or empty placeholder
        return v


def placeholders(item: str) -> list[str]:
    """The dotted keys an argument names, in order; ValueError for a brace left open."""
    keys = []
    rest = PLACEHOLDER.sub("", item)
    if "{" in rest or "}" in rest:
        raise ValueError(f"'{item}': a brace without its pair (write {{{{ or }}}} for one)")
    for m in PLACEHOLDER.finditer(item):
        if m.group(1) is not None:
            key = m.group(1).strip()
            if not key:
                raise ValueError(f"'{item}': an empty placeholder {{}}")
            keys.append(key)
    return keys


def substitute(item: str, config: dict[str, Any]) -> str:
    """One argument with its placeholders filled from the config (plain JSON data)."""

    def fill(m: re.Match) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        value = lookup(config, m.group(1).strip())
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (dict, list)):
            import json

            return json.dumps(value, sort_keys=True)
        return "" if value is None else str(value)

    return PLACEHOLDER.sub(fill, item)


class Missing(KeyError):
    """A placeholder names no setting of the job."""


def lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise Missing(dotted)
        value = value[part]
    return value


def check_function(v: Any) -> Any:
    """`function:` is "module:function" (dotted module, one name)."""
    if v is not None and (not isinstance(v, str) or not FUNCTION.match(v)):
        raise ValueError(f"'{v}' is not 'module:function' (e.g. mypackage.train:main)")
    return v


def check_params(v: dict[str, Any]) -> dict[str, Any]:
    """Free-form settings: JSON data, no NaN or infinity."""

    def walk(x: Any, where: str) -> None:
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"{where} must be a finite number (got {x})")
        if isinstance(x, dict):
            for k, y in x.items():
                walk(y, f"{where}.{k}")
        elif isinstance(x, list):
            for i, y in enumerate(x):
                walk(y, f"{where}[{i}]")

    walk(v, "params")
    return v


def is_own(config: Any) -> bool:
    """Whether a job (a JobConfig or its JSON data) runs the user's own code."""
    if isinstance(config, dict):
        return bool(config.get("script") or config.get("function"))
    return getattr(config, "script", None) is not None or bool(getattr(config, "function", None))


def own_section(name: str, raw: Any) -> Any:
    """One of OWN_SECTIONS validated on its own (the planner checks it as a unit);
    pydantic's ValidationError when it is invalid."""
    if raw is None:
        return {} if name == "params" else None
    return _ADAPTERS[name].validate_python(raw)


_ADAPTERS: dict[str, TypeAdapter] = {
    "script": TypeAdapter(ScriptConfig),
    "function": TypeAdapter(Annotated[str, AfterValidator(check_function)]),
    "params": TypeAdapter(Annotated[dict[str, Any], AfterValidator(check_params)]),
}


# ------------------------------------------------------------ checks before running


def kind_of(value: Any) -> str:
    """The type a params value has, for the consistency check (ints are numbers)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "list" if isinstance(value, list) else "mapping"


def params_kinds(configs: list[Any]) -> list[tuple[str, str]]:
    """(dotted key, message) for each params key that holds values of different types
    across the jobs (null is allowed beside any type)."""
    seen: dict[str, dict[str, Any]] = {}

    def walk(x: Any, where: str) -> None:
        kind = kind_of(x)
        if kind != "null":
            seen.setdefault(where, {}).setdefault(kind, x)
        if kind == "mapping":
            for k, y in x.items():
                walk(y, f"{where}.{k}")

    for cfg in configs:
        for k, v in (getattr(cfg, "params", None) or {}).items():
            walk(v, f"params.{k}")
    return [
        (
            key,
            "values of different types across the jobs: "
            + ", ".join(f"{kind} ({value!r})" for kind, value in kinds.items()),
        )
        for key, kinds in seen.items()
        if len(kinds) > 1
    ]


def command_problems(cfg: Any, *, base_dir: Path) -> list[tuple[str, str]]:
    """(dotted key, message) for what stops a job's own code from starting: a command
    that is not on PATH nor a file, a placeholder naming no setting, a module that
    cannot be found (found by its spec: nothing is imported)."""
    found: list[tuple[str, str]] = []
    data = cfg.model_dump(mode="json")
    if cfg.script is not None:
        cwd = base_dir / (cfg.script.cwd or ".")
        if not cwd.is_dir():
            found.append(("script.cwd", f"folder {cwd} does not exist"))
        program = cfg.script.command[0]
        if not placeholders(program) and not find_program(program, cwd=cwd):
            found.append(
                ("script.command", f"'{program}' is neither a program on PATH nor a file in {cwd}")
            )
        for item in cfg.script.command:
            for key in placeholders(item):
                try:
                    lookup(data, key)
                except Missing:
                    found.append(("script.command", f"'{{{key}}}' names no setting of the job"))
    if cfg.function is not None:
        module = cfg.function.partition(":")[0]
        if not module_found(module, base_dir=base_dir):
            found.append(("function", f"module '{module}' cannot be found"))
    return found


def find_program(program: str, *, cwd: Path) -> bool:
    if "/" in program or (cwd / program).is_file():
        return (cwd / program).is_file()
    return shutil.which(program) is not None


def module_found(module: str, *, base_dir: Path) -> bool:
    """Whether `module` can be imported from the matrix's folder or sys.path, without
    importing it (the top package's spec; a submodule is looked for as a file)."""
    import sys

    top, _, rest = module.partition(".")
    local = base_dir / top
    if (base_dir / f"{top}.py").is_file() or (local / "__init__.py").is_file():
        path = local
    else:
        sys_path = [p for p in sys.path if p]
        spec = importlib.util.find_spec(top) if top not in sys.modules else None
        if spec is None and top not in sys.modules:
            return any((Path(p) / f"{top}.py").is_file() for p in sys_path)
        if not rest:
            return True
        origin = spec.origin if spec is not None else getattr(sys.modules[top], "__file__", None)
        if not origin:
            return True  # a namespace package: its parts are not on one path
        path = Path(origin).parent
    if not rest:
        return True
    target = path.joinpath(*rest.split("."))
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()

"""The pre-flight check of `params_schema: module:Model` (a pydantic model): every
distinct `params` of the jobs validated by the user's model in a separate process, so
that neither the planner nor the runner imports user code. `check(plan)` runs

    python -m ftmatrix.runner.params_model < {"model": "mymod:Params", "code_dir": "...",
                                              "params": [{...}, ...]}

which prints a JSON list of [dotted key, message, the value given]; a missing value and
an import failure come under the key `params_schema`. Each problem is then placed where
the matrix writes the value (as a JSON Schema's are: matrix/params.py). Importing this
module runs nothing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from typing import Any

from ftmatrix.matrix import params
from ftmatrix.matrix.jobs import Job, Plan
from ftmatrix.matrix.load import MatrixError, read
from ftmatrix.matrix.spec import assignments

TIMEOUT = 300  # seconds for importing the user's module and validating every params


def check(plan: Plan, jobs: list[Job]) -> list[str]:
    """'file:line:col: key: message' for each params of `jobs` (the ones about to run)
    the matrix's pydantic model refuses; [] when there is none to check (no
    params_schema, or a JSON Schema: validate's)."""
    model = plan.spec.params_schema if plan.spec is not None else None
    if model is None or not params.is_model(model) or not jobs:
        return []
    distinct = {json.dumps(j.config.params, sort_keys=True): j.config.params for j in jobs}
    request = {
        "model": model,
        "code_dir": str(plan.path.parent.resolve()),
        "params": list(distinct.values()),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ftmatrix.runner.params_model"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
        why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        found, why = None, [str(err)]
    if not isinstance(found, list):
        found = [["params_schema", f"{model} could not be checked: {why[0]}", None]]
    return _located(plan, found)


def _located(plan: Plan, found: list[list[Any]]) -> list[str]:
    try:
        positions = read(plan.path)[1]
    except MatrixError:
        return [f"{plan.path}: {key}: {message}" for key, message, _ in found]
    assert plan.spec is not None  # check() returned early otherwise
    written = list(assignments(plan.spec))
    out = []
    for key, message, value in found:
        at = params.AT if key == "params_schema" else params.origin(key, value, written)
        line, col = positions.find(at)
        out.append(f"{positions.file}:{line}:{col}: {key}: {message}")
    return out


def problems(model: str, all_params: list[dict[str, Any]]) -> list[list[Any]]:
    """[dotted key, message, value] for each field a job's params gives wrong or leaves
    out (run in the separate process: it imports the user's module)."""
    from pydantic import BaseModel, ValidationError

    module, _, name = model.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception as err:  # the user's module: anything may go wrong in it
        return [["params_schema", f"cannot import {model}: {type(err).__name__}: {err}", None]]
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return [["params_schema", f"{model} is not a pydantic model (BaseModel subclass)", None]]
    found: list[list[Any]] = []
    for given in all_params:
        try:
            cls.model_validate(given)
        except ValidationError as err:
            for e in err.errors():
                key = "params" + "".join(
                    f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]
                )
                if e["type"] == "missing":
                    message = f"{key} is required by {model} and no job setting gives it"
                    problem = ["params_schema", message, None]
                else:
                    value = e["input"] if _plain(e["input"]) else None
                    problem = [key, f"{e['msg']} (params_schema {model})", value]
                if problem not in found:
                    found.append(problem)
    return found


def _plain(value: Any) -> bool:
    """Whether a value goes through JSON unchanged (so the parent can find it)."""
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def main() -> int:
    request = json.load(sys.stdin)
    sys.path.insert(0, request["code_dir"])  # a module beside the matrix, as a job finds it
    out, sys.stdout = sys.stdout, sys.stderr  # the user's module may print: not on our JSON
    try:
        found = problems(request["model"], request["params"])
    finally:
        sys.stdout = out
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

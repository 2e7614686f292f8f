"""`params_schema:`: every job's params checked against a JSON Schema file by validate
(each violation at the line that writes the value), or against a pydantic model at
run's pre-flight in a separate process (validate never imports it); never part of ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftmatrix.matrix import plan
from ftmatrix.matrix.load import MatrixError
from tests.tiny import cli

SCHEMA = {
    "type": "object",
    "properties": {
        "width": {"type": "integer", "minimum": 1},
        "act": {"enum": ["relu", "gelu"]},
        "layers": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["width", "depth"],
}
BASE = "base:\n  script: {command: ['true']}\n  params: {width: 32, act: relu, depth: 2}\n"


def matrix(tmp_path: Path, grid: str, *, schema: str | None = "schema.json") -> Path:
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    path = tmp_path / "m.yaml"
    head = f"name: ps\nparams_schema: {schema}\n" if schema else "name: ps\n"
    path.write_text(head + BASE + grid)
    return path


def problems(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(MatrixError) as err:
        plan.load_plan(path)
    return sorted((p.line, p.key, p.message) for p in err.value.problems)


def test_every_violation_is_reported_at_the_line_that_writes_it(tmp_path: Path):
    path = matrix(
        tmp_path,
        "grid:\n"
        "  params.width: [32, 0]\n"  # line 7
        "  params.act: [relu, tanh]\n"  # line 8
        "include:\n"
        "  - {params.act: gelu, params.layers: [1, x]}\n",  # line 10
    )
    found = problems(path)
    assert [(line, key) for line, key, _ in found] == [
        (7, "params.width"),
        (8, "params.act"),
        (10, "params.layers[1]"),
    ]
    assert found[0][2] == "0 is less than the minimum of 1 (params_schema schema.json)"
    assert found[1][2].startswith("'tanh' is not one of ['relu', 'gelu']")
    assert found[2][2].startswith("'x' is not of type 'integer'")


def test_a_missing_value_is_reported_at_params_schema_and_yaml_schemas_work(tmp_path: Path):
    (tmp_path / "schema.yaml").write_text(
        "type: object\nrequired: [width, seed_bank]\nproperties: {width: {type: integer}}\n"
    )
    path = matrix(tmp_path, "grid:\n  params.width: [8, 16]\n", schema="schema.yaml")
    assert problems(path) == [
        (
            2,
            "params.seed_bank",
            "params.seed_bank is required by the schema and no job setting gives it "
            "(params_schema schema.yaml)",
        )
    ]


def test_valid_params_pass_and_the_schema_changes_no_id(tmp_path: Path):
    grid = "grid:\n  params.width: [8, 16]\n"
    checked = plan.load_plan(matrix(tmp_path, grid))
    plain = plan.load_plan(matrix(tmp_path, grid, schema=None))
    assert [j.id for j in checked.jobs] == [j.id for j in plain.jobs]
    assert len(checked.jobs) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "cannot be read"),
        ('["a list"]', "is not a JSON Schema: it holds a list"),
        ('{"type": 3}', "is not a valid JSON Schema at type"),
    ],
)
def test_a_bad_schema_file_is_refused_at_params_schema(tmp_path: Path, text, expected):
    path = matrix(tmp_path, "")
    (tmp_path / "schema.json").write_text(text)
    ((line, key, message),) = problems(path)
    assert (line, key) == (2, "params_schema") and expected in message


def test_params_schema_must_be_a_schema_file_or_a_model(tmp_path: Path):
    ((line, key, message),) = problems(matrix(tmp_path, "", schema="schema.txt"))
    assert (line, key) == (2, "params_schema")
    assert "neither a JSON Schema file (.json, .yaml, .yml) nor a pydantic model" in message


PARAMS_MODEL = """
from pydantic import BaseModel, Field
print("imported")
class Params(BaseModel):
    width: int = Field(gt=0)
    act: str
    depth: int
"""


def model_matrix(tmp_path: Path, grid: str) -> Path:
    (tmp_path / "pmodel.py").write_text(PARAMS_MODEL)
    (tmp_path / "fn.py").write_text("def train(config):\n    return {'accuracy': 0.5}\n")
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: pm\nparams_schema: pmodel:Params\nbase:\n  function: 'fn:train'\n"
        "  params: {width: 32, act: relu, depth: 2}\n" + grid
    )
    return path


def test_a_pydantic_model_is_found_by_validate_and_checked_at_preflight(tmp_path: Path):
    path = model_matrix(tmp_path, "grid:\n  params.width: [32, 0]\n")  # line 7
    (tmp_path / "pmodel.py").write_text("raise SystemExit('imported!')\n" + PARAMS_MODEL)
    out = cli("validate", str(path), cwd=tmp_path)
    assert out.returncode == 0 and "imported!" not in out.stdout + out.stderr  # never imported
    (tmp_path / "pmodel.py").write_text(PARAMS_MODEL)
    out = cli("run", str(path), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert (
        f"preflight: {path}:7:22: params.width: Input should be greater than 0 "
        "(params_schema pmodel:Params)" in out.stdout
    )
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "runs").exists()  # nothing was run


def test_a_pydantic_model_refuses_a_missing_field_and_passes_good_params(tmp_path: Path):
    path = model_matrix(tmp_path, "grid:\n  params.width: [8, 16]\n")
    path.write_text(path.read_text().replace("depth: 2", "deep: 2"))
    out = cli("run", str(path), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert (
        f"{path}:2:1: params_schema: params.depth is required by pmodel:Params and no job "
        "setting gives it" in out.stdout
    )
    path.write_text(path.read_text().replace("deep: 2", "depth: 2"))
    out = cli("run", str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "summary: 2 done" in out.stdout


def test_a_missing_model_module_is_refused_by_validate(tmp_path: Path):
    path = model_matrix(tmp_path, "")
    path.write_text(path.read_text().replace("pmodel:Params", "nomodule_xyz:Params"))
    ((line, key, message),) = problems(path)
    assert (line, key, message) == (2, "params_schema", "module 'nomodule_xyz' cannot be found")


def test_a_yaml_schema_is_read_as_yaml_1_2_like_the_matrix(tmp_path: Path):
    """`on` is a key (YAML 1.1 would make it true) and a duplicate key is refused at its
    line in the schema file, as in matrices and search spaces."""
    (tmp_path / "schema.yaml").write_text("type: object\nproperties:\n  on: {type: integer}\n")
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: ps\nparams_schema: schema.yaml\n"
        "base:\n  script: {command: ['true']}\n  params: {'on': x}\n"
    )
    assert problems(path) == [
        (5, "params.on", "'x' is not of type 'integer' (params_schema schema.yaml)")
    ]
    (tmp_path / "schema.yaml").write_text("type: object\ntype: array\n")
    ((line, key, message),) = problems(path)
    assert (line, key) == (2, "params_schema")
    assert f"{tmp_path / 'schema.yaml'}:2:1: type: duplicate key 'type'" in message


def test_both_ends_and_every_choice_of_a_searched_param_are_checked(tmp_path: Path):
    """A search over params.* is checked as its grid values are: a range end or a choice
    the schema refuses would spend the budget on trials the script refuses."""
    path = matrix(
        tmp_path,
        "search:\n  trials: 4\n  metric: test.accuracy\n  space:\n"
        "    params.width: {int: [0, 64]}\n"  # line 10
        "    params.act: {choice: [relu, tanh, gelu]}\n"  # line 11
        "    params.depth: {int: [1, 4]}\n",  # not in the schema's properties: anything goes
    )
    assert problems(path) == [
        (
            10,
            "search.space.params.width",
            "0 (a value the search draws): 0 is less than the minimum of 1 "
            "(params_schema schema.json)",
        ),
        (
            11,
            "search.space.params.act",
            "'tanh' (a value the search draws): 'tanh' is not one of ['relu', 'gelu'] "
            "(params_schema schema.json)",
        ),
    ]
    path.write_text(path.read_text().replace("[0, 64]", "[1, 64]").replace("tanh, ", ""))
    assert [j.id for j in plan.load_plan(path).jobs]

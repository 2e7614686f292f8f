"""`--only`: an expression that does not parse, names no setting, or picks no job is a
clear error (exit 2 from `ftmatrix run`), never a traceback or a run of nothing."""

from __future__ import annotations

import textwrap

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.matrix import plan
from ftmatrix.matrix.select import SelectError, matches, parse, select

MATRIX = """
name: pick
runs_dir: runs
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
  lora: {target_modules: [conv1]}
grid:
  train.lr: [0.1, 0.01, 1.0e-4]
  lora.enabled: [false, true]
"""


@pytest.fixture
def matrix(tmp_path):
    path = tmp_path / "pick.yaml"
    path.write_text(textwrap.dedent(MATRIX))
    return path


@pytest.fixture
def jobs(matrix):
    return plan.load_plan(matrix).jobs


@pytest.mark.parametrize(
    ("expr", "n"),
    [
        ("lr=0.1", 2),
        ("train.lr=1e-4", 2),
        ("train.lr=0.0001", 2),
        ("lora=true", 3),
        ("lora.enabled=true, lr=0.01", 1),
        ("lr=0.01 lora=false", 1),
        ("model.name=resnet18", 6),
    ],
)
def test_terms_pick_by_label_display_or_value(jobs, expr, n):
    assert len(select(jobs, expr)) == n


@pytest.mark.parametrize(
    "expr", ["lr", "lr=", "=0.1", "lr=0.1 junk", "lr=0.1;lora=true", "[", "lr:0.1"]
)
def test_an_expression_that_does_not_parse_is_refused(jobs, expr):
    with pytest.raises(SelectError, match="expects key=value terms"):
        select(jobs, expr)


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("lr=0.5", "matches none of the 6 jobs; their settings are lr: 0.1, 0.01, 1e-4"),
        ("lora=maybe", "matches none of the 6 jobs"),
        ("lr=0.1, lora=nope", "lora: false, true"),
        ("model.name=[", "matches none"),  # not YAML: compared as text, no crash
        ("model.name={a", "matches none"),
    ],
)
def test_an_expression_that_picks_no_job_is_refused_with_the_values(jobs, expr, text):
    with pytest.raises(SelectError, match="matches none") as err:
        select(jobs, expr)
    assert text in str(err.value)


def test_an_unknown_key_is_refused_with_a_suggestion(jobs):
    with pytest.raises(SelectError, match=r"did you mean 'lora\.enabled'"):
        select(jobs, "lora.enabld=true")


def test_no_expression_picks_every_job(jobs):
    assert select(jobs, None) == jobs and select(jobs, "") == jobs


def test_matches_reads_a_term_as_yaml_or_as_text(jobs):
    first = jobs[0]
    assert matches(first, parse("train.lr=0.1"))
    assert matches(first, parse("lora.enabled=false"))
    assert not matches(first, parse("model.name=[x"))


@pytest.mark.parametrize("expr", ["lr=0.5", "nonsense", "lr=0.1 junk", "lora.enabld=1"])
def test_run_exits_2_with_the_reason_and_writes_nothing(matrix, monkeypatch, expr):
    monkeypatch.chdir(matrix.parent)
    result = CliRunner().invoke(
        app, ["run", str(matrix), "--only", expr, "--launcher", "spawn", "--quiet"]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "--only" in result.output
    assert not (matrix.parent / "runs").exists()

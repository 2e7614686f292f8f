"""The command line: validate, plan, schema; help everywhere; no torch for planning."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app

runner = CliRunner()
ROOT = Path(__file__).parent.parent


def test_validate_says_ok_with_the_job_count():
    result = runner.invoke(app, ["validate", "matrices/hw4.yaml"])
    assert result.exit_code == 0, result.output
    assert "ok: 6 jobs in 'hw4'" in result.output


def test_plan_shows_ids_and_varying_settings():
    result = runner.invoke(app, ["plan", "matrices/hw4.yaml"])
    assert result.exit_code == 0, result.output
    assert "6 jobs (0 done, 6 pending)" in result.output
    assert "r24" in result.output


def test_plan_json_lists_every_job():
    result = runner.invoke(app, ["plan", "matrices/loss-functions.yaml", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert len(data["jobs"]) == 90
    assert data["axes"] == ["train.epochs", "train.batch_size", "train.lr", "train.loss.name"]


def test_max_jobs_option_refuses_and_raises_the_limit():
    refused = runner.invoke(app, ["validate", "matrices/loss-functions.yaml", "--max-jobs", "50"])
    assert refused.exit_code == 2
    assert "90 jobs" in refused.output
    assert runner.invoke(app, ["validate", "matrices/loss-functions.yaml"]).exit_code == 0


def test_missing_file_is_a_clear_error():
    result = runner.invoke(app, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert "nope.yaml:1:1: no such file" in result.output


def test_schema_is_json_schema_with_axis_paths(tmp_path):
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "--out", str(out)]).exit_code == 0
    schema = json.loads(out.read_text())
    assert schema["properties"]["base"]["$ref"] == "#/$defs/JobConfig"
    grid = schema["properties"]["grid"]
    assert "train.lr" in grid["properties"] and "lora" in grid["properties"]
    assert grid["additionalProperties"] is False
    assert any(re.fullmatch(p, "model.config.hidden_size") for p in grid["patternProperties"])
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert all("description" in f for f in train.values())


def test_every_command_and_option_has_help():
    import typer.main

    group = typer.main.get_command(app)
    assert set(group.commands) == {
        "validate",
        "plan",
        "schema",
        "run",
        "status",
        "report",
        "train",
        "cancel",
        "server",
        "export",
    }
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name} has no help"
        assert runner.invoke(app, [name, "--help"]).exit_code == 0


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        assert f"ftmatrix {name}" in readme, name


def test_plan_and_validate_never_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ftmatrix.cli import app\n"
        "r = CliRunner().invoke(app, ['plan', 'matrices/hw4.yaml'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['validate', 'matrices/loss-functions.yaml'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'torchvision', 'transformers', 'peft')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("run", "--launcher", ["auto", "server", "forkserver", "spawn"]),
        ("run", "--executor", ["local", "slurm"]),
        ("report", "--format", ["md", "csv", "latex", "html"]),
    ],
)
def test_choices_are_listed_in_help_and_a_wrong_one_exits_2(command, option, choices, tmp_path):
    help_text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
    assert "<" + "|".join(choices) + ">" in help_text
    wrong = runner.invoke(app, [command, "matrices/hw4.yaml", option, "nope"])
    assert wrong.exit_code == 2
    assert f"Invalid value for '{option}'" in wrong.output
    assert "'nope' is not one of" in wrong.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seconds", ["0", "-5"])
def test_a_timeout_of_zero_or_less_is_refused(seconds, tmp_path):
    result = runner.invoke(
        app, ["run", "matrices/quickstart.yaml", "--timeout", seconds, "--runs-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.output
    assert "must be more than 0 seconds" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_report_hint_of_a_run_names_the_run_from_where_the_user_stands(tmp_path, monkeypatch):
    """A run prints `tables: ftmatrix report TARGET`; TARGET must find the run folder
    from the current folder, wherever the matrix's runs_dir points."""
    from ftmatrix.matrix import plan
    from ftmatrix.runner import dispatch, store

    text = (ROOT / "matrices" / "quickstart.yaml").read_text()
    (tmp_path / "studies").mkdir()
    cases = {
        "default": ("name: q1\n", None, "q1"),  # ./runs/q1: the name is enough
        "relative": ("name: q2\nruns_dir: ../results\n", None, "studies/q2.yaml"),
        "flag": ("name: q3\n", Path("elsewhere"), "q3 --runs-dir elsewhere"),
    }
    monkeypatch.chdir(tmp_path)
    for head, runs_dir, expected in cases.values():
        name = head.split()[1]
        matrix = Path("studies") / f"{name}.yaml"
        body = "\n".join(line for line in text.splitlines() if not line.startswith("name:"))
        matrix.write_text(head + body.replace("runs_dir:", "# runs_dir:") + "\n")
        p = plan.load_plan(matrix)
        request = dispatch.Request(matrix=matrix, runs_dir=runs_dir)
        target = dispatch.report_target(request, p)
        assert target == expected
        store.prepare(p, store.root_of(p, runs_dir))  # a run folder, as a run leaves it
        # the hint, run from here, finds that folder
        shown = runner.invoke(app, ["report", *target.split(), "--format", "csv"])
        assert shown.exit_code == 0, shown.output
        assert (
            store.root_of(p, runs_dir).resolve() / "results.csv"
            == Path(shown.output.split("wrote ")[1].strip()).resolve()
        )

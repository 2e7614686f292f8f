"""What must not change by accident, pinned: the job ids (and optuna study names) of every
shipped matrix, the CLI's commands and options, and the run-folder file names.

A change here is a change a user sees (a re-run, a broken script, unreadable old runs):
regenerate the golden files only on purpose, with a CHANGELOG line saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from ftmatrix import result
from ftmatrix.cli import app
from ftmatrix.matrix import plan
from ftmatrix.runner import studies

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden"
IDS = json.loads((GOLDEN / "ids.json").read_text())
MATRICES = sorted((ROOT / "matrices").glob("*.yaml"))


def test_every_shipped_matrix_is_pinned():
    assert sorted(IDS) == [p.stem for p in MATRICES]


@pytest.mark.parametrize("path", MATRICES, ids=[p.stem for p in MATRICES])
def test_job_ids_and_study_names_are_unchanged(path: Path):
    pl = plan.load_plan(path)
    assert [[j.label, j.id] for j in pl.jobs] == IDS[path.stem]["jobs"]
    if pl.search:
        names = [studies.study_name(j, pl.spec.search, pl.search) for j in pl.jobs]
        assert names == IDS[path.stem]["studies"]


def _options(command, prefix: str = "") -> dict[str, list[str]]:
    out = {}
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if getattr(sub, "commands", None):
            out.update(_options(sub, f"{prefix}{name} "))
        else:
            out[f"{prefix}{name}"] = sorted(
                sorted(p.opts)[0] if p.opts else p.name for p in sub.params
            )
    return out


def test_cli_commands_and_options_are_unchanged():
    assert _options(typer.main.get_command(app)) == json.loads((GOLDEN / "cli.json").read_text())


def test_run_folder_file_names_are_unchanged():
    names = {
        "RESULT": "result.json",
        "CONFIG": "config.json",
        "METRICS": "metrics.jsonl",
        "PROGRESS": "progress.jsonl",
        "LOG": "log.txt",
        "PLAN": "plan.json",
        "MATRIX_SNAPSHOT": "matrix.yaml",
    }
    assert {k: getattr(result, k) for k in names} == names


def test_import_paths_other_processes_resolve_still_exist():
    """Queued Slurm jobs hold a pickled `ftmatrix.runner.slurm.run_job`; older runners start
    `python -m ftmatrix.runner.server` and `python -m ftmatrix.trainers`; the fork server
    preloads `ftmatrix.trainers.job`."""
    import importlib
    import importlib.util

    assert callable(importlib.import_module("ftmatrix.runner.slurm").run_job)
    assert callable(importlib.import_module("ftmatrix.trainers.job").main)
    for module in ("ftmatrix.runner.server", "ftmatrix.trainers.__main__"):
        assert importlib.util.find_spec(module) is not None

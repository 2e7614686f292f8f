"""dispatch: from `ftmatrix run`'s options to one executor, or a refusal (exit 2) before
anything is written. The runs themselves are in test_execute.py, test_pool.py,
test_search_run.py and test_slurm.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from ftmatrix.matrix import plan as planning
from ftmatrix.runner import dispatch

from .helpers import MATRIX


def test_slurm_settings_are_the_matrixs_with_the_flags_on_top(tmp_path):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(MATRIX + "executor:\n  use: slurm\n  slurm: {partition: cpu, time: 30}\n")
    settings = planning.load_plan(matrix).spec.executor
    request = dispatch.Request(
        matrix=matrix, time_limit=90, mem_gb=8, sbatch_arg=["constraint=a100", "--exclusive=1"]
    )
    spec = dispatch.slurm_spec(settings, request.slurm_flags(), request.sbatch_arg)
    assert (spec.partition, spec.time, spec.mem_gb) == ("cpu", 90, 8)
    assert spec.sbatch_args == {"constraint": "a100", "exclusive": "1"}


@pytest.mark.parametrize(
    ("flags", "args", "message"),
    [
        ({"mem_gb": -1}, [], "--mem-gb: "),
        ({"cpus_per_job": 0}, [], "--cpus-per-job: "),
        ({}, ["constraint"], "--sbatch-arg must be KEY=VALUE, not 'constraint'"),
    ],
)
def test_bad_slurm_flags_are_refused_by_name(flags, args, message):
    with pytest.raises(dispatch.Refused, match=message):
        dispatch.slurm_spec(None, flags, args)


@pytest.mark.parametrize(
    ("extra", "options", "message"),
    [
        ("", {"executor": "pbs"}, "--executor must be local or slurm, not 'pbs'"),
        (
            "search:\n  trials: 2\n  space:\n    train.batch_size: {choice: [32, 64]}\n",
            {"executor": "slurm"},
            "a search: block runs with the local executor only",
        ),
        ("", {"timeout": 0.0}, "--timeout must be more than 0 seconds, not 0"),
        ("", {"launcher": "fork"}, "the launcher must be one of auto, server, forkserver"),
        ("", {"workers": 2, "gpus": "0"}, "it does not combine with --gpu or --workers"),
    ],
)
def test_options_that_cannot_work_are_refused_before_anything_is_written(
    tmp_path, extra, options, message
):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(MATRIX + extra)
    request = dispatch.Request(matrix=matrix, launcher=options.pop("launcher", "spawn"), **options)
    with pytest.raises(dispatch.Refused, match=message):
        dispatch.run(request, console=Console(file=io.StringIO()))
    assert not (tmp_path / "runs").exists()


def test_a_dry_run_shows_the_plan_and_runs_nothing(tmp_path):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(MATRIX)
    out = io.StringIO()
    request = dispatch.Request(matrix=matrix, dry_run=True, launcher="spawn")
    outcome = dispatch.run(request, console=Console(file=out, width=200))
    assert outcome == dispatch.Outcome(0)
    assert "4 jobs (0 done, 4 pending)" in out.getvalue()
    assert not (tmp_path / "runs").exists()
    assert Path(matrix).exists()

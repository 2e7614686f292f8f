"""Damaged run folders: a truncated, non-UTF-8 or non-object result.json, a damaged
plan.json. `status`, `plan`, `run --dry-run` and `run` name the file and the problem,
treat such a job as unfinished (it runs again), and still handle every healthy job.
The run here starts real processes through the spawn launcher, with a stand-in job
that only writes its result (no torch)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.matrix import plan as planning
from ftmatrix.result import PLAN, RESULT, read_result
from ftmatrix.runner import local, progress, status, store
from ftmatrix.runner.attempt import Options
from ftmatrix.runner.launchers.spawn import SpawnLauncher

from .helpers import MATRIX

cli = CliRunner()

DAMAGED_RESULTS = {
    "truncated": b'{"status": "done", "test": {"accu',
    "empty": b"",
    "not UTF-8": b'{"status": "done", "job_id": "\xff\xfe"}',
    "a list": b"[1, 2, 3]",
    "a string": b'"done"',
    "wrong types": b'{"status": 5, "epochs_run": "many"}',
}
DAMAGED_PLANS = {
    "truncated": b'{"name": "tiny", "jobs": [{"id": ',
    "not UTF-8": b"\x80\x81",
    "a number": b"42",
    "wrong types": b'{"name": "tiny", "jobs": 3}',
}


def done(job_id: str) -> dict:
    return {
        "status": "done",
        "job_id": job_id,
        "test": {
            "loss": 0.5,
            "accuracy": 0.875,
            "f1_macro": 0.75,
            "f1_weighted": 0.8,
            "precision_macro": 0.8,
            "recall_macro": 0.8,
            "top1": 0.875,
        },
        "timing": {"total": 12.0},
    }


@pytest.fixture
def folder(tmp_path):
    """The tiny matrix's run folder as runs leave it: job 0 done, job 1 failed, job 2
    with a damaged result (set per test), job 3 never started."""
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(textwrap.dedent(MATRIX))
    p = planning.load_plan(matrix)
    root = store.root_of(p)
    store.prepare(p, root)
    ok, failed, damaged, _ = (root / j.id for j in p.jobs)
    for job_dir, result in (
        (ok, done(ok.name)),
        (failed, {"status": "failed", "job_id": failed.name, "error_class": "oom"}),
    ):
        store.write_config(p.jobs[0], job_dir, base_dir=tmp_path)
        (job_dir / RESULT).write_text(json.dumps(result))
    store.write_config(p.jobs[2], damaged, base_dir=tmp_path)
    (damaged / "log.txt").write_text("started\n")
    return matrix, p, root


@pytest.mark.parametrize("kind", DAMAGED_RESULTS)
def test_status_names_a_damaged_result_and_shows_every_healthy_job(folder, kind):
    matrix, p, root = folder
    ok, failed, damaged, pending = (j.id for j in p.jobs)
    (root / damaged / RESULT).write_bytes(DAMAGED_RESULTS[kind])
    found = status.collect(root)
    states = {r.id: r.state for r in found.rows}
    assert states == {ok: "done", failed: "failed", damaged: "interrupted", pending: "pending"}
    assert {r.id: r.accuracy for r in found.rows}[ok] == 0.875
    (problem,) = found.problems
    assert problem.startswith(f"damaged: {root / damaged / RESULT}: ")

    shown = cli.invoke(app, ["status", str(matrix)], terminal_width=300)
    assert shown.exit_code == 0, shown.output
    assert f"{root / damaged / RESULT}" in shown.output
    assert "tiny: 1 done, 1 failed, 1 interrupted, 1 pending" in shown.output
    assert "0.8750" in shown.output


@pytest.mark.parametrize("kind", DAMAGED_PLANS)
def test_status_lists_the_job_folders_when_plan_json_is_damaged(folder, kind):
    _, p, root = folder
    (root / PLAN).write_bytes(DAMAGED_PLANS[kind])
    found = status.collect(root)
    assert sorted(r.id for r in found.rows) == sorted(j.id for j in p.jobs[:3])  # folders
    assert not any(r.state.startswith("stale") for r in found.rows)
    assert found.problems[0].startswith(f"damaged: {root / PLAN}: ")
    shown = cli.invoke(app, ["status", "tiny", "--runs-dir", str(root.parent)])
    assert shown.exit_code == 0, shown.output
    assert "plan.json" in shown.output and "1 done, 1 failed" in shown.output


@pytest.mark.parametrize("command", [["plan"], ["run", "--dry-run"]])
def test_plan_and_dry_run_show_failed_jobs_as_failed(folder, command):
    matrix, p, root = folder
    (root / p.jobs[2].id / RESULT).write_bytes(DAMAGED_RESULTS["truncated"])
    shown = cli.invoke(app, [*command, str(matrix)], terminal_width=300)
    assert shown.exit_code == 0, shown.output
    assert "4 jobs (1 done, 1 failed, 1 interrupted, 1 pending)" in shown.output
    rows = {line.split("│")[2].strip(): line for line in shown.output.splitlines() if "│" in line}
    assert "failed" in rows[p.jobs[1].id] and "done" in rows[p.jobs[0].id]
    assert "damaged result" in rows[p.jobs[2].id]
    assert f"damaged: {root / p.jobs[2].id / RESULT}" in shown.output


FAKE_JOB = """
import json, pathlib, sys
job = pathlib.Path(sys.argv[1])
with open(job / "ran.txt", "a") as f:
    f.write("ran\\n")
(job / "result.json").write_text(json.dumps({"status": "done", "job_id": job.name}))
"""


@pytest.mark.parametrize("kind", ["truncated", "not UTF-8", "a list"])
def test_a_run_runs_a_job_whose_result_is_damaged_again_and_no_healthy_one(folder, kind, tmp_path):
    _, p, root = folder
    damaged = root / p.jobs[2].id
    (damaged / RESULT).write_bytes(DAMAGED_RESULTS[kind])
    (tmp_path / "fakejob.py").write_text(FAKE_JOB)
    out = io.StringIO()
    code = local.run(
        p,
        root=root,
        options=Options(env={"PYTHONPATH": str(tmp_path)}),
        display=progress.Plain(Console(file=out, width=300)),
        launcher=SpawnLauncher("fakejob"),
    )
    text = out.getvalue()
    assert code == 1, text  # (the failed job waits for --retry-failed)
    assert "summary: 3 done, 1 failed" in text
    assert f"damaged: {damaged / RESULT}" in text and "counts as unfinished" in text
    assert read_result(damaged).status == "done"  # run again, its result whole now
    ran = {j.id for j in p.jobs if (root / j.id / "ran.txt").exists()}
    assert ran == {p.jobs[2].id, p.jobs[3].id}  # the damaged and the pending one only
    assert read_result(root / p.jobs[0].id).test.accuracy == 0.875  # never touched
    assert Path(root / p.jobs[1].id / RESULT).exists()  # failed waits for --retry-failed

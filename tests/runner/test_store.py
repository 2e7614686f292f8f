"""Run folders, locks, states, selection and pre-flight checks (no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftmatrix.matrix import plan
from ftmatrix.matrix.select import SelectError, select
from ftmatrix.runner import preflight, store


def test_a_lock_is_exclusive_across_processes_and_dies_with_its_holder(tmp_path):
    job = tmp_path / "job"
    held = store.claim(job)
    assert held is not None and store.claim(job) is None
    assert store.state(job) == "running" and store.state(job, claimed=True) == "pending"
    held.release()
    assert store.claim(job) is not None  # released with its file
    # a process that dies holding the lock never leaves a stale claim
    code = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.kill(os.getpid(), 9)"
    )
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run([sys.executable, "-c", code, str(other / ".lock")])
    assert not store.is_locked(other)


def test_states_come_from_the_files(tmp_path):
    job = tmp_path / "j"
    assert store.state(job) == "pending"
    job.mkdir()
    (job / "log.txt").write_text("started\n")
    assert store.state(job) == "interrupted"
    (job / "result.json").write_text(json.dumps({"status": "failed", "error_class": "oom"}))
    assert store.state(job) == "failed"
    store.reset(job, fresh=False)
    assert store.state(job) == "interrupted"


def test_config_paths_are_made_absolute_against_the_matrix(tmp_path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: m\nbase:\n  task: text-classification\n  data: {path: data/t.csv}\n"
        "  model: {name: org/bert}\n"
    )
    p = plan.load_plan(matrix)
    store.write_config(p.jobs[0], tmp_path / "out", base_dir=matrix.parent)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["data"]["path"] == str(tmp_path / "data" / "t.csv")
    assert p.jobs[0].config.data.path == "data/t.csv"  # the id keeps what was written


def test_only_selects_by_setting_label_or_short_name():
    p = plan.load_plan("matrices/hw4.yaml")
    assert len(select(p.jobs, "lora.enabled=true")) == 4
    assert len(select(p.jobs, "lora=r8")) == 2
    assert len(select(p.jobs, "lora=r24, model.name=google/vit-base-patch16-224")) == 1
    assert len(select(p.jobs, "train.lr=1e-4")) == 6
    with pytest.raises(SelectError):
        select(p.jobs, "lora.enabld=true")
    with pytest.raises(SelectError):
        select(p.jobs, "nonsense")


def test_preflight_reports_every_data_problem_at_once(tmp_path):
    p = plan.load_plan("matrices/hw4.yaml")
    problems = preflight.check(p.jobs, root=tmp_path / "runs", base_dir=tmp_path)
    # (offline, the two ViTs' pretrained weights are missing too: one line each)
    problems = [p for p in problems if "pretrained weights cannot be had" not in p]
    assert len(problems) == 1 and "does not exist" in problems[0]
    (tmp_path / "data" / "hw4" / "only-one-class").mkdir(parents=True)
    problems = preflight.check(p.jobs, root=tmp_path / "runs", base_dir=tmp_path / "x")
    assert "does not exist" in problems[0]
    problems = preflight.check(p.jobs, root=tmp_path / "runs", base_dir=tmp_path / "m")
    assert problems  # ../data/hw4 from tmp/m is tmp/data/hw4: one class folder only


def test_run_refuses_missing_data_before_any_job(tmp_path):
    from typer.testing import CliRunner

    from ftmatrix.cli import app

    result = CliRunner().invoke(app, ["run", "matrices/hw4.yaml", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "preflight: data.path '../data/hw4'" in result.output
    assert not (tmp_path / "hw4").exists()

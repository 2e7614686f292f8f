"""The local pool: several jobs at a time (--workers on CPU, --gpus pins one GPU each).

The runner's fault tests (test_execute.py) also run with `--workers 2`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.result import read_result
from ftmatrix.runner.dispatch import Refused, slots
from tests.tiny import tiny_matrix

from .helpers import MATRIX, ids, starts, wait_for

pytestmark = pytest.mark.slow

# 1 lr x 2 LoRA x 3 seeds: six jobs of two epochs
SIX = tiny_matrix(epochs=2).replace("train.lr: [0.003, 0.001]", "train.lr: [0.003]")
SIX += "  train.seed: [0, 1, 2]\n"


def spans(root, job_ids) -> list[tuple[float, float]]:
    """(start, end) of each job process, from its progress.jsonl events."""
    out = []
    for job_id in job_ids:
        events = [json.loads(line) for line in (root / job_id / "progress.jsonl").open()]
        out.append((events[0]["time"], events[-1]["time"]))
    return out


def most_at_once(intervals) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_two_workers_run_six_jobs_at_most_two_at_a_time(tmp_path, runner):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(SIX)
    job_ids = ids(matrix)
    assert len(job_ids) == 6
    proc = runner(matrix, "--workers", "2")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    root = tmp_path / "runs" / "tiny"
    assert all(read_result(root / i).status == "done" for i in job_ids)
    assert all(len(starts(matrix, i)) == 1 for i in job_ids)
    assert most_at_once(spans(root, job_ids)) == 2


def test_gpus_pin_one_gpu_per_job(tmp_path, runner):
    # on a machine without GPUs the jobs train on the CPU, but each still sees its slot
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(SIX.replace("train.seed: [0, 1, 2]", "train.seed: [0, 1]"))
    proc = runner(matrix, "--gpus", "3,5")
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out
    seen = [starts(matrix, i)[-1].split(" gpus=")[1].split(" ")[0] for i in ids(matrix)]
    assert sorted(seen) in (["3", "3", "5", "5"], ["3", "3", "3", "5"], ["3", "5", "5", "5"])
    assert set(seen) == {"3", "5"}


def test_slots_from_the_command_line(monkeypatch):
    assert slots(gpu=None, gpus=None, jobs_per_gpu=1, workers=3) == [None, None, None]
    assert slots(gpu=None, gpus="0,2", jobs_per_gpu=2, workers=1) == ["0", "0", "2", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert slots(gpu=None, gpus="all", jobs_per_gpu=1, workers=1) == ["4", "6"]
    with pytest.raises(Refused, match="distinct GPU indices"):
        slots(gpu=None, gpus="1,1", jobs_per_gpu=1, workers=1)


@pytest.mark.parametrize(
    "args",
    [
        ["--gpus", "0,0"],
        ["--gpus", "a"],
        ["--gpus", "0", "--workers", "2"],
        ["--jobs-per-gpu", "2"],
    ],
)
def test_bad_pool_options_exit_2_before_anything_runs(tmp_path, args):
    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(SIX)
    result = CliRunner().invoke(app, ["run", str(matrix), *args])
    assert result.exit_code == 2, result.output
    assert "--gpus" in result.output or "--jobs-per-gpu" in result.output
    assert not (tmp_path / "runs").exists()


def test_a_job_another_process_held_but_left_unfinished_is_run_here(tmp_path, runner):
    from ftmatrix.runner import store

    matrix = tmp_path / "tiny.yaml"
    matrix.write_text(MATRIX)
    held, *rest = ids(matrix)
    root = tmp_path / "runs" / "tiny"
    claim = store.claim(root / held)  # "another runner" has the first job...
    proc = runner(matrix)
    try:
        wait_for(lambda: all((root / i / "result.json").exists() for i in rest))
    finally:
        claim.release()  # ...and goes away without finishing it
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "waiting for 1 job(s) running in another process" in out
    assert read_result(root / held).status == "done"
    assert all(len(starts(matrix, i)) == 1 for i in [held, *rest])

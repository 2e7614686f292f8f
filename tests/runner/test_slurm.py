"""The Slurm executor against a real one-node cluster (scripts/slurm-local.sh start).

Each test has its own run folder, so its own submitit folder: job ids restart at 1 when
the cluster is wiped, and a reused folder could hand back a stale result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ftmatrix.result import read_result
from ftmatrix.runner import slurm
from tests.tiny import tiny_matrix

from .helpers import ids, starts, wait_for

pytestmark = pytest.mark.slow


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s in out for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if not _cluster_up():
        pytest.skip("no Slurm cluster answers: start one with `sudo scripts/slurm-local.sh start`")


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    text = tiny_matrix(epochs=2)
    path.write_text(text + "executor:\n  use: slurm\n  slurm: {time: 10, poll: 0.5}\n")
    return path


def run(matrix: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftmatrix.cli", "run", str(matrix), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, code: int = 0) -> str:
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == code, out
    return out


def records(matrix: Path) -> dict[str, str]:
    root = matrix.parent / "runs" / "tiny"
    return {i: r["job_id"] for i in ids(matrix) if (r := slurm.read_record(root / i))}


def squeue(job_ids) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True, text=True
    ).stdout
    return out.split()


def test_a_matrix_runs_to_done_on_slurm_as_one_job_array(tiny):
    finish(run(tiny))
    root = tiny.parent / "runs" / "tiny"
    assert all(read_result(root / i).status == "done" for i in ids(tiny))
    submitted = records(tiny)
    assert len({s.split("_")[0] for s in submitted.values()}) == 1  # one sbatch
    assert sorted(s.split("_")[1] for s in submitted.values()) == ["0", "1", "2", "3"]
    assert all(len(starts(tiny, i)) == 1 for i in ids(tiny))
    # a second run finds everything done and submits nothing
    finish(run(tiny))
    assert records(tiny) == submitted


def test_a_killed_runner_reattaches_without_submitting_again(tiny):
    first = ids(tiny)[0]
    # the first job sleeps in epoch 2, so the array is still on the cluster when killed
    env = {"FTMATRIX_FAULT": f"sleep@2:{first}"}
    proc = run(tiny, env=env)
    wait_for(lambda: len(records(tiny)) == 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    submitted = records(tiny)
    assert squeue(submitted.values())  # still queued or running
    again = run(tiny, "--quiet")
    wait_for(lambda: len(starts(tiny, ids(tiny)[3])) == 1)
    # stop the sleeper the way a time limit would, so the re-attached run can end
    subprocess.run(["scancel", submitted[first]], check=True)
    out = finish(again, code=1)
    assert records(tiny) == submitted  # nothing was submitted again
    root = tiny.parent / "runs" / "tiny"
    assert len(list((root / ".slurm").glob("*/*_submission.sh"))) == 1  # one sbatch in all
    assert all(len(starts(tiny, i)) == 1 for i in ids(tiny))
    assert read_result(root / first).error_class == "cancelled"
    assert [read_result(root / i).status for i in ids(tiny)[1:]] == ["done"] * 3
    assert "1 failed" in out


def test_a_job_past_its_time_limit_is_a_timeout_and_resumes_from_its_checkpoint(tiny):
    first = ids(tiny)[0]
    tiny.write_text(tiny.read_text().replace("time: 10", "time: 1"))
    only = ["--only", "lr=0.003 lora=false"]
    finish(run(tiny, *only, "--detach", env={"FTMATRIX_FAULT": f"sleep@2:{first}"}))
    # detached: `status --follow` waits for the queue and records how the job ended
    follow = subprocess.run(
        [sys.executable, "-m", "ftmatrix.cli", "status", str(tiny), "--follow", "--interval", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "timeout" in follow.stdout, follow.stdout + follow.stderr
    root = tiny.parent / "runs" / "tiny"
    result = read_result(root / first)
    assert result.error_class == "timeout"
    assert (root / first / "checkpoint" / "state.pt").exists()  # epoch 1 is kept

    finish(run(tiny, "--only", "lr=0.003 lora=false", "--retry-failed"))
    assert "start epoch=2 " in starts(tiny, first)[-1]
    assert read_result(root / first).resumed_from_epoch == 1


def test_ftmatrix_cancel_leaves_no_job_queued_and_keeps_finished_results(tiny):
    done = ids(tiny)[0]
    finish(run(tiny, "--only", "lr=0.003 lora=false"))
    finish(run(tiny, "--detach", env={"FTMATRIX_FAULT": "sleep@1"}))
    submitted = records(tiny)
    wait_for(lambda: len(squeue(submitted.values())) >= 1)
    out = subprocess.run(
        [sys.executable, "-m", "ftmatrix.cli", "cancel", str(tiny)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "cancelled 3 Slurm job(s)" in out
    wait_for(lambda: squeue(submitted.values()) == [], timeout=60)
    root = tiny.parent / "runs" / "tiny"
    assert read_result(root / done).status == "done"
    assert json.loads((root / done / "result.json").read_text())["status"] == "done"
    assert {read_result(root / i).error_class for i in ids(tiny)[1:]} == {"cancelled"}


def own_study(tmp_path: Path) -> Path:
    """A function job whose module sits beside the matrix and a script job whose `cwd`
    is relative to it (3 jobs), in tmp_path/study/."""
    study = tmp_path / "study"
    (study / "tools").mkdir(parents=True)
    (study / "beside.py").write_text(
        "def train(config):\n    return {'accuracy': config['params']['x'] / 10}\n"
    )
    (study / "tools" / "train.py").write_text(
        "import json, sys\n"
        "print(json.dumps({'ftmatrix': 'test', 'accuracy': float(sys.argv[1])}))\n"
    )
    matrix = study / "own.yaml"
    matrix.write_text(
        "name: own\nruns_dir: runs\n"
        "base: {function: 'beside:train', params: {x: 3}}\n"
        "grid:\n  params.x: [3, 7]\n"
        "include:\n"
        "  - {function: null, script: {command: [python, train.py, '{params.x}'], cwd: tools},"
        " params.x: 0.25}\n"
        "executor:\n  use: slurm\n  slurm: {time: 10, poll: 0.5}\n"
    )
    return matrix


def test_own_code_beside_the_matrix_runs_on_slurm_from_the_matrix_folder(tmp_path):
    # the runner, so sbatch and the task, start in tmp_path and name the matrix by a
    # relative path: only FTMATRIX_CODE_DIR tells the task where `beside` and tools/ are
    matrix = own_study(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "ftmatrix.cli", "run", "study/own.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = matrix.parent / "runs" / "own"
    results = [read_result(root / i) for i in ids(matrix)]
    assert [r.status for r in results] == ["done"] * 3
    assert sorted(r.test.accuracy for r in results) == [0.25, 0.3, 0.7]
    assert all(slurm.read_record(root / i) for i in ids(matrix))  # each went through Slurm
    assert len(list((root / ".slurm").glob("*/*_submission.sh"))) == 1

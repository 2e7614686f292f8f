"""The job entry points as the runner starts them: real processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftmatrix.result import read_result
from tests.tiny import image_job, make_job


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["module", "cli"])
def test_a_job_process_writes_its_result(tmp_path, entry):
    job = make_job(tmp_path / "j", image_job(epochs=1))
    cmd = (
        [sys.executable, "-m", "ftmatrix.trainers", str(job)]
        if entry == "module"
        else [sys.executable, "-m", "ftmatrix.cli", "train", str(job)]
    )
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_result(job).status == "done"
    assert "test accuracy" in done.stdout


@pytest.mark.slow
def test_a_failing_job_process_exits_1_with_a_failed_result(tmp_path):
    job = make_job(tmp_path / "j", image_job(epochs=2))
    env = {**__import__("os").environ, "FTMATRIX_FAULT": "raise@2"}
    done = subprocess.run(
        [sys.executable, "-m", "ftmatrix.trainers", str(job)], env=env, capture_output=True
    )
    assert done.returncode == 1
    result = read_result(job)
    assert result.error_class == "crash" and "injected fault" in result.error_message

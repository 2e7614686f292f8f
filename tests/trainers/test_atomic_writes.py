"""A job killed (SIGKILL) in the middle of writing a checkpoint or its weights leaves
the previous file or folder whole, or none: never half a file that a resume or a reload
would read. Each test kills a real job process at the moment the write is half done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftmatrix.result import read_metrics, read_result
from ftmatrix.trainers import checkpoint
from ftmatrix.trainers.job import main
from tests.tiny import image_job, make_job

# Runs a job with one writer replaced: at its `at`-th call for a file whose temp name
# holds `marker`, it writes the whole file, cuts it in half and dies by SIGKILL.
KILLER = """
import os, signal, sys
from ftmatrix.trainers import checkpoint, job

job_dir, marker, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = []

def dying(real):
    def write(obj, path, *args, **kwargs):
        result = real(obj, path, *args, **kwargs)
        if marker in os.path.basename(os.path.dirname(str(path))) + os.path.basename(str(path)):
            calls.append(path)
            if len(calls) == at:
                os.truncate(path, os.path.getsize(path) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
        return result
    return write

checkpoint.torch.save = dying(checkpoint.torch.save)
checkpoint.save_model = dying(checkpoint.save_model)
sys.exit(job.main(job_dir))
"""


def killed(job: Path, marker: str, at: int) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(job), marker, str(at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert read_result(job) is None


def readable(folder: Path) -> list[str]:
    """Every file a reader would open (no dot name) opens whole; their names."""
    names = []
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        if path.name.startswith("."):
            continue
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        names.append(path.name)
    return names


@pytest.mark.slow
def test_a_kill_while_state_pt_is_written_keeps_the_previous_epochs_state(tmp_path):
    job = make_job(tmp_path / "j", image_job(epochs=3, early_stopping={"enabled": False}))
    killed(job, ".state.pt.", at=2)  # epoch 2's state.pt, half written
    assert checkpoint.load(job / "checkpoint")["epoch"] == 1
    assert "state.pt" in readable(job / "checkpoint")
    assert len(read_metrics(job)) == 1
    assert main(job) == 0
    result = read_result(job)
    assert (result.resumed_from_epoch, result.epochs_run) == (1, 3)
    assert [p.name for p in (job / "checkpoint").glob(".*")] == []  # the temp file swept


@pytest.mark.slow
def test_a_kill_while_the_best_weights_are_written_leaves_no_best_file(tmp_path):
    config = image_job(epochs=2)
    config["output"] = {"keep_checkpoint": True}  # to look at it once the job is done
    job = make_job(tmp_path / "j", config)
    killed(job, ".best-1.safetensors.", at=1)
    assert readable(job / "checkpoint") == []  # neither best-1 nor a state naming it
    assert checkpoint.load(job / "checkpoint") is None
    assert main(job) == 0
    result = read_result(job)
    assert result.resumed_from_epoch is None and result.status == "done"
    assert f"best-{result.best_epoch}.safetensors" in readable(job / "checkpoint")


@pytest.mark.slow
@pytest.mark.parametrize("before", ["none", "an earlier export"])
def test_a_kill_while_weights_are_exported_keeps_the_old_folder_or_none(tmp_path, before):
    config = image_job(epochs=2)
    config["output"] = {"keep_checkpoint": True}  # the rerun resumes after the last epoch
    job = make_job(tmp_path / "j", config)
    old = None
    if before == "an earlier export":
        assert main(job) == 0
        old = (job / "weights" / "model.safetensors").read_bytes()
        (job / "result.json").unlink()  # as --retry-failed would leave it: export again
    killed(job, ".weights.", at=1)
    if old is None:
        assert not (job / "weights").exists()
    else:
        assert (job / "weights" / "model.safetensors").read_bytes() == old
    assert readable(job / "weights") in ([], ["model.safetensors"])
    assert main(job) == 0  # the reload: resumes after the last epoch, exports again
    assert read_result(job).epochs_run == 2
    saved = load_file(str(job / "weights" / "model.safetensors"))
    best = load_file(str(job / "checkpoint" / f"best-{read_result(job).best_epoch}.safetensors"))
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in saved)
    assert [p.name for p in job.glob(".weights.*")] == []  # the killed export's temp folder

"""The runner with real job processes: results, resume, faults, locks, signals."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from ftmatrix.result import read_result
from ftmatrix.runner.status import collect

from .helpers import Runner, ids, job_pids, starts, wait_for

pytestmark = pytest.mark.slow


def launched(request) -> Runner:
    if request.param == "pool":
        return Runner("forkserver", ["--workers", "2"])
    if request.param == "server":
        return Runner("server", env=request.getfixturevalue("warm_server"))
    return Runner(request.param)


@pytest.fixture(params=["forkserver", "spawn", "pool", "server"])
def runner(request) -> Runner:
    """The runner tests about signals, resume and failures run with each launcher (the
    runner's fork server, a fresh interpreter, the warm server of `ftmatrix server
    start`) and with a pool of two."""
    return launched(request)


@pytest.fixture(params=["forkserver", "pool", "server"])
def forked(request) -> Runner:
    """Those about what the runner decides (what reruns, locks, reading results,
    resuming a checkpoint) run without the fresh-interpreter launcher: it starts and
    follows its jobs through the same `process` module as the others (its signals,
    failures and re-attach are tested above), at 5-7 s of imports a job."""
    return launched(request)


def test_a_matrix_runs_to_done_and_an_edit_reruns_only_what_changed(tiny, forked):
    runner = forked
    first = runner(tiny)
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out
    root = tiny.parent / "runs" / "tiny"
    before = ids(tiny)
    assert all(read_result(root / i).status == "done" for i in before)
    assert "summary: 4 done" in out
    assert (root / "plan.json").exists() and (root / "matrix.yaml").exists()

    tiny.write_text(tiny.read_text().replace("[0.003, 0.001]", "[0.003, 0.01]"))
    again = runner(tiny)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    after = ids(tiny)
    kept, new = set(before) & set(after), set(after) - set(before)
    assert len(kept) == 2 and len(new) == 2
    assert all(len(starts(tiny, i)) == 1 for i in after)  # nothing ran twice
    rows = collect(root).rows
    assert sum(r.state.startswith("stale") for r in rows) == 2  # kept, shown as stale


def test_failures_are_classified_the_rest_finish_and_retry_reruns_only_them(tiny, runner):
    crash, nan, hang, fine = ids(tiny)
    faults = f"raise@1:{crash},nan@1:{nan},sleep@1:{hang}"
    proc = runner(tiny, "--timeout", "20", env={"FTMATRIX_FAULT": faults})
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out
    root = tiny.parent / "runs" / "tiny"
    classes = {i: read_result(root / i).error_class for i in (crash, nan, hang)}
    assert classes == {crash: "crash", nan: "nan_loss", hang: "timeout"}
    assert read_result(root / fine).status == "done"
    assert "injected fault" in read_result(root / crash).log_tail

    retry = runner(tiny, "--retry-failed")
    out = retry.communicate(timeout=300)[0]
    assert retry.returncode == 0, out
    assert len(starts(tiny, fine)) == 1
    assert all(len(starts(tiny, i)) == 2 for i in (crash, nan, hang))


def test_sigkill_of_runner_and_job_mid_job_resumes_from_the_checkpoint(tiny, forked):
    runner = forked
    first, second, *_ = ids(tiny)
    root = tiny.parent / "runs" / "tiny"
    proc = runner(tiny, env={"FTMATRIX_FAULT": f"sleep@3:{second}"})
    # the second job hangs in epoch 3, after checkpointing epochs 1 and 2 (with a pool
    # the first may still be running beside it: wait for its result too)
    wait_for(
        lambda: (
            (root / second / "metrics.jsonl").exists()
            and len((root / second / "metrics.jsonl").read_text().splitlines()) == 2
            and read_result(root / first) is not None
        )
    )
    pids = job_pids(root / second)
    proc.kill()  # a power cut: the runner and the job die at once
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert read_result(root / first).status == "done"
    assert read_result(root / second) is None

    again = runner(tiny)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert len(starts(tiny, first)) == 1  # a finished result is never redone
    assert "start epoch=3 " in starts(tiny, second)[-1]  # resumed, not restarted
    assert read_result(root / second).resumed_from_epoch == 2


def test_sigkill_of_the_runner_alone_never_loses_or_repeats_a_job(tiny, runner):
    jobs = ids(tiny)
    root = tiny.parent / "runs" / "tiny"
    proc = runner(tiny)
    wait_for(lambda: (root / jobs[1] / "starts.log").exists())  # between/within jobs
    proc.kill()
    proc.wait()
    again = runner(tiny)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert all(read_result(root / i).status == "done" for i in jobs)
    assert all(len(starts(tiny, i)) == 1 for i in jobs)  # the orphaned job finished alone


def test_ctrl_c_exits_130_and_the_next_run_resumes(tiny, runner):
    first = ids(tiny)[0]
    root = tiny.parent / "runs" / "tiny"
    proc = runner(tiny, env={"FTMATRIX_FAULT": f"sleep@2:{first}"})
    wait_for(lambda: (root / first / "checkpoint" / "state.pt").exists())
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert time.monotonic() - sent < 15
    assert "run the same command again to resume" in out
    assert read_result(root / first) is None and job_pids(root / first) == []

    again = runner(tiny)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert "start epoch=2 " in starts(tiny, first)[-1]


def test_two_runners_on_one_matrix_run_each_job_once(tiny, forked):
    runner = forked
    a, b = runner(tiny), runner(tiny)
    out_a, out_b = a.communicate(timeout=300)[0], b.communicate(timeout=300)[0]
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    assert all(len(starts(tiny, i)) == 1 for i in ids(tiny))


def test_sigkill_while_a_result_is_written_never_reads_half_a_result(tiny, forked):
    runner = forked
    first, second, *_ = ids(tiny)
    root = tiny.parent / "runs" / "tiny"
    proc = runner(tiny, env={"FTMATRIX_FAULT": f"sleep@result:{second}"})
    # every epoch of the second job is checkpointed; it stalls just before result.json
    wait_for(lambda: len(read_lines(root / second / "metrics.jsonl")) == 3)
    wait_for(lambda: (root / second / "predictions.npz").exists())
    pids = job_pids(root / second)
    proc.kill()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    # what a kill in the middle of write_atomic leaves: a half-written temp file
    (root / second / ".result.json.k1ll3d.tmp").write_text('{"status": "done", "test": {"acc')
    assert read_result(root / second) is None
    # the lock goes with the killed process, once the kernel has torn it down
    wait_for(lambda: {r.id: r.state for r in collect(root).rows}[second] == "interrupted", 10)

    killed = np.load(root / second / "predictions.npz")
    killed_acc = float((killed["probs"].argmax(1) == killed["y_true"]).mean())

    again = runner(tiny)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert len(starts(tiny, first)) == 1
    assert "start epoch=4 " in starts(tiny, second)[-1]  # nothing left but the test
    result = read_result(root / second)
    assert result.status == "done" and result.resumed_from_epoch == 3
    assert result.epochs_run == 3
    assert result.test.accuracy == pytest.approx(killed_acc)  # the same best weights


def read_lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []

"""Script and function jobs (custom.py, trainers/own.py): reports from stdout and the
API, garbage ignored, failures with their log tail, resume after SIGKILL, and what
`validate` refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ftmatrix.result import read_metrics, read_result

PY = sys.executable
AWK = (
    'BEGIN {{ for (e = 1; e <= n; e++) printf "{{\\"ftmatrix\\": \\"epoch\\", '
    '\\"epoch\\": %d, \\"val_loss\\": %g}}\\n", e, lr / e; print "garbage {{ not json"; '
    'print "{{\\"ftmatrix\\": \\"epoch\\", \\"epoch\\": \\"x\\"}}"; '
    'print "{{\\"ftmatrix\\": \\"test\\", \\"accuracy\\": 0.5}}" }}'
)

# A resumable script without torch: its state is the epoch count and a running value.
RESUMABLE = textwrap.dedent(
    """
    import json, time
    from ftmatrix import job
    cfg = job.config()
    state = job.checkpoint_dir() / "state.json"
    epoch, value = 0, cfg["params"]["start"]
    if job.resuming() and state.exists():
        epoch, value = json.loads(state.read_text()).values()
    while epoch < cfg["train"]["epochs"]:
        epoch += 1
        value = value * 0.5 + epoch
        time.sleep(cfg["params"]["pause"])
        state.write_text(json.dumps({"epoch": epoch, "value": value}))
        job.log_epoch(epoch, val_loss=value)
        if job.should_stop():
            raise SystemExit(130)
    job.log_test(loss=value)
    """
)


def _matrix(tmp_path: Path, base: str, grid: str = "") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(f"# test\nname: own\nruns_dir: {tmp_path / 'runs'}\nbase:\n{base}{grid}")
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [PY, "-m", "ftmatrix", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _jobs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "runs" / "own").iterdir() if p.is_dir())


@pytest.mark.slow
def test_awk_job_reports_through_stdout_and_garbage_is_ignored(tmp_path: Path):
    m = _matrix(
        tmp_path,
        "  script:\n    command: [awk, -v, 'lr={train.lr}', -v, 'n={train.epochs}', "
        + json.dumps(AWK)
        + "]\n  train: {epochs: 3, lr: 0.3}\n",
    )
    out = _cli("run", str(m), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (job_dir,) = _jobs(tmp_path)
    result = read_result(job_dir)
    assert result.status == "done" and result.epochs_run == 3
    assert result.test.accuracy == 0.5
    assert [round(r.val_loss, 6) for r in read_metrics(job_dir)] == [0.3, 0.15, 0.1]
    assert [r.lr for r in read_metrics(job_dir)] == [0.3, 0.3, 0.3]  # the config's


@pytest.mark.slow
def test_a_crashing_script_is_failed_with_its_log_tail(tmp_path: Path):
    (tmp_path / "boom.py").write_text("print('about to fail')\nraise ValueError('bad batch')\n")
    m = _matrix(tmp_path, f"  script:\n    command: [{PY}, boom.py]\n")
    out = _cli("run", str(m), cwd=tmp_path)
    assert out.returncode == 1
    (job_dir,) = _jobs(tmp_path)
    result = read_result(job_dir)
    assert result.status == "failed" and result.error_class == "crash"
    assert "exited with code 1" in result.error_message
    assert "ValueError: bad batch" in result.log_tail and "about to fail" in result.log_tail


def _resumable(tmp_path: Path) -> Path:
    (tmp_path / "resumable.py").write_text(RESUMABLE)
    return _matrix(
        tmp_path,
        f"  script:\n    command: [{PY}, resumable.py]\n"
        "  params: {start: 1.0, pause: 0.4}\n  train: {epochs: 6}\n",
    )


@pytest.mark.slow
def test_sigkilled_script_resumes_from_its_checkpoint_with_the_same_metrics(tmp_path: Path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert _cli("run", str(_resumable(whole)), cwd=whole).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runner = subprocess.Popen(
        [PY, "-m", "ftmatrix", "run", str(_resumable(killed))],
        cwd=killed,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    metrics = None
    while time.monotonic() < deadline:
        found = list((killed / "runs" / "own").glob("*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            metrics = found[0]
            break
        time.sleep(0.05)
    assert metrics is not None
    job_dir = metrics.parent
    starts = (job_dir / "starts.log").read_text().splitlines()
    pid = int(starts[-1].split("pid=")[1].split()[0])
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the job and its script, no goodbye
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert read_result(job_dir) is None
    assert _cli("run", str(_resumable(killed)), cwd=killed).returncode == 0
    (reference,) = [p for p in (whole / "runs" / "own").iterdir() if p.is_dir()]
    assert reference.name == job_dir.name
    assert "resuming=1" in (job_dir / "starts.log").read_text().splitlines()[-1]
    assert [r.val_loss for r in read_metrics(job_dir)] == [
        r.val_loss for r in read_metrics(reference)
    ]
    assert read_result(job_dir).test.loss == read_result(reference).test.loss
    assert read_result(job_dir).resumed_from_epoch >= 2


@pytest.mark.slow
def test_function_job_reports_through_the_api(tmp_path: Path):
    (tmp_path / "mytrain.py").write_text(
        "from ftmatrix import job\n"
        "def fit(cfg):\n"
        "    for e in range(1, 3):\n"
        "        job.log_epoch(e, val_accuracy=cfg['params']['w'] * e)\n"
        "    return {'accuracy': 0.75}\n"
    )
    m = _matrix(tmp_path, "  function: 'mytrain:fit'\n  params: {w: 0.25}\n")
    out = _cli("run", str(m), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    (job_dir,) = _jobs(tmp_path)
    assert [r.val_accuracy for r in read_metrics(job_dir)] == [0.25, 0.5]
    assert read_result(job_dir).test.accuracy == 0.75


def test_validate_refuses_what_cannot_start_without_importing(tmp_path: Path):
    m = _matrix(
        tmp_path,
        "  script:\n    command: [no-such-program-xyz, '{train.nope}']\n  params: {w: 1}\n",
        "grid:\n  params.w: [1, 'wide']\n",
    )
    out = _cli("validate", str(m), cwd=tmp_path)
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert f"{m}:6:" in text and "no-such-program-xyz" in text
    assert "'{train.nope}' names no setting" in text
    assert "params.w" in text and "different types" in text
    (tmp_path / "m.yaml").write_text(
        "# t\nname: own\nbase:\n  function: 'not_a_module_anywhere.sub:fit'\n"
    )
    out = _cli("validate", str(m), cwd=tmp_path)
    assert out.returncode == 2
    assert f"{m}:4:" in out.stdout + out.stderr
    assert "module 'not_a_module_anywhere.sub' cannot be found" in out.stdout + out.stderr


def test_placeholders_are_single_arguments():
    from ftmatrix import custom

    config = {"train": {"lr": 0.1}, "params": {"name": "a b; rm -rf /"}}
    assert custom.substitute("--lr={train.lr}", config) == "--lr=0.1"
    assert custom.substitute("{params.name}", config) == "a b; rm -rf /"
    assert custom.substitute("{{literal}}", config) == "{literal}"
    with pytest.raises(ValueError):
        custom.placeholders("{open")


@pytest.mark.slow
def test_a_matrix_named_by_a_relative_path_finds_its_own_code(tmp_path: Path):
    # FTMATRIX_CODE_DIR is absolute: the job process does not start where the runner did
    study = tmp_path / "study"
    (study / "tools").mkdir(parents=True)
    (study / "beside.py").write_text("def train(config):\n    return {'accuracy': 0.75}\n")
    (study / "tools" / "t.py").write_text(
        "import json\nprint(json.dumps({'ftmatrix': 'test', 'accuracy': 0.25}))\n"
    )
    (study / "m.yaml").write_text(
        "name: own\nruns_dir: runs\nbase: {function: 'beside:train'}\n"
        "grid: {params.kind: [function]}\ninclude:\n"
        "  - {params.kind: script, function: null, script: {command: [python, t.py], cwd: tools}}\n"
    )
    out = _cli("run", "study/m.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    runs = sorted((study / "runs" / "own").iterdir())
    assert sorted(read_result(p).test.accuracy for p in runs if p.is_dir()) == [0.25, 0.75]

"""The warm job server (`ftmatrix server start`): jobs forked from it give the numbers
the runner's own fork server gives; a runner uses it only for the same code and
setting; it stops when asked or when idle. The runner's fault tests run against it
too (test_execute.py, the `server` launcher)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftmatrix.result import LOG, read_result
from ftmatrix.runner.launchers import choice, warm
from ftmatrix.runner.launchers.forkserver import ForkServerLauncher

from .helpers import Runner, ids, wait_for

pytestmark = pytest.mark.slow


def results(matrix) -> dict[str, tuple]:
    root = matrix.parent / "runs" / "tiny"
    out = {}
    for job_id in ids(matrix):
        r = read_result(root / job_id)
        out[job_id] = (r.status, r.test.accuracy, r.test.loss, r.best_epoch)
    return out


def test_jobs_forked_by_the_server_give_the_runners_own_fork_servers_numbers(
    tiny, tmp_path, warm_server
):
    served = Runner(env=warm_server)(tiny)  # --launcher auto: the warm server, since one runs
    out = served.communicate(timeout=300)[0]
    assert served.returncode == 0, out
    root = tiny.parent / "runs" / "tiny"
    for job_id in ids(tiny):
        assert (root / job_id / LOG).read_text().startswith("--- start"), job_id
        assert "(warm server)" in (root / job_id / LOG).read_text().splitlines()[0]

    other = tmp_path / "other"
    other.mkdir()
    forked_matrix = other / "tiny.yaml"
    forked_matrix.write_text(tiny.read_text())
    forked = Runner("forkserver")(forked_matrix)
    out = forked.communicate(timeout=300)[0]
    assert forked.returncode == 0, out
    assert "(forked)" in (other / "runs" / "tiny" / ids(tiny)[0] / LOG).read_text()
    assert results(tiny) == results(forked_matrix)
    assert all(r[0] == "done" for r in results(tiny).values())


def test_another_setting_falls_back_to_the_runners_own_fork_server(warm_server, monkeypatch):
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", warm_server["FTMATRIX_SERVER_DIR"])
    assert isinstance(choice.choose("auto"), warm.ServerLauncher)
    assert isinstance(choice.choose("forkserver"), ForkServerLauncher)
    # an import-time setting of the libraries: the server's copy would not see it
    monkeypatch.setenv("HF_HOME", "/elsewhere")
    assert isinstance(choice.choose("auto"), ForkServerLauncher)
    with pytest.raises(LookupError, match="ftmatrix server start"):
        choice.choose("server")
    assert len(warm.running()) == 1  # the other setting's server still answers


def test_run_with_launcher_server_and_no_server_exits_2(tiny, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ftmatrix", "run", str(tiny), "--launcher", "server"],
        env={**os.environ, "FTMATRIX_SERVER_DIR": str(tmp_path / "none")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no warm server runs for this code and setting" in proc.stderr
    assert not (tiny.parent / "runs").exists()  # nothing was run


def test_a_server_stops_when_idle_and_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", str(tmp_path / "servers"))
    cli = [sys.executable, "-m", "ftmatrix", "server"]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 1 and "no warm server runs" in status.stdout
    info, _seconds, _log = warm.start(idle=1.0)  # exits after a second without a job
    assert info is not None and info["jobs"] == 0
    wait_for(lambda: warm.ping() is None, 30)
    assert (
        "idle for 1 s: stopping" in (tmp_path / "servers" / f"{warm.fingerprint()}.log").read_text()
    )

    started = subprocess.run([*cli, "start", "--idle", "5"], capture_output=True, text=True)
    assert started.returncode == 0 and "warm server ready" in started.stdout, started.stderr
    pid = warm.ping()["pid"]
    status = subprocess.run([*cli, "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"warm server pid {pid}" in status.stdout
    stopped = subprocess.run([*cli, "stop"], capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"stopped 1 server(s): pid {pid}" in stopped.stdout
    assert warm.ping() is None and warm.running() == []


def test_a_server_stopped_mid_run_leaves_its_job_followed_and_the_rest_forked(
    tiny, tmp_path, monkeypatch
):
    env = {"FTMATRIX_SERVER_DIR": str(tmp_path / "servers")}
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", env["FTMATRIX_SERVER_DIR"])
    info, _seconds, _log = warm.start(idle=60)
    assert info is not None
    first, *rest = ids(tiny)
    root = tiny.parent / "runs" / "tiny"
    # the first job hangs in epoch 1 until the runner's --timeout stops it
    proc = Runner(env=env)(tiny, "--timeout", "15", env={"FTMATRIX_FAULT": f"sleep@1:{first}"})
    wait_for(lambda: (root / first / "starts.log").exists())
    assert [s["pid"] for s in warm.stop()] == [info["pid"]]
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, out
    # its server gone, the runner still followed the job by pid and stopped it in time
    assert read_result(root / first).error_class == "timeout"
    assert "(warm server)" in (root / first / LOG).read_text().splitlines()[0]
    for job_id in rest:  # the later jobs: the run's own fork server
        assert read_result(root / job_id).status == "done"
        assert "(forked)" in (root / job_id / LOG).read_text().splitlines()[0]


def test_an_older_runner_still_starts_the_server_by_its_old_module_path(tmp_path, monkeypatch):
    """`python -m ftmatrix.runner.server` (how earlier versions start it) runs the same
    server: it answers on this code's socket."""
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", str(tmp_path / "servers"))
    old = subprocess.Popen(
        [sys.executable, "-m", "ftmatrix.runner.server", "--idle", "30"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: warm.ping() is not None, 120)
        assert warm.ping()["pid"] == old.pid
    finally:
        warm.stop()
        old.wait(30)


def test_the_warm_server_checks_the_models_as_a_process_of_its_own_does(
    warm_server, monkeypatch, tmp_path, capsys
):
    """Pre-flight asks the server (torch imported already) instead of starting an
    interpreter: the same problems; the server, which counts no job for it, serves on."""
    import json
    import textwrap

    from ftmatrix.matrix import plan
    from ftmatrix.runner import preflight
    from tests.tiny import TINY_VIT

    monkeypatch.setenv("FTMATRIX_SERVER_DIR", warm_server["FTMATRIX_SERVER_DIR"])
    launcher = choice.choose("server")
    bad = dict(TINY_VIT, image_size=4, config={**TINY_VIT["config"], "hidden_szie": 32})
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: t
        base:
          data: {{builtin: digits}}
          model: {json.dumps(bad)}
          lora: {{enabled: true, target_modules: [query, attn]}}
        """)
    )
    jobs = plan.load_plan(path).jobs
    where = {"root": tmp_path / "runs", "base_dir": tmp_path, "matrix": path}
    served = preflight.check(jobs, models=launcher.check_models, **where)
    assert "process of its own" not in capsys.readouterr().err  # the server answered
    assert len(served) == 3 and any("hidden_szie" in s for s in served), served
    assert served == preflight.check(jobs, **where)
    assert warm.ping(launcher.path)["jobs"] == 0

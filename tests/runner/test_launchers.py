"""Launchers: which one `choose` picks (the fork server only where forking is safe), the
stop ladder, signals to a job with no process group yet, liveness that survives PID
reuse, and the one seam into multiprocessing's internals.

A fake `torch` module stands in for the real one, so these tests never initialise CUDA
(nor import torch) whatever machine they run on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import types

import psutil
import pytest

from ftmatrix.runner.launchers import choice, process, spawn, warm
from ftmatrix.runner.launchers.forkserver import ForkServerLauncher
from ftmatrix.runner.launchers.spawn import SpawnLauncher


def fake_torch(*, initialised: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_initialized=lambda: initialised)
    return torch


@pytest.fixture
def linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")


def test_auto_forks_on_linux_when_torch_is_not_loaded_and_does_not_load_it(linux, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert isinstance(choice.choose("auto"), ForkServerLauncher)
    assert "torch" not in sys.modules


def test_auto_forks_when_torch_is_loaded_but_cuda_untouched(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(choice.choose("auto"), ForkServerLauncher)


def test_auto_spawns_when_the_parent_has_initialised_cuda(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=True))
    assert choice.cuda_initialised()
    assert isinstance(choice.choose("auto"), SpawnLauncher)
    # asked for by name, the fork server is still what the user gets
    assert isinstance(choice.choose("forkserver"), ForkServerLauncher)


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_auto_spawns_off_linux(platform, monkeypatch):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(choice.choose("auto"), SpawnLauncher)


def test_spawn_when_asked(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(choice.choose("spawn"), SpawnLauncher)


def test_a_half_imported_torch_counts_as_not_initialised(linux, monkeypatch):
    """torch in sys.modules while its own import is still running has no .cuda yet."""
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert not choice.cuda_initialised()
    assert isinstance(choice.choose("auto"), ForkServerLauncher)


def test_a_handle_waits_until_its_process_ends_and_no_longer():
    """The runner's pause between looks at a job: over when the job ends."""
    slow = spawn.Spawned(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]))
    try:
        began = time.monotonic()
        assert slow.wait(0.2) is None
        assert time.monotonic() - began >= 0.2
    finally:
        slow.popen.kill()
        slow.popen.wait()
    quick = spawn.Spawned(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    began = time.monotonic()
    assert quick.wait(30) == 3
    assert time.monotonic() - began < 10


def test_an_unknown_launcher_name_is_refused():
    with pytest.raises(ValueError, match="auto, server, forkserver, spawn"):
        choice.choose("fork")


STUBBORN = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_the_stop_ladder_ends_with_sigkill_for_a_job_that_ignores_the_others():
    popen = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, start_new_session=True
    )
    assert popen.stdout.readline() == b"ready\n"
    began = time.monotonic()
    code = spawn.Spawned(popen).stop(grace=0.5)
    assert code == -signal.SIGKILL
    assert 1.0 <= time.monotonic() - began < 10  # two graces, then at once


def test_a_job_with_no_process_group_yet_is_signalled_itself():
    """Forked but not yet in its own session, a job has no group of its own: killpg
    finds nothing, so the signal goes to the process (it was lost before)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert os.getpgid(child.pid) != child.pid  # in our group, not its own
        process.send(child.pid, signal.SIGTERM, process.follow(child.pid))
        assert child.wait(10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()


def _served(pid: int, followed) -> warm.Served:
    """A job of a warm server that has gone away: followed by pid alone."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.close()  # the server is gone: no exit status will come
    handle = warm.Served(ours, pid, followed)
    assert handle.wait(0.1) is None or handle.orphaned
    assert handle.orphaned
    return handle


def test_an_orphaned_job_is_followed_while_it_runs_and_not_after():
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    handle = _served(job.pid, process.follow(job.pid))
    assert handle.poll() is None and handle.wait(0.2) is None  # still running: followed
    job.kill()
    job.wait()
    assert handle.wait(5) == 255  # gone: result.json (or its absence) says how it ended


def _take_pid(pid: int) -> subprocess.Popen | None:
    """A new process with exactly `pid` (the kernel's next pid set by hand), or None
    where that cannot be done here (it needs root, and no other fork in between)."""
    for _ in range(50):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
        except OSError:
            return None
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        if other.pid == pid:
            return other
        other.kill()
        other.wait()
    return None


def test_a_job_pid_reused_by_another_process_is_not_followed():
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    followed = process.follow(job.pid)
    # Start times are counted in clock ticks (10 ms): a pid reused within one tick looks
    # like the same process to anyone. A real reuse comes much later; so does this one.
    time.sleep(0.05)
    job.kill()
    job.wait()  # reaped: its pid is free for the next process
    other = _take_pid(job.pid)
    if other is None:
        pytest.skip("cannot hand a chosen pid to a new process here (needs root)")
    try:
        assert psutil.pid_exists(job.pid)  # the pid runs again, as another process
        assert not process.alive(followed)
        handle = _served(job.pid, followed)
        assert handle.wait(1) == 255  # not followed: over at once, not after 60 s
        handle.signal(signal.SIGTERM)  # and never signalled in the job's stead
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_the_fork_server_pid_is_found_through_the_one_seam_into_multiprocessing():
    """`server_pid` reads multiprocessing's internals; this fails loudly (RuntimeError
    naming the seam) on a Python that changes them. In a fresh interpreter, so that no
    fork server of another test is involved."""
    code = (
        "import multiprocessing, os\n"
        "from multiprocessing import forkserver\n"
        "from ftmatrix.runner.launchers.forkserver import server_pid\n"
        "assert server_pid() is None\n"
        "forkserver.ensure_running()\n"
        "pid = server_pid()\n"
        "with open(f'/proc/{pid}/stat') as f: parent = int(f.read().split()[3])\n"
        "print(pid, parent == os.getpid())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pid, ours = out.stdout.split()
    assert int(pid) > 0 and ours == "True"

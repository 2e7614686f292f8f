"""Which launcher `choose` picks: the fork server only where forking is safe.

A fake `torch` module stands in for the real one, so these tests never initialise CUDA
(nor import torch) whatever machine they run on."""

from __future__ import annotations

import subprocess
import sys
import time
import types

import pytest

from ftmatrix.runner import launch


def fake_torch(*, initialised: bool) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_initialized=lambda: initialised)
    return torch


@pytest.fixture
def linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")


def test_auto_forks_on_linux_when_torch_is_not_loaded_and_does_not_load_it(linux, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert isinstance(launch.choose("auto"), launch.ForkServerLauncher)
    assert "torch" not in sys.modules


def test_auto_forks_when_torch_is_loaded_but_cuda_untouched(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(launch.choose("auto"), launch.ForkServerLauncher)


def test_auto_spawns_when_the_parent_has_initialised_cuda(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=True))
    assert launch.cuda_initialised()
    assert isinstance(launch.choose("auto"), launch.SpawnLauncher)
    # asked for by name, the fork server is still what the user gets
    assert isinstance(launch.choose("forkserver"), launch.ForkServerLauncher)


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_auto_spawns_off_linux(platform, monkeypatch):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(launch.choose("auto"), launch.SpawnLauncher)


def test_spawn_when_asked(linux, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(initialised=False))
    assert isinstance(launch.choose("spawn"), launch.SpawnLauncher)


def test_a_half_imported_torch_counts_as_not_initialised(linux, monkeypatch):
    """torch in sys.modules while its own import is still running has no .cuda yet."""
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    assert not launch.cuda_initialised()
    assert isinstance(launch.choose("auto"), launch.ForkServerLauncher)


def test_a_handle_waits_until_its_process_ends_and_no_longer():
    """The runner's pause between looks at a job: over when the job ends."""
    slow = launch.Process(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]))
    try:
        began = time.monotonic()
        assert slow.wait(0.2) is None
        assert time.monotonic() - began >= 0.2
    finally:
        slow.popen.kill()
        slow.popen.wait()
    quick = launch.Process(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    began = time.monotonic()
    assert quick.wait(30) == 3
    assert time.monotonic() - began < 10

"""Which launcher `choose` picks: the fork server only where forking is safe.

A fake `torch` module stands in for the real one, so these tests never initialise CUDA
(nor import torch) whatever machine they run on."""

from __future__ import annotations

import sys
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

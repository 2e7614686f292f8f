"""Fixtures of the runner tests (shared helpers are in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import MATRIX, Runner, alive, wait_for


@pytest.fixture(autouse=True)
def no_warm_server(tmp_path_factory, monkeypatch):
    """No test finds a warm server it did not start (a developer's own, say): each looks
    in an empty folder unless it asks for `warm_server`."""
    monkeypatch.setenv("FTMATRIX_SERVER_DIR", str(tmp_path_factory.mktemp("no-server")))


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(MATRIX)
    return path


@pytest.fixture
def runner() -> Runner:
    """`ftmatrix run` with --launcher auto (test_execute.py overrides it per launcher)."""
    return Runner()


@pytest.fixture(scope="session")
def warm_server(tmp_path_factory):
    """One warm server (`ftmatrix server start`) for the tests that fork from it, in a
    folder of its own so that no other test finds it; stopped, and checked gone, after.
    Its value: the environment that points a runner at it."""
    from ftmatrix.runner.launchers import warm

    env = {"FTMATRIX_SERVER_DIR": str(tmp_path_factory.mktemp("server"))}
    with pytest.MonkeyPatch.context() as patch:  # only while starting: no other test sees it
        patch.setenv("FTMATRIX_SERVER_DIR", env["FTMATRIX_SERVER_DIR"])
        # idle: longer than the rest of the suite may run after the last test that uses it
        info, _seconds, log = warm.start(idle=3600)
    assert info is not None, log.read_text()
    yield env
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTMATRIX_SERVER_DIR", env["FTMATRIX_SERVER_DIR"])
        stopped, left = warm.stop(), warm.running()
    # (stopped here, or by itself after an idle hour: gone either way)
    assert [s["pid"] for s in stopped] in ([info["pid"]], []) and left == []
    wait_for(lambda: not alive(info["pid"]), 10)

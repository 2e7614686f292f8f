"""The registry: which trackers can be used, and track() never raising."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftmatrix import trackers
from ftmatrix.trackers import TRACKERS, Tracker, TrackerMissing, export, missing, track
from tests.trackers.runs import grid


@pytest.fixture
def uninstalled(monkeypatch):
    """A tracker whose library is not installed."""
    fake = Tracker("ghost", "ftmatrix_no_such_library", "ftmatrix.trackers.ghost", "ghost")
    monkeypatch.setitem(TRACKERS, "ghost", fake)


def test_missing_names_unknown_trackers_and_the_extra_of_uninstalled_ones(uninstalled):
    assert missing(["tensorbord", "ghost"]) == [
        "unknown tracker 'tensorbord'; choose from tensorboard, mlflow, wandb, ghost",
        "tracker 'ghost' needs the ftmatrix_no_such_library package: pip install 'ftmatrix[ghost]'",
    ]


def test_missing_imports_no_tracker_library_and_nothing_here_imports_torch():
    code = (
        "import sys\n"
        "from ftmatrix.trackers import missing, mlflow, tensorboard, wandb\n"
        "from ftmatrix.reports import html\n"
        "missing(['tensorboard', 'mlflow', 'wandb'])\n"
        "print(sorted(m for m in ('tensorboard', 'mlflow', 'wandb', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_to_an_uninstalled_or_unknown_tracker_raises_a_clear_error(tmp_path, uninstalled):
    root = grid(tmp_path)
    with pytest.raises(TrackerMissing, match=r"pip install 'ftmatrix\[ghost\]'"):
        export(root, to="ghost")
    with pytest.raises(ValueError, match="unknown tracker 'nope'"):
        export(root, to="nope")


def test_track_never_raises_and_says_how_to_send_later(tmp_path, uninstalled):
    root = grid(tmp_path)
    warnings = track(root / "aaaaaaaaaaaa", trackers=["ghost", "nope"], run_root=root)
    assert warnings == [
        "ghost: job aaaaaaaaaaaa was not sent (TrackerMissing: tracker 'ghost' needs the "
        "ftmatrix_no_such_library package: pip install 'ftmatrix[ghost]'); "
        "later: ftmatrix export study --to ghost",
        "unknown tracker 'nope'; choose from tensorboard, mlflow, wandb, ghost",
    ]
    (warning,) = track(tmp_path / "no-such-run" / "x", trackers=["ghost"], run_root=tmp_path)
    assert warning.startswith("trackers: could not read")


def test_the_export_command_names_the_runs_folder_only_when_it_is_not_runs(tmp_path):
    assert trackers.export_command(tmp_path / "runs" / "hw4", "wandb") == (
        "ftmatrix export hw4 --to wandb"
    )
    assert trackers.export_command(tmp_path / "out" / "hw4", "mlflow", "http://h:5000") == (
        f"ftmatrix export hw4 --to mlflow --runs-dir {tmp_path / 'out'} --uri http://h:5000"
    )


def test_export_leaves_out_a_damaged_job_and_names_it(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    root = grid(tmp_path)
    (root / "aaaaaaaaaaaa" / "result.json").write_text('{"status": "done", "test": ')
    done = export(root, to="tensorboard")
    assert sorted(done.sent) == ["bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"]
    assert list(done.failed) == ["aaaaaaaaaaaa"] and "damaged" in done.failed["aaaaaaaaaaaa"]
    assert not done.ok
    (warning,) = track(root / "aaaaaaaaaaaa", trackers=["tensorboard"], run_root=root)
    assert warning.startswith("trackers: could not read") and "damaged" in warning


def test_export_of_a_folder_without_a_plan_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"plan\.json not found"):
        export(tmp_path, to="tensorboard")

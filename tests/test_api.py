"""ftmatrix.load (api.py): a run folder, a matrix file or a run name -> jobs with their
settings, states and metrics; to_pandas; damaged files named, never raised."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ftmatrix
from ftmatrix.result import METRICS, RESULT
from tests.trackers.runs import grid

A, B, C, D, E = ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd", "eeeeeeeeeeee")


def test_a_run_folder_gives_its_jobs_in_plan_order(tmp_path: Path):
    root = grid(tmp_path)
    runs = ftmatrix.load(root)
    assert (runs.name, runs.axes, len(runs)) == ("study", ["lora", "train.lr"], 5)
    assert [j.id for j in runs] == [A, B, C, D, E]
    assert [j.state for j in runs] == ["done", "done", "failed", "done", "pending"]
    b = runs[B]
    assert b.settings == {"lora": "r8", "train.lr": "0.1"}
    assert b.label == "lora=r8 lr=0.1"
    assert b.test["accuracy"] == 0.9 and b.test["topk"] == 1.0 and b.test["f1_macro"] == 0.89
    assert "confusion_matrix" not in b.test and "per_class_accuracy" not in b.test
    assert (b.epochs_run, b.trainable, b.seconds) == (3, 1000, 90.0)
    assert b.config["data"]["path"] == "digits"
    assert [e["epoch"] for e in b.epochs()] == [1, 2, 3]
    assert b.epochs()[-1]["val_accuracy"] == 0.9
    assert (runs[C].error, runs[C].error_message, runs[C].test) == ("nan_loss", "loss is nan", {})
    assert runs[E].config == {} and runs[E].epochs() == []
    assert runs.problems == []
    with pytest.raises(KeyError, match="no job 'nope'"):
        runs["nope"]


def test_a_run_name_and_a_matrix_file_find_the_same_folder(tmp_path: Path, monkeypatch):
    grid(tmp_path, name="quick")
    monkeypatch.chdir(tmp_path)
    assert [j.id for j in ftmatrix.load("quick")] == [A, B, C, D, E]
    matrix = tmp_path / "quick.yaml"
    matrix.write_text(
        "# test\nname: quick\nbase:\n  data: {path: digits}\n  model: {name: resnet18}\n"
    )
    assert ftmatrix.load(matrix).root == Path("runs") / "quick"
    assert ftmatrix.load(str(matrix), runs_dir=tmp_path / "runs").name == "quick"
    with pytest.raises(FileNotFoundError, match="not run yet"):
        ftmatrix.load(matrix, runs_dir=tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="no run folder, matrix file or run named 'nope'"):
        ftmatrix.load("nope")


def test_one_job_folder_is_a_run_of_one(tmp_path: Path):
    root = grid(tmp_path)
    runs = ftmatrix.load(root / B)
    assert [(j.id, j.state, j.test["accuracy"]) for j in runs] == [(B, "done", 0.9)]


def test_to_pandas_gives_one_row_per_job_with_settings_and_metrics(tmp_path: Path):
    pytest.importorskip("pandas")
    frame = ftmatrix.load(grid(tmp_path)).to_pandas()
    assert list(frame.columns[:5]) == ["id", "label", "state", "lora", "train.lr"]
    assert list(frame["id"]) == [A, B, C, D, E]
    assert frame.set_index("id").loc[D, "test.accuracy"] == 0.85
    assert math.isnan(frame.set_index("id").loc[C, "test.accuracy"])
    assert frame.set_index("id").loc[C, "error"] == "nan_loss"
    curves = ftmatrix.load(grid(tmp_path)).epochs_to_pandas()
    assert len(curves) == 4 * 3  # four jobs ran three epochs; the pending one has none
    assert curves[curves["id"] == B]["val_accuracy"].tolist() == [0.3, 0.6, 0.9]


def test_damaged_files_are_named_and_their_jobs_still_listed(tmp_path: Path):
    root = grid(tmp_path)
    (root / A / RESULT).write_text('{"status": "done", "test": {"accuracy": "high"}}')
    (root / B / METRICS).write_text('{"epoch": 1, "lr": 0.1, "seconds": 1}\nnot json\n')
    runs = ftmatrix.load(root)
    assert runs[A].state == "damaged" and runs[A].error == RESULT
    assert runs[B].state == "done" and runs[B].epochs() == []
    assert any(p.startswith(f"damaged: {root / A / RESULT}: test.accuracy") for p in runs.problems)
    assert f"damaged: {root / B / METRICS}: line 2: not valid JSON" in " ".join(runs.problems)
    (root / "plan.json").write_text("{not json")
    again = ftmatrix.load(root)
    assert sorted(j.id for j in again) == [A, B, C, D]  # the folders on disk
    assert "listing the job folders on disk instead" in again.problems[0]


def test_script_metrics_of_its_own_names_are_columns(tmp_path: Path):
    root = grid(tmp_path)
    (root / B / RESULT).write_text(
        json.dumps({"status": "done", "test": {"bleu": 31.5, "note": "x", "accuracy": 0.7}})
    )
    assert ftmatrix.load(root)[B].test == {"bleu": 31.5, "accuracy": 0.7}


def test_import_ftmatrix_stays_light_and_pandas_missing_is_a_clear_error(tmp_path: Path):
    root = grid(tmp_path)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["pandas"] = None  # as if not installed
        import ftmatrix
        heavy = [m for m in ("torch", "pandas", "ftmatrix.api") if sys.modules.get(m)]
        runs = ftmatrix.load({str(root)!r})
        try:
            runs.to_pandas()
        except ImportError as err:
            print(heavy, len(runs), err)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "[] 5 to_pandas needs pandas, which is not installed: pip install pandas"
    )

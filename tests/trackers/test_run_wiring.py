"""Trackers and the HTML report through the CLI, on a real (tiny) run: `track:` in the
matrix sends each job as it finishes, `ftmatrix export` sends a run later, `report
--format html` writes the page, and an unknown or uninstalled tracker is refused."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from tests.tiny import tiny_matrix

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def two_jobs(tmp_path, extra: str = ""):
    text = tiny_matrix(name="tracked", epochs=2).replace("  lora.enabled: [false, true]\n", "")
    path = tmp_path / "tracked.yaml"
    path.write_text(text + extra)
    return path


@pytest.mark.slow
def test_track_in_the_matrix_sends_each_job_and_export_and_html_follow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matrix = two_jobs(tmp_path, "track: [tensorboard]\n")
    runner = CliRunner()
    done = runner.invoke(app, ["run", str(matrix), "--quiet"])
    assert done.exit_code == 0, done.output
    root = tmp_path / "runs" / "tracked"
    plan = json.loads((root / "plan.json").read_text())
    folders = sorted((root / "tensorboard").iterdir())
    assert len(folders) == len(plan["jobs"]) == 2
    for folder in folders:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        assert [e.step for e in acc.Scalars("val/accuracy")] == [1, 2]
        (test,) = acc.Scalars("test/accuracy")
        job_id = folder.name.rsplit("(", 1)[1].rstrip(")")
        result = json.loads((root / job_id / "result.json").read_text())
        assert test.value == pytest.approx(result["test"]["accuracy"])

    sent = runner.invoke(app, ["export", "tracked", "--to", "mlflow"])
    assert sent.exit_code == 0, sent.output
    assert "sent 2 jobs to mlflow" in sent.output
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "tracked"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["ftmatrix.job_id"] for r in runs) == sorted(
        j["id"] for j in plan["jobs"]
    )

    page = runner.invoke(app, ["report", "tracked", "--format", "html"])
    assert page.exit_code == 0, page.output
    html = (root / "report.html").read_text()
    assert (root / "report.md").exists() and "<script" in html
    assert all(j["id"] in html for j in plan["jobs"])


def test_an_unknown_tracker_is_refused_at_its_line(tmp_path):
    matrix = two_jobs(tmp_path, "track: [tensorbord]\n")
    done = CliRunner().invoke(app, ["validate", str(matrix)])
    assert done.exit_code == 2
    line = len(matrix.read_text().splitlines())
    assert f"tracked.yaml:{line}:" in done.output and "track.0" in done.output


def test_a_tracker_that_is_not_installed_is_refused_naming_its_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    matrix = two_jobs(tmp_path, "track: [wandb]\n")
    done = CliRunner().invoke(app, ["validate", str(matrix)])
    assert done.exit_code == 2
    assert "pip install 'ftmatrix[wandb]'" in done.output and "track.0" in done.output
    run = CliRunner().invoke(app, ["run", str(two_jobs(tmp_path)), "--track", "wandb"])
    assert run.exit_code == 2 and "ftmatrix[wandb]" in run.output
    assert not (tmp_path / "runs").exists()


def test_export_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path):
    done = CliRunner().invoke(
        app, ["export", "nothing", "--to", "tensorboard", "--runs-dir", str(tmp_path)]
    )
    assert done.exit_code == 2


@pytest.mark.slow
def test_an_unreachable_mlflow_never_fails_the_run_and_export_sends_it_later(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matrix = two_jobs(tmp_path)
    runner = CliRunner()
    done = runner.invoke(
        app, ["run", str(matrix), "--track", "mlflow", "--track-uri", "http://127.0.0.1:9"]
    )
    assert done.exit_code == 0, done.output  # every job done, whatever the tracker did
    assert "ftmatrix export tracked --to mlflow" in done.output
    root = tmp_path / "runs" / "tracked"
    plan = json.loads((root / "plan.json").read_text())
    assert all(json.loads((root / j["id"] / "result.json").read_text())["status"] == "done"
               for j in plan["jobs"])  # fmt: skip
    sent = runner.invoke(app, ["export", "tracked", "--to", "mlflow"])
    assert sent.exit_code == 0 and "sent 2 jobs to mlflow" in sent.output, sent.output

"""MLflow runs read back with MlflowClient from the SQLite store in the run folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

from mlflow import MlflowClient

from ftmatrix.result import METRICS, RESULT, EpochMetrics
from ftmatrix.trackers import export, track
from ftmatrix.trackers.job import JOB_ID_TAG
from ftmatrix.trackers.mlflow import where
from tests.trackers.runs import curves, grid


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store: creating its tables takes ~10 s, so tests copy it."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def grid_run(tmp_path, empty_store) -> Path:
    root = grid(tmp_path)
    shutil.copy(empty_store, root / "mlflow.db")
    return root


def runs_by_job(root: Path) -> tuple[MlflowClient, dict]:
    client = MlflowClient(tracking_uri=where(root))
    (experiment,) = [e for e in client.search_experiments() if e.name == "study"]
    runs = client.search_runs([experiment.experiment_id])
    return client, {r.data.tags[JOB_ID_TAG]: r for r in runs}


def test_export_makes_one_run_per_job_with_params_metrics_tags_and_artifacts(grid_run, tmp_path):
    root = grid_run
    done = export(root, to="mlflow")
    assert done.ok and len(done.sent) == 4
    assert done.where == f"sqlite:///{(root / 'mlflow.db').resolve()}"
    assert done.opens == f"mlflow ui --backend-store-uri {done.where}"
    client, runs = runs_by_job(root)
    assert sorted(runs) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"]
    run = runs["bbbbbbbbbbbb"]
    assert run.info.run_name == "lora=r8 lr=0.1" and run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.1" and run.data.params["setting.lora"] == "r8"
    assert run.data.params["model.name"] == "resnet18"
    assert run.data.metrics["test/accuracy"] == pytest.approx(0.9)
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert [(m.step, round(m.value, 4)) for m in history] == [(1, 0.3), (2, 0.6), (3, 0.9)]
    assert run.data.tags["ftmatrix.weights"] == str((root / "bbbbbbbbbbbb" / "weights").resolve())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"result.json", "location.json"}
    local = Path(client.download_artifacts(run.info.run_id, "location.json", str(tmp_path)))
    assert json.loads(local.read_text())["job_dir"] == str((root / "bbbbbbbbbbbb").resolve())
    assert str(root.resolve()) in run.info.artifact_uri  # artifacts stay in the run folder
    failed = runs["cccccccccccc"]
    assert failed.info.status == "FAILED" and failed.data.tags["ftmatrix.error_class"] == "nan_loss"


def write_epochs(job: Path, lines: list[EpochMetrics]) -> None:
    (job / METRICS).write_text("".join(m.model_dump_json() + "\n" for m in lines))


def test_a_resumed_or_re_exported_job_updates_its_run_never_duplicates(grid_run):
    job = grid_run / "bbbbbbbbbbbb"
    five = curves(0.9, 5)
    write_epochs(job, five[:3])  # sent after 3 epochs; the job then resumed to 5
    assert track(job, trackers=["mlflow"], run_root=grid_run) == []
    first = runs_by_job(grid_run)[1]["bbbbbbbbbbbb"].info.run_id
    write_epochs(job, five)
    assert export(grid_run, to="mlflow").ok
    assert export(grid_run, to="mlflow").ok
    client, runs = runs_by_job(grid_run)
    assert len(runs) == 4
    run = runs["bbbbbbbbbbbb"]
    assert run.info.run_id == first
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
    # Re-run from scratch (different values at the same epochs): still one run, new history.
    write_epochs(job, curves(0.5, 2))
    assert export(grid_run, to="mlflow").ok
    client, runs = runs_by_job(grid_run)
    history = client.get_metric_history(runs["bbbbbbbbbbbb"].info.run_id, "val/accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]


def test_an_unreachable_server_gives_a_warning_quickly_and_export_later_succeeds(grid_run):
    root = grid_run
    job = root / "bbbbbbbbbbbb"
    started = time.monotonic()
    warnings = track(job, trackers=["mlflow"], run_root=root, uri="http://127.0.0.1:9")
    assert time.monotonic() - started < 30
    (warning,) = warnings
    assert warning.startswith("mlflow: job bbbbbbbbbbbb was not sent (")
    assert warning.endswith("later: ftmatrix export study --to mlflow --uri http://127.0.0.1:9")
    assert (job / RESULT).exists()  # the job itself is untouched
    failed = export(root, to="mlflow", uri="http://127.0.0.1:9")
    assert failed.error and not failed.sent
    assert export(root, to="mlflow").ok
    assert "bbbbbbbbbbbb" in runs_by_job(root)[1]

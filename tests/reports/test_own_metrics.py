"""Report columns for test metrics a job reported under its own names (a script's
`job.log_test(my_score=...)`, the built-in trainer's `train.metrics`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ftmatrix import result
from ftmatrix.reports import extras
from ftmatrix.reports.collect import load
from ftmatrix.reports.html import page_data
from ftmatrix.reports.report import results_csv
from ftmatrix.reports.tables import comparison
from tests.tiny import cli
from tests.trackers.runs import grid


def _add(folder: Path, **metrics) -> None:
    path = folder / result.RESULT
    data = json.loads(path.read_text())
    data["test"].update(metrics)
    path.write_text(json.dumps(data))


def test_own_numbers_are_kept_and_flags_and_text_are_not():
    test = result.TestMetrics.model_validate(
        {"accuracy": 0.5, "balanced_accuracy": 0.25, "note": "x", "ok": True, "bad": "nan"}
    )
    assert extras.own_metrics(test) == {"test.balanced_accuracy": 0.25}


def test_the_comparison_shows_a_column_per_own_metric(tmp_path: Path):
    root = grid(tmp_path)
    _add(root / "aaaaaaaaaaaa", balanced_accuracy=0.625, note="text is no column")
    _add(root / "bbbbbbbbbbbb", balanced_accuracy=0.75)
    study = load(root)
    by_id = {j.id: j for j in study.jobs}
    assert by_id["aaaaaaaaaaaa"].metrics["test.balanced_accuracy"] == 0.625
    assert "test.note" not in by_id["aaaaaaaaaaaa"].metrics
    table = comparison(study, "test.accuracy")
    assert table.headers.count("balanced accuracy") == 1 and "note" not in table.headers
    col = table.headers.index("balanced accuracy")
    lora, lr = table.headers.index("lora"), table.headers.index("train.lr")
    cells = {(row[lora], row[lr]): row[col] for row in table.rows}
    assert cells[("off", "0.1")] == "0.6250" and cells[("r8", "0.1")] == "0.7500"
    assert cells[("r8", "0.01")] == ""  # a job without it
    # the same numbers in report.html's data and in results.csv
    page = page_data(study, metric="test.accuracy", searched=None)
    assert page["metrics"][-1] == "test.balanced_accuracy"
    jobs = {j["id"]: j for j in page["jobs"]}
    assert jobs["bbbbbbbbbbbb"]["metrics"]["test.balanced_accuracy"] == 0.75
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(results_csv(study)))}
    assert rows["aaaaaaaaaaaa"]["test.balanced_accuracy"] == "0.625"
    assert rows["dddddddddddd"]["test.balanced_accuracy"] == ""


def own_only(tmp_path: Path) -> Path:
    """The grid's run with its test metrics replaced by own ones only (no accuracy):
    `exact` (a score) and `mean_err` (an error) for the three finished jobs."""
    root = grid(tmp_path)
    own = {"aaaaaaaaaaaa": (0.5, 0.25), "bbbbbbbbbbbb": (0.875, 0.5), "dddddddddddd": (0.75, 0.125)}
    for job, (exact, err) in own.items():
        path = root / job / result.RESULT
        data = json.loads(path.read_text())
        data["test"] = {"exact": exact, "mean_err": err}
        path.write_text(json.dumps(data))
    return root


def test_an_own_metric_is_chosen_with_its_direction_and_the_default_says_which(tmp_path):
    from ftmatrix.reports.collect import metric_name

    study = load(own_only(tmp_path))
    chosen = metric_name(None, study.jobs)  # no accuracy: the first score reported
    assert (chosen, chosen.larger) == ("test.exact", True)
    assert "No job reported test accuracy: compared by test.exact (larger" in chosen.note
    assert metric_name("mean_err", study.jobs).larger is False  # an error: smaller is better
    assert metric_name("exact:min", study.jobs).larger is False  # said so
    assert metric_name("accuracy", study.jobs).note == ""  # built-in names stay accepted
    with pytest.raises(ValueError, match=r"unknown metric 'test.exakt'.*did you mean 'test.exact'"):
        metric_name("exakt", study.jobs)
    with pytest.raises(ValueError, match="NAME:min or NAME:max"):
        metric_name("exact:up", study.jobs)
    # sorted by the own metric each way: the star goes to the best of each
    star = lambda m: next(r for r in comparison(study, m).rows if r[0])[1:3]  # noqa: E731
    assert star(metric_name("exact", study.jobs)) == ["r8", "0.1"]
    assert star(metric_name("mean_err", study.jobs)) == ["r8", "0.01"]
    assert star(metric_name("mean_err:max", study.jobs)) == ["r8", "0.1"]
    # a study that reported accuracy keeps it as the default, without a note
    plain = metric_name(None, load(grid(tmp_path / "plain")).jobs)
    assert (plain, plain.note) == ("test.accuracy", "")


def test_ftmatrix_report_by_an_own_metric(tmp_path: Path):
    root = own_only(tmp_path)
    runs = str(root.parent)
    out = cli("report", "study", "--runs-dir", runs, "--no-plots", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (root / "report.md").read_text()
    assert "## Comparison (sorted by test.exact, ★ best)" in text
    assert "No job reported test accuracy: compared by test.exact" in text
    assert "## Effect of each setting on test.exact" in text
    out = cli(
        "report", "study", "--runs-dir", runs, "--no-plots", "--metric", "mean_err", cwd=tmp_path
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = (root / "report.md").read_text()
    assert "sorted by test.mean_err" in text and "No job reported" not in text
    best = next(line for line in text.splitlines() if line.startswith("| ★"))
    assert "| r8 | 0.01 |" in best  # the smallest error
    wrong = cli("report", "study", "--runs-dir", runs, "--metric", "exakt", cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "unknown metric 'test.exakt'" in wrong.stderr and "test.mean_err" in wrong.stderr

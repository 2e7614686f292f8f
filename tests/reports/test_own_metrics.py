"""Report columns for test metrics a job reported under its own names (a script's
`job.log_test(my_score=...)`, the built-in trainer's `train.metrics`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ftmatrix import result
from ftmatrix.reports import extras
from ftmatrix.reports.collect import load
from ftmatrix.reports.html import page_data
from ftmatrix.reports.report import results_csv
from ftmatrix.reports.tables import comparison
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

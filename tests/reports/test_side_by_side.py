"""Two searches over the same space, TPE and evolution, in one report."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.reports import side_by_side
from ftmatrix.reports.collect import load


def search_run(root: Path, strategy: str, values: list[float]) -> Path:
    """A finished search: one job per trial with test accuracy `values[i]`."""
    root.mkdir(parents=True)
    entries, trials = [], []
    for i, acc in enumerate(values):
        job_id = f"{strategy[:3]}{i:09d}"
        entries.append({"id": job_id, "label": f"trial={i}", "settings": {"train.lr": str(i)}})
        folder = root / job_id
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        test = {
            "loss": 1 - acc,
            "accuracy": acc,
            "f1_macro": acc - 0.01,
            "f1_weighted": acc,
            "precision_macro": acc,
            "recall_macro": acc,
            "top1": acc,
        }
        result = {"status": "done", "job_id": job_id, "test": test, "tested_epoch": 3}
        result.update(tested_by="best val_loss (min)", timing={"total": 10.0 + i})
        (folder / "result.json").write_text(json.dumps(result))
        trials.append({"number": i, "state": "complete", "value": acc, "job": job_id})
    plan = {"name": root.name, "axes": ["train.lr"], "jobs": entries}
    (root / "plan.json").write_text(json.dumps(plan))
    summary = {
        "strategy": strategy,
        "metric": "test.accuracy",
        "direction": "maximize",
        "seed": 0,
        "trials": len(values),
        "space": {"train.lr": "loguniform"},
        "points": [{"id": "p", "study": "s", "budget": len(values), "trials": trials}],
    }
    (root / "search.json").write_text(json.dumps(summary))
    return root


def test_two_searches_side_by_side(tmp_path):
    tpe = search_run(tmp_path / "runs" / "tpe", "tpe", [0.5, 0.8, 0.7])
    evo = search_run(tmp_path / "runs" / "evo", "evolution", [0.6, 0.65, 0.9, 0.4])
    runs = [(load(tpe, curves=False), json.loads((tpe / "search.json").read_text()))]
    runs.append((load(evo, curves=False), json.loads((evo / "search.json").read_text())))
    overview = side_by_side.overview(runs, "test.accuracy")
    assert overview.rows == [
        ["tpe", "tpe (3 trials)", "3", "3", "0.8000", "0.6667", "trial=1"],
        ["evo", "evolution (4 trials)", "4", "4", "0.9000", "0.6375", "trial=2"],
    ]
    joint = side_by_side.joint(runs, "test.accuracy")
    assert [r[:4] for r in joint.rows[:3]] == [
        ["★", "evo", "trial=2", "0.9000"],
        ["", "tpe", "trial=1", "0.8000"],
        ["", "tpe", "trial=2", "0.7000"],
    ]
    assert joint.rows[0][6:] == ["3", "12.0"]  # tested epoch, total time

    result = CliRunner().invoke(
        app, ["report", "tpe", "evo", "--runs-dir", str(tmp_path / "runs"), "--together"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "runs" / "tpe-vs-evo.md").read_text()
    assert text.startswith("# tpe vs evo\n")
    assert "| evo | evolution (4 trials) | 4 | 4 | 0.9000 | 0.6375 | trial=2 |" in text
    assert "![best so far](plots/tpe-vs-evo-best-so-far.png)" in text
    assert (tmp_path / "runs" / "plots" / "tpe-vs-evo-best-so-far.png").exists()


def test_together_needs_two_runs(tmp_path):
    search_run(tmp_path / "runs" / "tpe", "tpe", [0.5])
    runs = str(tmp_path / "runs")
    one = CliRunner().invoke(app, ["report", "tpe", "--runs-dir", runs, "--together"])
    assert one.exit_code == 2 and "needs two run folders" in one.output
    missing = CliRunner().invoke(app, ["report", "tpe", "nope", "--runs-dir", runs, "--together"])
    assert missing.exit_code == 2 and "nope" in missing.output

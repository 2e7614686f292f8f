"""Reports from job folders with known numbers (no training): every cell checked."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.reports import tables
from ftmatrix.reports.collect import load
from ftmatrix.reports.report import latex, results_csv, write
from tests.trackers.runs import write_plan


def make_run(root: Path, jobs: list[dict], axes: list[str], name: str = "study") -> Path:
    """jobs: {id, settings, state, acc, f1, error, per_class, curves, seconds}."""
    root.mkdir(parents=True)
    for job in jobs:
        folder = root / job["id"]
        if job["state"] == "pending":
            continue
        folder.mkdir()
        (folder / "config.json").write_text(
            json.dumps({"train": {"lr": 0.1, "loss": {"name": "ce"}}})
        )
        result = {"status": job["state"], "job_id": job["id"], "device": "cpu"}
        if job["state"] == "failed":
            result.update(error_class=job["error"], error_message="boom")
        else:
            acc = job["acc"]
            result.update(
                test={
                    "loss": 1 - acc,
                    "accuracy": acc,
                    "f1_macro": job.get("f1", acc - 0.01),
                    "f1_weighted": acc,
                    "precision_macro": acc,
                    "recall_macro": acc,
                    "top1": acc,
                    "topk": min(1.0, acc + 0.1),
                    "k": 5,
                    "per_class_accuracy": job.get("per_class", {"cat": acc, "dog": acc}),
                },
                best_epoch=2,
                epochs_run=3,
                params={"trainable": 1000, "total": 4000, "trainable_percent": 25.0},
                timing={"total": job.get("seconds", 30.0), "per_epoch": 10.0},
            )
            lines = [
                {
                    "epoch": e,
                    "train_loss": 1.0 / e,
                    "train_accuracy": 0.3 * e,
                    "val_loss": 1.1 / e,
                    "val_accuracy": 0.25 * e,
                    "lr": 0.1,
                    "seconds": 10.0,
                    "samples_per_second": 100.0,
                }
                for e in (1, 2, 3)
            ]
            (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (folder / "result.json").write_text(json.dumps(result))
    write_plan(root, jobs, axes=axes, name=name)
    return root


@pytest.fixture
def grid_run(tmp_path) -> Path:
    jobs = [
        {"id": "a", "settings": {"lora": "off", "train.lr": "0.1"}, "state": "done", "acc": 0.80},
        {"id": "b", "settings": {"lora": "r8", "train.lr": "0.1"}, "state": "done", "acc": 0.90},
        {
            "id": "c",
            "settings": {"lora": "off", "train.lr": "0.01"},
            "state": "failed",
            "error": "nan_loss",
        },
        {"id": "d", "settings": {"lora": "r8", "train.lr": "0.01"}, "state": "done", "acc": 0.85},
        {"id": "e", "settings": {"lora": "r24", "train.lr": "0.1"}, "state": "pending"},
    ]
    return make_run(tmp_path / "runs" / "study", jobs, ["lora", "train.lr"])


def test_comparison_is_sorted_with_the_best_marked_and_failures_and_pending_kept(grid_run):
    table = tables.comparison(load(grid_run), "test.accuracy")
    assert table.headers[:4] == ["", "lora", "train.lr", "test acc"]
    rows = [(r[0], r[1], r[2], r[3], r[-1]) for r in table.rows]
    assert rows == [
        ("★", "r8", "0.1", "0.9000", "done"),
        ("", "r8", "0.01", "0.8500", "done"),
        ("", "off", "0.1", "0.8000", "done"),
        ("", "off", "0.01", "", "failed (nan_loss)"),
        ("", "r24", "0.1", "", "pending"),
    ]
    best = table.rows[0]
    assert best[4] == "0.8900"  # macro F1
    assert best[table.headers.index("trainable")] == "1,000 (25.00%)"
    assert best[table.headers.index("tested epoch")] == "2"  # (an older result: its best)
    assert best[table.headers.index("top-5 acc")] == "1.0000"  # train.topk is shown
    assert best[table.headers.index("time (s)")] == "30.0"


def test_sorting_by_a_loss_puts_the_smallest_first(grid_run):
    table = tables.comparison(load(grid_run), "test.loss")
    assert [r[1:3] for r in table.rows[:2]] == [["r8", "0.1"], ["r8", "0.01"]]


def test_seeds_are_aggregated_as_mean_plus_minus_std(tmp_path):
    jobs = [
        {
            "id": f"s{i}",
            "settings": {"train.lr": lr, "train.seed": str(seed)},
            "state": "done",
            "acc": acc,
        }
        for i, (lr, seed, acc) in enumerate(
            [
                ("0.1", 0, 0.80),
                ("0.1", 1, 0.84),
                ("0.1", 2, 0.88),
                ("0.01", 0, 0.70),
                ("0.01", 1, 0.72),
            ]
        )
    ]
    study = load(make_run(tmp_path / "r", jobs, ["train.lr", "train.seed"]))
    table = tables.comparison(study, "test.accuracy")
    assert table.headers[1:4] == ["train.lr", "n", "test acc"]
    assert table.rows[0][1:4] == ["0.1", "3", "0.8400 ± 0.0400"]
    assert table.rows[1][1:4] == ["0.01", "2", "0.7100 ± 0.0141"]


def test_effect_of_a_setting_gives_mean_best_and_n(grid_run):
    table = tables.effect(load(grid_run), "lora", "test.accuracy")
    assert table.rows == [
        ["off", "0.8000", "0.8000", "1"],
        ["r8", "0.8750", "0.9000", "2"],
        ["r24", "", "", "0"],
    ]


def test_pivot_is_a_grid_of_the_metric(grid_run):
    table = tables.pivot(load(grid_run), "lora", "train.lr", "test.accuracy")
    assert table.headers == ["lora \\ train.lr", "0.1", "0.01"]
    assert table.rows == [["off", "0.8000", "—"], ["r8", "0.9000", "0.8500"], ["r24", "—", "—"]]


def test_results_csv_has_one_row_per_job_with_settings_metrics_and_config(grid_run):
    rows = list(csv.DictReader(io.StringIO(results_csv(load(grid_run)))))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
    assert rows[1]["test.accuracy"] == "0.9" and rows[1]["setting.lora"] == "r8"
    assert rows[2]["error_class"] == "nan_loss" and rows[4]["state"] == "pending"
    assert rows[0]["config.train.lr"] == "0.1" and rows[0]["trainable_params"] == "1000"


def test_latex_escapes_special_characters(tmp_path):
    jobs = [{"id": "x", "settings": {"data.path": "a_b&c%"}, "state": "done", "acc": 0.5}]
    text = latex(
        load(make_run(tmp_path / "r", jobs, ["data.path"])),
        metric="test.accuracy",
        rows=None,
        cols=None,
    )
    assert r"a\_b\&c\%" in text and r"data.path" in text
    assert r"\begin{tabular}" in text and "$\\star$" in text


def test_markdown_report_is_complete_and_byte_identical(grid_run):
    out = write(grid_run, rows="lora", cols="train.lr")
    text = out.read_text()
    for part in (
        "# study",
        "- **Jobs:** 3 done, 1 failed, 1 pending",
        "## Comparison",
        "### lora",
        "### train.lr",
        "lora × train.lr",
        "## Per-class accuracy",
        "### lora=r8 lr=0.1 (best)",
        "top-5 accuracy: 1.0000",
        "![curves-1](plots/curves-1.png)",
    ):
        assert part in text, part
    png = (grid_run / "plots" / "curves-1.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    write(grid_run, rows="lora", cols="train.lr")
    assert out.read_text() == text
    assert (grid_run / "plots" / "curves-1.png").read_bytes() == png
    assert (grid_run / "results.csv").exists()


def test_report_command_by_name_and_errors(grid_run):
    runs = grid_run.parent
    result = CliRunner().invoke(app, ["report", "study", "--runs-dir", str(runs), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (grid_run / "report.md").exists()
    bad = CliRunner().invoke(
        app, ["report", "study", "--runs-dir", str(runs), "--metric", "acuracy"]
    )
    assert bad.exit_code == 2 and "unknown metric" in bad.output
    missing = CliRunner().invoke(app, ["report", "nothing", "--runs-dir", str(runs)])
    assert missing.exit_code == 2

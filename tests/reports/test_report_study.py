"""What the seed studies present, from job folders with known numbers: the tested epoch
and its rule, a top-k column, total time, per-class counts, a confusion matrix (table
and heatmap), a per-epoch table, and curves that stay readable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.reports import plots, tables
from ftmatrix.reports.collect import load
from ftmatrix.reports.report import write
from tests.trackers.runs import write_plan

CLASSES = ["ants", "bees"]
# 276 of 368 ants right, 300 of 332 bees
CONFUSION = [[276, 92], [32, 300]]


def epoch_line(e: int, *, val_loss: float | None = None) -> dict:
    return {
        "epoch": e,
        "train_loss": 1.0 / e,
        "train_accuracy": 0.3 * e,
        "val_loss": 1.1 / e if val_loss is None else val_loss,
        "val_accuracy": 0.25 * e,
        "val_f1": 0.24 * e,
        "val_precision": 0.23 * e,
        "val_recall": 0.22 * e,
        "lr": 0.01 / e,
        "batch_size": 32,
        "seconds": 5.0 + e,
        "samples_per_second": 100.0,
    }


def study(root: Path, jobs: list[dict], axes: list[str]) -> Path:
    """jobs: {id, settings, acc, topk?, tested_by?, tested?, seconds?, spike?}."""
    root.mkdir(parents=True)
    for job in jobs:
        folder = root / job["id"]
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        acc = job["acc"]
        test = {
            "loss": 1 - acc,
            "accuracy": acc,
            "f1_macro": acc,
            "f1_weighted": acc,
            "precision_macro": acc,
            "recall_macro": acc,
            "top1": acc,
            "per_class_accuracy": {"ants": 276 / 368, "bees": 300 / 332},
            "confusion_matrix": CONFUSION,
            "class_names": CLASSES,
            "n": 700,
        }
        if "topk" in job:
            test.update(topk=job["topk"], k=3)
        result = {
            "status": "done",
            "job_id": job["id"],
            "test": test,
            "best_epoch": 2,
            "tested_epoch": job.get("tested", 2),
            "tested_by": job.get("tested_by", "best val_loss (min)"),
            "epochs_run": 3,
            "timing": {"total": job.get("seconds", 42.0), "per_epoch": 12.0},
        }
        (folder / "result.json").write_text(json.dumps(result))
        lines = [epoch_line(e) for e in (1, 2, 3)]
        if job.get("spike"):
            lines[1] = epoch_line(2, val_loss=3e6)  # a diverged epoch
        (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_plan(root, jobs, axes=axes, name=root.name)
    return root


@pytest.fixture
def transfer(tmp_path) -> Path:
    """Two pretrained/scratch jobs tested at their best epoch, with top-3 accuracy."""
    jobs = [
        {"id": "p", "settings": {"model.pretrained": "true"}, "acc": 0.82, "topk": 0.97},
        {"id": "s", "settings": {"model.pretrained": "false"}, "acc": 0.61, "topk": 0.9},
    ]
    return study(tmp_path / "transfer", jobs, ["model.pretrained"])


def test_top_k_tested_epoch_and_total_time_are_columns(transfer):
    table = tables.comparison(load(transfer), "test.topk")
    assert table.headers[2:8] == [
        "test acc",
        "macro F1",
        "precision",
        "recall",
        "top-3 acc",
        "tested epoch",
    ]
    assert [r[1] for r in table.rows] == ["true", "false"]  # sorted by the shown top-3
    first = dict(zip(table.headers, table.rows[0], strict=True))
    assert (first["top-3 acc"], first["tested epoch"], first["time (s)"]) == (
        "0.9700",
        "2",
        "42.0",
    )


def test_no_top_k_column_without_top_k(tmp_path):
    jobs = [{"id": "a", "settings": {"train.lr": "0.1"}, "acc": 0.5}]
    table = tables.comparison(load(study(tmp_path / "r", jobs, ["train.lr"])), "test.accuracy")
    assert not any(h.startswith("top-") for h in table.headers)


def test_per_class_accuracy_has_counts_and_a_confusion_matrix(transfer):
    text = write(transfer).read_text()
    assert "| ants | 276/368 | 0.7500 |" in text
    assert "| bees | 300/332 | 0.9036 |" in text
    assert "top-3 accuracy: 0.9700" in text
    assert "| true \\ predicted | ants | bees |" in text
    assert "| ants | 276 | 92 |" in text and "| bees | 32 | 300 |" in text
    assert "![confusion-p](plots/confusion-p.png)" in text  # the best job's heatmap
    assert (transfer / "plots" / "confusion-p.png").read_bytes()[:4] == b"\x89PNG"
    assert not (transfer / "plots" / "confusion-s.png").exists()
    write(transfer, per_class=True)
    assert (transfer / "plots" / "confusion-s.png").exists()


def test_the_tested_epoch_and_its_rule_are_stated(tmp_path):
    jobs = [
        {"id": "a", "settings": {"train.epochs": "20"}, "acc": 0.7, "tested_by": "last"},
        {"id": "b", "settings": {"train.epochs": "40"}, "acc": 0.8, "tested_by": "last"},
        {"id": "c", "settings": {"train.epochs": "80"}, "acc": 0.6, "tested": 7},
    ]
    text = write(study(tmp_path / "r", jobs, ["train.epochs"]), plots=False).read_text()
    assert "Tested epoch: best val_loss (min): 1 job; last: 2 jobs." in text


def test_the_per_epoch_table_of_the_best_job_or_of_every_job(transfer):
    text = write(transfer, plots=False).read_text()
    section = text.split("## Per-epoch metrics")[1].split("## Per-class")[0]
    assert "### pretrained=true (best)" in section and "pretrained=false" not in section
    assert (
        "| epoch | tested | train loss | train acc | val loss | val acc | val F1 | "
        "val precision | val recall | lr | batch | s |" in section
    )
    row = "| 2 | ★ | 0.5000 | 0.6000 | 0.5500 | 0.5000 | 0.4800 | 0.4600 | 0.4400 | 0.005 |"
    assert row + " 32 | 7.0 |" in section
    every = write(transfer, plots=False, epochs="all").read_text()
    assert every.count("| epoch | tested |") == 2
    none = write(transfer, plots=False, epochs="none").read_text()
    assert "## Per-epoch metrics" not in none
    with pytest.raises(ValueError, match="--epochs takes best, all, none"):
        write(transfer, epochs="every")


def test_report_command_takes_epochs(transfer):
    runs = transfer.parent
    args = ["report", "transfer", "--runs-dir", str(runs), "--no-plots"]
    ok = CliRunner().invoke(app, [*args, "--epochs", "all"])
    assert ok.exit_code == 0, ok.output
    assert (transfer / "report.md").read_text().count("| epoch | tested |") == 2
    bad = CliRunner().invoke(app, [*args, "--epochs", "every"])
    assert bad.exit_code == 2 and "--epochs takes best, all, none" in bad.output


def drawn(monkeypatch) -> list:
    """The figures plots.py saves (and still writes)."""
    figures = []
    real = plots.save

    def save(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "save", save)
    return figures


def test_one_diverged_job_puts_the_loss_axis_on_a_log_scale(tmp_path, monkeypatch):
    jobs = [
        {"id": f"j{i}", "settings": {"train.lr": lr}, "acc": 0.5, "spike": lr == "10"}
        for i, lr in enumerate(["0.1", "0.01", "10"])
    ]
    root = study(tmp_path / "r", jobs, ["train.lr"])
    figures = drawn(monkeypatch)
    plots.curves(load(root, curves=False), tmp_path)
    loss_ax = figures[0].axes[0]
    assert loss_ax.get_yscale() == "log" and "(log scale)" in loss_ax.get_title()
    calm = study(tmp_path / "calm", jobs[:2], ["train.lr"])
    figures.clear()
    plots.curves(load(calm, curves=False), tmp_path)
    assert figures[0].axes[0].get_yscale() == "linear"


def test_curves_are_grouped_by_the_setting_that_varies(tmp_path, monkeypatch):
    losses = ["cross_entropy", "focal", "mse"]
    jobs = [
        {
            "id": f"{lr}-{loss}",
            "settings": {"train.lr": lr, "train.loss.name": loss},
            "acc": 0.9 if lr == "0.01" else 0.5,
        }
        for lr in ("0.1", "0.01")
        for loss in losses
    ]
    root = study(tmp_path / "r", jobs, ["train.lr", "train.loss.name"])
    figures = drawn(monkeypatch)
    written = plots.curves(load(root, curves=False), tmp_path)
    assert [p.name for p in written] == ["curves-1.png", "curves-2.png"]
    # one figure per learning rate (the best group first), one line per loss in each
    assert [f._suptitle.get_text() for f in figures] == ["train.lr=0.01", "train.lr=0.1"]
    for fig in figures:
        labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        assert labels == [f"train.loss.name={loss}" for loss in losses]


def test_metric_against_the_learning_rate_is_on_a_log_axis(tmp_path, monkeypatch):
    jobs = [
        {"id": f"j{i}", "settings": {"train.lr": lr}, "acc": acc}
        for i, (lr, acc) in enumerate([("0.01", 0.7), ("0.003", 0.8)])
    ]
    root = study(tmp_path / "r", jobs, ["train.lr"])
    figures = drawn(monkeypatch)
    plots.metric_vs_axes(load(root, curves=False), "test.accuracy", tmp_path)
    assert figures[0].axes[0].get_xscale() == "log"  # though 0.01 / 0.003 < 100

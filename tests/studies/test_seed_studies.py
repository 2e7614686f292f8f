"""The seed studies, CPU-sized: each shipped matrix with its data and model swapped for
ones that train in seconds on a CPU (sklearn's digits or texts written here, tiny models
built from their configs), everything else as shipped. `ftmatrix run` runs it as a user
would, `ftmatrix report` writes report.md, and the report must hold what the homework
presented."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.result import read_metrics, read_result
from tests.tiny import MICRO_VIT, TINY_BERT, TINY_VIT, write_texts

pytestmark = pytest.mark.slow
MATRICES = Path(__file__).parents[2] / "matrices"
DIGITS = {"builtin": "digits", "limit": 300}


def cpu_copy(tmp_path: Path, name: str, *, base: dict, drop: tuple[str, ...] = (), **keys) -> Path:
    """matrices/<name>.yaml with the `base` sections given replacing its own (train:
    merged into its train), the top-level keys in `drop` removed and `keys` replaced."""
    matrix = yaml.safe_load((MATRICES / f"{name}.yaml").read_text())
    for section, value in base.items():
        if section == "train":
            value = {**matrix["base"].get("train", {}), **value}
        matrix["base"][section] = value
    for key in drop:
        matrix.pop(key, None)
    matrix.update(keys, runs_dir="runs")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    return path


def run_and_report(path: Path, *report_args: str) -> tuple[Path, str]:
    """`ftmatrix run` in a subprocess, then `ftmatrix report`: (run folder, report.md)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ftmatrix.cli", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reported = CliRunner().invoke(app, ["report", str(path), *report_args])
    assert reported.exit_code == 0, reported.output
    root = path.parent / "runs" / yaml.safe_load(path.read_text())["name"]
    return root, (root / "report.md").read_text()


def job_dirs(root: Path) -> list[Path]:
    return [root / j["id"] for j in json.loads((root / "plan.json").read_text())["jobs"]]


def section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def test_bert_per_epoch_table_with_the_five_metrics_and_time(tmp_path):
    path = cpu_copy(
        tmp_path,
        "bert-text",
        base={
            "data": {"path": str(write_texts(tmp_path))},
            "model": {**TINY_BERT, "head_dropout": 0.3},
            "train": {"batch_size": 16, "lr": 0.003},
        },
    )
    root, text = run_and_report(path, "--epochs", "all")
    table = section(text, "Per-epoch metrics")
    head = "| epoch | tested | train loss | train acc | val loss | val acc | val F1 |"
    assert head + " val precision | val recall | lr | batch | s |" in table
    assert table.count("| epoch | tested |") == 4  # every job, with --epochs all
    rows = re.findall(r"^\| (\d) \| (★?) \|(( [0-9.e-]+ \|){10})$", table, flags=re.M)
    assert len(rows) == 1 + 3 + 1 + 3  # epochs of the four jobs: 1, 3, 1, 3
    # warmup over a fifth of the first epoch, then linear decay: the warmup job's lr
    # falls epoch by epoch; the constant job's stays at 0.003
    labels = {j["label"]: j["id"] for j in json.loads((root / "plan.json").read_text())["jobs"]}
    warm = [m.lr for m in read_metrics(root / labels["scheduler=warmup epochs=3"])]
    flat = [m.lr for m in read_metrics(root / labels["scheduler=none epochs=3"])]
    assert warm[0] > warm[1] > warm[2] >= 0 and flat == [0.003] * 3
    assert "time (s)" in section(text, "Comparison")


def test_transfer_top3_and_per_class_counts(tmp_path):
    path = cpu_copy(
        tmp_path,
        "transfer-distill",
        base={"data": DIGITS, "model": TINY_VIT, "train": {"epochs": 4, "batch_size": 64}},
        drop=("include",),
        grid={"train.scheduler.step_size": [1, 2]},  # StepLR; early stopping as shipped
    )
    root, text = run_and_report(path)
    comparison = section(text, "Comparison")
    assert "| top-3 acc |" in comparison
    assert "Tested epoch: best val_loss (min): 2 jobs." in comparison
    classes = section(text, "Per-class accuracy")
    assert "top-3 accuracy: " in classes
    counts = re.findall(r"^\| (\d) \| (\d+)/(\d+) \| ([0-9.]+) \|$", classes, flags=re.M)
    assert [c[0] for c in counts] == [str(d) for d in range(10)]
    assert sum(int(c[2]) for c in counts) == 60  # 20% of 300 digits
    for _, right, total, acc in counts:
        assert float(acc) == pytest.approx(int(right) / int(total), abs=5e-5)
    assert "| true \\ predicted | 0 | 1 |" in classes
    best = re.search(r"!\[confusion-(\w+)\]\(plots/confusion-\w+\.png\)", text).group(1)
    assert (root / "plots" / f"confusion-{best}.png").exists()
    for job in job_dirs(root):
        result = read_result(job)
        assert result.test.k == 3 and result.tested_epoch == result.best_epoch


def test_optimizers_epoch_wise_schedules_in_metrics_jsonl(tmp_path):
    path = cpu_copy(
        tmp_path,
        "optimizers",
        base={"data": DIGITS, "model": MICRO_VIT},
        grid={"data.augment.enabled": [False]},
    )
    root, text = run_and_report(path)
    expected = {  # epoch -> (lr, batch size, weight decay), as the matrix schedules them
        "sgd": [0.01] * 3 + [0.005] * 4 + [0.001] * 3,
        "adam": [1e-3] * 3 + [5e-4] * 4 + [1e-4] * 3,
    }
    for job in job_dirs(root):
        config = json.loads((job / "config.json").read_text())
        rows = read_metrics(job)
        assert [m.lr for m in rows] == pytest.approx(expected[config["train"]["optimizer"]["name"]])
        assert [m.batch_size for m in rows] == [32] * 5 + [64] * 5
        assert [m.weight_decay for m in rows] == [0.0] * 5 + [1e-4] * 5
    assert "| lr | batch |" in section(text, "Per-epoch metrics")


def test_loss_functions_test_their_last_epoch(tmp_path):
    path = cpu_copy(
        tmp_path,
        "loss-functions",
        base={"data": DIGITS, "model": MICRO_VIT},
        grid={
            "train.epochs": [2, 4],
            "train.batch_size": [64],
            "train.lr": [0.01],
            "train.loss.name": ["cross_entropy", "focal", "l1", "mse", "smooth_l1"],
        },
    )
    root, text = run_and_report(path)
    assert "Tested epoch: last: 10 jobs." in section(text, "Comparison")
    for job in job_dirs(root):
        result = read_result(job)
        epochs = json.loads((job / "config.json").read_text())["train"]["epochs"]
        assert (result.tested_epoch, result.tested_by, result.epochs_run) == (
            epochs,
            "last",
            epochs,
        )
        assert not (job / "checkpoint").exists()  # done: the resume state is dropped


def two_classes(folder: Path, per_class: int = 12) -> Path:
    """An image folder of two classes (ants, bees) of small random pictures."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("ants", "bees"):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def test_hw4_vit_base_lora_parameter_counts_in_the_report(tmp_path):
    """ViT-base itself (from its config, no weights) at 128 px with LoRA r=8 and r=24 on
    query, key and value, on two classes as in the homework: one short epoch each."""
    path = cpu_copy(
        tmp_path,
        "hw4",
        base={
            "data": {"path": str(two_classes(tmp_path / "images"))},
            "model": {"pretrained": False, "image_size": 128},
            "train": {"epochs": 1, "batch_size": 32},
        },
        grid={
            "model.name": ["google/vit-base-patch16-224"],
            "lora": {
                "r8": {"enabled": True, "r": 8, "alpha": 16},
                "r24": {"enabled": True, "r": 24, "alpha": 48},
            },
        },
    )
    _, text = run_and_report(path, "--no-plots")
    comparison = section(text, "Comparison")
    assert "| 443,906 (0.51%) |" in comparison
    assert "| 1,328,642 (1.52%) |" in comparison

"""Run folders written directly (no training): plan.json, and per job config.json (a real
JobConfig dump), metrics.jsonl (EpochMetrics), result.json (Result) and weights/.

Shared by the tracker tests, the HTML report test and benchmarks/html_report.py."""

from __future__ import annotations

import json
from pathlib import Path

from ftmatrix.config import JobConfig
from ftmatrix.result import (
    CONFIG,
    METRICS,
    PLAN,
    RESULT,
    WEIGHTS,
    EpochMetrics,
    Params,
    PlanEntry,
    PlanFile,
    Result,
    TestMetrics,
)

CLASSES = ["cat", "dog", "bird"]


def job_config(settings: dict[str, str]) -> dict:
    """A valid JobConfig with the settings that are config keys applied."""
    raw: dict = {"data": {"path": "digits"}, "model": {"name": "resnet18"}, "train": {}}
    for key, value in settings.items():
        section, _, name = key.partition(".")
        if section in ("train", "model") and name in ("lr", "batch_size", "epochs", "seed"):
            raw[section][name] = float(value) if name == "lr" else int(value)
    return JobConfig.model_validate(raw).model_dump(mode="json")


def curves(acc: float, epochs: int) -> list[EpochMetrics]:
    """Epochs whose validation accuracy climbs to `acc`."""
    return [
        EpochMetrics(
            epoch=e,
            train_loss=round(1.5 / e, 6),
            train_accuracy=round(min(1.0, acc * e / epochs + 0.05), 6),
            val_loss=round(1.6 / e, 6),
            val_accuracy=round(acc * e / epochs, 6),
            val_f1=round(acc * e / epochs - 0.01, 6),
            lr=0.1 / e,
            seconds=10.0 + e,
            samples_per_second=100.0 * e,
        )
        for e in range(1, epochs + 1)
    ]


def confusion(acc: float, n: int = 30, classes: list[str] = CLASSES) -> list[list[int]]:
    per = n // len(classes)
    right = round(per * acc)
    rows = []
    for i in range(len(classes)):
        row = [0] * len(classes)
        row[i] = right
        row[(i + 1) % len(classes)] = per - right
        rows.append(row)
    return rows


def result(job_id: str, state: str, acc: float, epochs: int, classes: list[str]) -> Result:
    if state == "failed":
        return Result(
            status="failed",
            job_id=job_id,
            error_class="nan_loss",
            error_message="loss is nan",
            epochs_run=epochs,
            started_at="2026-01-02T03:04:05+00:00",
            finished_at="2026-01-02T03:05:05+00:00",
        )
    return Result(
        status=state,  # type: ignore[arg-type]
        job_id=job_id,
        test=TestMetrics(
            loss=round(1 - acc, 6),
            accuracy=acc,
            f1_macro=round(acc - 0.01, 6),
            f1_weighted=acc,
            precision_macro=acc,
            recall_macro=acc,
            top1=acc,
            topk=min(1.0, acc + 0.1),
            k=2,
            per_class_accuracy={c: round(acc - 0.05 * i, 6) for i, c in enumerate(classes)},
            confusion_matrix=confusion(acc, 10 * len(classes), classes),
            class_names=classes,
            n=10 * len(classes),
        ),
        best_epoch=epochs,
        epochs_run=epochs,
        params=Params(trainable=1000, total=4000, trainable_percent=25.0),
        timing={"total": 30.0 * epochs, "per_epoch": 30.0},
        device="cpu",
        started_at="2026-01-02T03:04:05+00:00",
        finished_at="2026-01-02T03:09:05+00:00",
    )


def write_plan(root: Path, jobs: list[dict], *, axes: list[str], name: str = "study") -> None:
    """plan.json listing `jobs` ({id, settings}), each labelled as the planner labels it
    (`lr=0.1 lora=r8`: the last part of each varying key)."""
    entries = []
    for job in jobs:
        label = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in job["settings"].items())
        entries.append(PlanEntry(id=job["id"], label=label, settings=job["settings"]))
    plan = PlanFile(name=name, description="a test study", axes=axes, jobs=entries)
    (root / PLAN).write_text(plan.model_dump_json())


def write_run(
    root: Path,
    jobs: list[dict],
    *,
    axes: list[str],
    name: str = "study",
    classes: list[str] = CLASSES,
) -> Path:
    """jobs: {id, settings, state (done|failed|pruned|pending), acc, epochs=3}."""
    root.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        if job["state"] == "pending":
            continue
        folder = root / job["id"]
        folder.mkdir(exist_ok=True)
        (folder / CONFIG).write_text(json.dumps(job_config(job["settings"])))
        epochs = job.get("epochs", 3)
        acc = job.get("acc", 0.0)
        lines = curves(acc or 0.5, epochs)
        (folder / METRICS).write_text("".join(m.model_dump_json() + "\n" for m in lines))
        done = result(job["id"], job["state"], acc, epochs, classes)
        (folder / RESULT).write_text(done.model_dump_json())
        if job["state"] == "done":
            (folder / WEIGHTS).mkdir(exist_ok=True)
            (folder / WEIGHTS / "model.safetensors").write_bytes(b"weights")
    write_plan(root, jobs, axes=axes, name=name)
    return root


def grid(root: Path, name: str = "study") -> Path:
    """Four jobs: three done, one failed (lr=0.01 lora=off), plus one pending."""
    jobs = [
        {"id": "aaaaaaaaaaaa", "settings": {"lora": "off", "train.lr": "0.1"}, "acc": 0.8},
        {"id": "bbbbbbbbbbbb", "settings": {"lora": "r8", "train.lr": "0.1"}, "acc": 0.9},
        {"id": "cccccccccccc", "settings": {"lora": "off", "train.lr": "0.01"}, "acc": 0.0},
        {"id": "dddddddddddd", "settings": {"lora": "r8", "train.lr": "0.01"}, "acc": 0.85},
        {"id": "eeeeeeeeeeee", "settings": {"lora": "r24", "train.lr": "0.1"}, "acc": 0.0},
    ]
    states = ["done", "done", "failed", "done", "pending"]
    for job, state in zip(jobs, states, strict=True):
        job["state"] = state
    return write_run(root / "runs" / name, jobs, axes=["lora", "train.lr"], name=name)

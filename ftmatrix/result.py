"""The files a job writes: the contract between a trainer and everything else.

A job folder `runs/<matrix>/<job-id>/` holds:

- `config.json`     the JobConfig the trainer reads (written by the runner).
- `metrics.jsonl`   one `EpochMetrics` line per finished epoch.
- `progress.jsonl`  the live channel: one JSON event per line, appended and flushed;
                    the runner follows this file to draw progress bars. Every event
                    has "event" and "time" (Unix seconds). Each start of the process:
                      {"event": "start", "epochs": E, "steps_per_epoch": S,
                       "start_epoch": k}   (k > 1 when resuming)
                    every `train.log_every` batches and at an epoch's last batch:
                      {"event": "step", "epoch": e, "step": s, "steps": S,
                       "loss": running mean of the epoch so far, "samples_per_second": y}
                    (steps count batches, micro-batches under gradient accumulation)
                    after each epoch: {"event": "epoch", ...the EpochMetrics fields}
                    last: {"event": "end", "status": "done"|"failed"|"interrupted"}
                    (+ "error_class" when failed). Human-readable lines go to stdout,
                    which the runner sends to `log.txt`.
- `checkpoint/`     state after the last finished epoch, for resume.
- `weights/`        best (or last) weights in safetensors; LoRA: adapter + head.
- `predictions.npz` test labels `y_true` and class probabilities `probs` (N, C).
- `result.json`     a `Result`, written last and atomically. Without it the job is
                    not finished.

Standard library and pydantic only: reports and the runner read these without torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorClass = Literal[
    "oom",  # out of (GPU or host) memory
    "nan_loss",  # the loss became NaN or infinite
    "data_error",  # data missing, unreadable or malformed
    "config_error",  # the config cannot be realised (e.g. no LoRA target matches)
    "crash",  # any other exception, or the process died with no result
    "timeout",  # the runner (or Slurm) stopped it at its time limit
    "cancelled",  # cancelled on the cluster (scancel, ftmatrix cancel)
    "preempted",  # preempted on the cluster and not requeued
    "node_failure",  # the cluster node it ran on failed
]

# Every file and folder a run leaves behind, named once. In a job folder:
RESULT = "result.json"  # written last, atomically: the job is finished
CONFIG = "config.json"  # the resolved JobConfig, written before the job starts
METRICS = "metrics.jsonl"  # one line per epoch
PROGRESS = "progress.jsonl"  # events while the job runs (epoch, batch, eta)
LOG = "log.txt"  # the job process's stdout and stderr
STARTS = "starts.log"  # one line per start of the job process (resumes included)
PREDICTIONS = "predictions.npz"  # test-set labels and predictions
CHECKPOINT = "checkpoint"  # folder: what a resume needs
WEIGHTS = "weights"  # folder: the best weights, exported
LOCK = ".lock"  # held (flock) by the process that runs the job
SLURM_RECORD = "slurm.json"  # the Slurm job a job folder was submitted as
# In a matrix's run folder (beside the job folders):
SEARCH_DB = "search.db"  # optuna's storage of a tuned search
SEARCH_SUMMARY = "search.json"  # what status and reports read of a search


class _Record(BaseModel):
    # Readers ignore fields they do not know, so a newer trainer never breaks a report.
    model_config = ConfigDict(extra="ignore")


class EpochMetrics(_Record):
    """One line of metrics.jsonl."""

    epoch: int = Field(..., description="1-based epoch number.")
    train_loss: float
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_f1: float | None = Field(None, description="Macro F1 on the validation split.")
    lr: float = Field(..., description="Learning rate at the end of the epoch.")
    seconds: float = Field(..., description="Wall time of the epoch (train + validation).")
    samples_per_second: float = Field(..., description="Training throughput.")


class TestMetrics(_Record):
    """Test-split metrics, computed with scikit-learn from the saved predictions."""

    loss: float
    accuracy: float
    f1_macro: float
    f1_weighted: float
    precision_macro: float
    recall_macro: float
    top1: float
    topk: float | None = None
    k: int | None = None
    per_class_accuracy: dict[str, float] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    class_names: list[str] = Field(default_factory=list)
    n: int = Field(0, description="Number of test examples.")


class Params(_Record):
    trainable: int
    total: int
    trainable_percent: float


class Result(_Record):
    """result.json."""

    status: Literal["done", "failed", "pruned"]
    job_id: str = ""
    error_class: ErrorClass | None = None
    error_message: str | None = None
    log_tail: str | None = Field(None, description="Last lines of log.txt, for failures.")
    test: TestMetrics | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    params: Params | None = None
    timing: dict[str, float] = Field(
        default_factory=dict,
        description="Seconds per phase: setup, train, eval, total; per_epoch (mean).",
    )
    device: str | None = None
    precision: Literal["fp32", "bf16", "fp16"] | None = Field(
        None, description="What training computed in: fp32, or the bf16/fp16 autocast dtype."
    )
    versions: dict[str, str] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    resumed_from_epoch: int | None = Field(
        None, description="Epoch of the checkpoint this run resumed from, if any."
    )


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` so that readers see the old file or the whole new one, never half.

    temp file in the same folder + fsync + rename (+ fsync of the folder, so the rename
    itself survives a power cut).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_result(job_dir: str | os.PathLike) -> Result | None:
    """The job's Result, or None when it has not finished (or the file is unreadable)."""
    try:
        text = (Path(job_dir) / RESULT).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Result.model_validate_json(text)
    except ValueError:
        return None


def read_metrics(job_dir: str | os.PathLike) -> list[EpochMetrics]:
    """Epoch lines of metrics.jsonl; a torn last line (a killed writer) is skipped."""
    path = Path(job_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(EpochMetrics.model_validate_json(line))
        except ValueError:
            continue
    return rows


PLAN = "plan.json"
MATRIX_SNAPSHOT = "matrix.yaml"


class PlanEntry(_Record):
    """One job of a plan, as the runner wrote it into runs/<matrix>/plan.json."""

    id: str
    label: str = Field(..., description="Human label from the varying axes: 'lr=1e-4 lora=r8'.")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Varying dotted key -> display value (axis label or scalar), in axis order.",
    )


class PlanFile(_Record):
    """runs/<matrix>/plan.json: what the matrix asked for, so that reports can list
    pending jobs and know which settings vary. Rewritten (atomically) on every run."""

    name: str
    description: str = ""
    matrix_path: str = ""
    axes: list[str] = Field(default_factory=list, description="Varying dotted keys, in order.")
    jobs: list[PlanEntry] = Field(default_factory=list)

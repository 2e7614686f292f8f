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

Beside the job folders, the matrix's run folder holds `plan.json` (a `PlanFile`),
`matrix.yaml` (the matrix as it was run) and, for a tuned search, `search.db` (optuna)
and `search.json` (a `SearchSummary`).

Writing: every file a job leaves behind goes through `write_atomic` (a folder through
`replace_folder`): readers see the old content or the whole new one, never half.

Reading: one reader per file, here. Each returns None (or an empty list) when the file
is absent and raises `DamagedFile` when it is there but unreadable: truncated, not
UTF-8, not the JSON it must be, a value of the wrong type. The exception names the
file and the problem, so a caller can report it and go on with the healthy jobs:

    try:
        result = read_result(job_dir)
    except DamagedFile as err:
        problems.append(str(err))  # "damaged: runs/x/ab12/result.json: ..."

Standard library and pydantic only: reports and the runner read these without torch.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_M = TypeVar("_M", bound=BaseModel)

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
CHECKPOINT_STATE = "state.pt"  # in checkpoint/: model, optimizer, RNG... after an epoch
WEIGHTS = "weights"  # folder: the best weights, exported
WEIGHTS_MODEL = "model.safetensors"  # in weights/: the whole model
WEIGHTS_ADAPTER = "adapter_model.safetensors"  # in weights/: a LoRA adapter (peft's name)
LOCK = ".lock"  # held (flock) by the process that runs the job
SLURM_RECORD = "slurm.json"  # the Slurm job a job folder was submitted as
# In a matrix's run folder (beside the job folders):
SEARCH_DB = "search.db"  # optuna's storage of a tuned search
SEARCH_SUMMARY = "search.json"  # what status and reports read of a search
PLAN = "plan.json"  # the jobs the matrix asked for (a PlanFile)
MATRIX_SNAPSHOT = "matrix.yaml"  # the matrix file as it was last run
REPORT_MD = "report.md"  # `ftmatrix report` (report.tex with --format latex)
REPORT_TEX = "report.tex"
RESULTS_CSV = "results.csv"  # one row per job, written with every report
PLOTS = "plots"  # folder: the report's figures


class _Record(BaseModel):
    # Readers ignore fields they do not know, so a newer trainer never breaks a report.
    model_config = ConfigDict(extra="ignore")


class EpochMetrics(_Record):
    """One line of metrics.jsonl. A script or function job (custom.py) may leave out the
    train and throughput fields and add metrics of its own, which are kept."""

    model_config = ConfigDict(extra="allow")

    epoch: int = Field(..., description="1-based epoch number.")
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_f1: float | None = Field(None, description="Macro F1 on the validation split.")
    val_precision: float | None = Field(None, description="Macro precision (validation).")
    val_recall: float | None = Field(None, description="Macro recall (validation).")
    lr: float = Field(..., description="Learning rate of the epoch's last step.")
    batch_size: int | None = Field(None, description="Batch size of the epoch.")
    weight_decay: float | None = Field(None, description="Weight decay of the epoch.")
    seconds: float = Field(..., description="Wall time of the epoch (train + validation).")
    samples_per_second: float | None = Field(None, description="Training throughput.")
    val_perplexity: float | None = Field(
        None, description="exp(val_loss) of a causal-lm job (response tokens only)."
    )
    tokens_per_second: float | None = Field(
        None, description="Training tokens per second (causal-lm; padding not counted)."
    )


class TestMetrics(_Record):
    """Test-split metrics, computed with scikit-learn from the saved predictions; a
    script or function job gives what it reported (other names are kept as extras)."""

    model_config = ConfigDict(extra="allow")

    loss: float | None = None
    accuracy: float | None = None
    f1_macro: float | None = None
    f1_weighted: float | None = None
    precision_macro: float | None = None
    recall_macro: float | None = None
    top1: float | None = None
    topk: float | None = None
    k: int | None = None
    per_class_accuracy: dict[str, float] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    class_names: list[str] = Field(default_factory=list)
    n: int = Field(0, description="Number of test examples.")
    exact_match: float | None = Field(
        None,
        description="causal-lm: share of test prompts whose greedy generation's extracted "
        "answer equals the reference's (also given as `accuracy`).",
    )
    perplexity: float | None = Field(None, description="causal-lm: exp(test loss).")


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
    best_epoch: int | None = Field(
        None, description="The epoch the `best` rule picked; None when the rule is `last`."
    )
    tested_epoch: int | None = Field(None, description="The epoch whose weights were tested.")
    tested_by: str | None = Field(
        None, description="Why that epoch: 'last', or 'best val_loss (min)', and so on."
    )
    unranked_epochs: list[int] = Field(
        default_factory=list,
        description="Epochs whose ranking metric was NaN or infinite: never the best.",
    )
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
    adapter_bytes: int | None = Field(
        None, description="Bytes on disk of the saved PEFT adapter (weights/adapter_*)."
    )
    peak_memory_bytes: int | None = Field(
        None,
        description="Peak memory: on CUDA torch's max allocated bytes; else the job "
        "process's own peak resident set size (Linux VmHWM: not what the process that "
        "started it held).",
    )
    tokens_per_second: float | None = Field(
        None, description="causal-lm: training tokens per second over all epochs run."
    )


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


class _Open(BaseModel):
    # search.json is the runner's summary: fields added later are kept, not dropped
    model_config = ConfigDict(extra="allow")


class SearchTrial(_Open):
    """One optuna trial of a grid point, with the job that trained it."""

    number: int
    state: str = Field(..., description="complete, pruned, fail, running, waiting.")
    value: float | None = Field(None, description="The searched metric, when it has one.")
    job: str | None = Field(None, description="The job id; None when the draw was invalid.")
    label: str = ""
    settings: dict[str, Any] = Field(default_factory=dict, description="Drawn path -> value.")
    epochs: int = Field(0, description="Epochs reported to the pruner.")
    message: str | None = Field(None, description="Why it failed or was invalid.")
    retried: bool = Field(False, description="Drawn again by --retry-failed.")


class SearchPoint(_Open):
    """One grid point's study."""

    id: str
    label: str = ""
    study: str = Field(..., description="The optuna study's name in search.db.")
    budget: int = Field(..., description="Trials this point may run.")
    best: int | None = Field(None, description="Number of the best complete trial.")
    trials: list[SearchTrial] = Field(default_factory=list)


class SearchSummary(_Open):
    """runs/<matrix>/search.json: every study of a tuned search, for status and reports
    (which then need no optuna). Rewritten (atomically) as trials end."""

    strategy: str
    metric: str
    direction: Literal["maximize", "minimize"]
    seed: int
    prune: str | None = None
    trials: int = Field(..., description="The budget per grid point, as the matrix set it.")
    space: dict[str, str] = Field(..., description="Searched path -> kind (uniform, choice...).")
    points: list[SearchPoint] = Field(default_factory=list)


# ------------------------------------------------------------------- writing


def write_atomic(path: str | os.PathLike, content: str | bytes | Callable[[str], object]) -> None:
    """Write a file so that readers see the old one or the whole new one, never half.

    `content`: text (UTF-8), bytes, or a function that writes the file at the path it
    is given (`torch.save`, safetensors' `save_model`...). It writes a temp file in the
    same folder, which is fsynced and renamed over `path`; then the folder is fsynced,
    so that the rename itself survives a power cut. A kill leaves the old file and at
    most a `.<name>.*.tmp` beside it, which no reader opens.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if callable(content):
            os.close(fd)
            content(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else content
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_folder(folder: str | os.PathLike, fill: Callable[[Path], object]) -> None:
    """Make `folder` whole or not at all (weights/, written by peft's save_pretrained).

    `fill` writes into a new temp folder beside it; every file there is fsynced, the
    old `folder` (if any) is moved aside, the new one renamed into place, the parent
    fsynced, and the old one removed. A kill leaves the old folder, or none, plus temp
    folders (`.<name>.*.tmp`) that the next call removes: never a half-written one.
    """
    folder = Path(folder)
    parent = folder.parent
    for stale in parent.glob(f".{folder.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{folder.name}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()  # (not mkdtemp: the folder keeps the umask's permissions)
    aside = None
    try:
        fill(tmp)
        for path in sorted(tmp.rglob("*"), reverse=True):  # files before their folders
            if path.is_dir():
                fsync_folder(path)
            else:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_folder(tmp)
        if folder.exists():
            aside = parent / f".{folder.name}.{secrets.token_hex(4)}.old.tmp"
            os.rename(folder, aside)
        os.rename(tmp, folder)
        fsync_folder(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make the folder's entries (a rename into it, a new file) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------- reading


class DamagedFile(Exception):
    """A run-folder file that is there but cannot be read as what it must hold:
    truncated, not UTF-8, not the JSON it must be, a value of the wrong type.
    `str(err)` is "damaged: <path>: <problem>"."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(f"damaged: {path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_bytes(path: str | os.PathLike) -> bytes | None:
    """A run-folder file's bytes; None when it is absent, DamagedFile when unreadable."""
    try:
        with open(path, "rb") as f:  # (not pathlib: status and report read thousands)
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:  # a directory, no permission, a NUL in the name
        problem = getattr(err, "strerror", None) or err
        raise DamagedFile(path, f"cannot read it ({problem})") from None


def read_text(path: str | os.PathLike) -> str | None:
    """A run-folder file's text; None when it is absent. DamagedFile when it cannot be
    read or is not UTF-8."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DamagedFile(path, f"not UTF-8 (byte {err.start})") from None


def read_json_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """A JSON file that must hold an object (config.json, ...); None when absent."""
    text = read_text(path)
    return None if text is None else _json_object(path, text)


def _json_object(path: str | os.PathLike, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DamagedFile(path, f"not valid JSON ({err})") from None
    except RecursionError:  # brackets nested thousands deep
        raise DamagedFile(path, "not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise DamagedFile(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def _record(model: type[_M], path: str | os.PathLike) -> _M | None:
    """The file as a `model`; None when absent. Whole files take pydantic's JSON parser
    in one step; only a file it refuses is read again, slowly, to say what is wrong."""
    data = read_bytes(path)
    if data is None:
        return None
    try:
        return model.model_validate_json(data)
    except ValueError:  # (ValidationError among them)
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DamagedFile(path, f"not UTF-8 (byte {err.start})") from None
    return _validated(model, path, data=_json_object(path, text))


def _validated(model: type[_M], path: str | os.PathLike, *, data: Any) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise DamagedFile(path, f"{where}: {first['msg']}{more}") from None


def read_result(job_dir: str | os.PathLike) -> Result | None:
    """The job's Result; None when it has not finished (no result.json)."""
    return _record(Result, os.path.join(job_dir, RESULT))


def read_config(job_dir: str | os.PathLike) -> dict[str, Any] | None:
    """config.json as plain data (the trainer validates it as a JobConfig itself)."""
    return read_json_object(os.path.join(job_dir, CONFIG))


def read_plan(root: str | os.PathLike) -> PlanFile | None:
    """runs/<matrix>/plan.json; None when the matrix never ran."""
    return _record(PlanFile, os.path.join(root, PLAN))


def read_search(root: str | os.PathLike) -> dict[str, Any] | None:
    """search.json as plain data, checked against `SearchSummary` (every field it
    names is there, with its type); None when the run folder holds no search."""
    summary = _record(SearchSummary, os.path.join(root, SEARCH_SUMMARY))
    return None if summary is None else summary.model_dump(mode="json")


def read_metrics(job_dir: str | os.PathLike) -> list[EpochMetrics]:
    """Epoch lines of metrics.jsonl ([] when absent). A torn last line (no newline:
    its writer was killed) is skipped; any other line that is not an epoch is damage."""
    path = os.path.join(job_dir, METRICS)
    text = read_text(path)
    if text is None:
        return []
    rows = []
    for number, line in enumerate(text.split("\n")[:-1], 1):  # the last has no newline
        if not line.strip():
            continue
        try:
            rows.append(EpochMetrics.model_validate_json(line))
        except ValueError:
            rows.append(_epoch_line(path, number=number, line=line))
    return rows


def _epoch_line(path: str, *, number: int, line: str) -> EpochMetrics:
    """A line pydantic's JSON parser refused, read again to say what is wrong with it."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise DamagedFile(path, f"line {number}: not valid JSON ({err})") from None
    try:
        return EpochMetrics.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the line"
        raise DamagedFile(path, f"line {number}: {where}: {first['msg']}") from None


def read_progress(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of progress.jsonl after byte `offset`, as events, and the
    offset to read from next. The live channel is advice, not a record: a line that is
    not a JSON object with an "event" is skipped, never an error."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            events.append(event)
    return events, offset + end


def log_tail(job_dir: str | os.PathLike, lines: int = 30) -> str:
    """The last lines of log.txt (undecodable bytes replaced); "" when there is none."""
    try:
        text = (Path(job_dir) / LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

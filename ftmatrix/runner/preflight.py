"""Checks before the first job, reported all at once so that 50 jobs do not fail one by
one: data that is missing or laid out wrong, settings that contradict the data (no test
split, class weights of the wrong length), models whose architecture contradicts their
settings and pretrained weights that cannot be had (no network, a wrong id, a gated
model: once per model; both checked in a separate process, as the runner never imports
torch), and a run folder that cannot be written.

A problem found in a setting names the dotted key and, when the matrix file is given,
where that setting is written (file:line:col).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ftmatrix.config import TEXT_FILES, JobConfig
from ftmatrix.custom import is_own
from ftmatrix.matrix.load import MatrixError, Positions, read

if TYPE_CHECKING:
    from ftmatrix.matrix.plan import Job

MIN_FREE_BYTES = 200 * 1024**2
TEXT_SUFFIXES = set(TEXT_FILES)
DIGITS_CLASSES = 10
ARCHITECTURE_TIMEOUT = 600  # seconds for building every distinct model on the meta device


class ModelCheck(Protocol):
    """A JSON list of job configs -> a list of (key, message) problem lists per model."""

    def __call__(self, payload: str, *, timeout: float) -> list: ...


def check(
    jobs: list[Job],
    *,
    root: Path,
    base_dir: Path,
    matrix: Path | None = None,
    models: ModelCheck | None = None,
) -> list[str]:
    """Every problem found before the first job (empty: the jobs may start). `models`
    checks the models where torch is imported already (the fork server); without it,
    or when it fails, a process of its own does."""
    configs = [job.config for job in jobs if not is_own(job.config)]  # own code: validate's
    found: list[tuple[str, str]] = []  # (dotted key or "", message)
    found += _data(configs, base_dir=base_dir)
    found += _architecture(configs, models)
    problems = _located(found, matrix)
    problems += _run_folder(root)
    return list(dict.fromkeys(problems))


# -------------------------------------------------------------------------- data


def _data(configs: list[JobConfig], *, base_dir: Path) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    classes: dict[tuple[str | None, str | None, str], int | None] = {}
    for cfg in configs:
        data = cfg.data
        key = (data.builtin, data.path, cfg.task)
        if key not in classes:
            classes[key], found = _source(cfg, base_dir=base_dir)
            problems += found
        weights = cfg.train.loss.class_weights
        n = classes[key]
        if isinstance(weights, list) and n is not None and len(weights) != n:
            source = data.builtin or data.path
            problems.append(
                (
                    "train.loss.class_weights",
                    f"{len(weights)} weights for the {n} classes of {source}: give one "
                    "weight per class, or 'balanced'",
                )
            )
    return problems


def _source(cfg: JobConfig, *, base_dir: Path) -> tuple[int | None, list[tuple[str, str]]]:
    """The number of classes of a job's data where it is known without reading the
    examples, and the problems of its layout."""
    data, task = cfg.data, cfg.task
    if data.builtin == "digits":
        return DIGITS_CLASSES, []
    if data.path is None:
        return None, []  # a hub dataset: known only once it is loaded
    path = Path(data.path) if Path(data.path).is_absolute() else base_dir / data.path
    where = f"data.path {data.path!r} ({path})"
    no_test = "test_fraction 0 leaves no test examples: {} has no test split"
    if not path.exists():
        return None, [("", f"{where} does not exist")]
    if (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
        splits = _saved_splits(path)
        if data.test_fraction == 0 and splits is not None and "test" not in splits:
            return None, [("data.test_fraction", no_test.format(where))]
        return None, []
    if task == "causal-lm":
        if not path.is_file():
            return None, [("", f"{where} must be a .jsonl file of prompt/response pairs")]
        return None, []
    if task == "text-classification":
        if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
            return None, [("", f"{where} must be a .csv, .tsv or .jsonl file for texts")]
        return _read_source(cfg, path)
    if not path.is_dir():
        return None, [("", f"{where} must be a folder of images")]
    splits = [s for s in ("val", "test") if (path / s).is_dir()]
    if splits and not (path / "train").is_dir():
        return None, [("", f"{where} has {'/, '.join(splits)}/ but no train/")]
    base = path / "train" if (path / "train").is_dir() else path
    found = [p for p in base.iterdir() if p.is_dir()]
    if len(found) < 2:
        message = (
            f"{where} needs train/ (val/, test/) or one sub-folder per class; "
            f"found {len(found)} class folder(s) in {base}"
        )
        return None, [("", message)]
    problems = []
    if data.test_fraction == 0 and not (path / "test").is_dir():
        problems.append(("data.test_fraction", no_test.format(where) + " (no test/ folder)"))
    n, found_there = _read_source(cfg, path)
    return n if n is not None else len(found), problems + found_there


def _read_source(cfg: JobConfig, path: Path) -> tuple[int | None, list[tuple[str, str]]]:
    """What the job's own data reader (trainers/sources.py: names and labels only, no
    torch, no image decoded) finds wrong with an image folder or a text file, before the
    first job rather than as every job's data_error; and its number of classes."""
    from ftmatrix.trainers import sources

    try:
        if cfg.task == "text-classification":
            names = sources.text_file(path, cfg.data)[2]
        else:
            names = sources.image_folder(path)[1]
    except sources.DataError as err:
        return None, [("data.path", str(err))]
    return len(names), []


def _saved_splits(path: Path) -> list[str] | None:
    """The splits of a datasets.save_to_disk folder, when its index says."""
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return ["train"] if (path / "dataset_info.json").exists() else None
    return [str(s) for s in splits] if isinstance(splits, list) else None


# ------------------------------------------------------------------ architecture


def needs_architecture(cfg: JobConfig) -> bool:
    """Whether a job's model goes to the model process: pretrained weights (are they
    there?), or settings only its architecture can confirm (a Hugging Face model's
    config keys and patch size, LoRA target modules). Never your own model
    (`model.factory`): its code is imported by the job process only."""
    if cfg.model.factory is not None:
        return False
    if cfg.model.pretrained or cfg.model.source == "hf":
        return True
    return cfg.lora.enabled


def _architecture(configs: list[JobConfig], ask: ModelCheck | None) -> list[tuple[str, str]]:
    """Build each distinct model (and teacher) once on the meta device, in a process
    that imports torch; nothing when no job needs it."""
    distinct: dict[str, JobConfig] = {}
    for cfg in configs:
        models = [cfg]
        teacher = cfg.distill.teacher if cfg.distill.enabled else None
        if teacher is not None:
            models.append(cfg.model_copy(update={"model": teacher, "lora": type(cfg.lora)()}))
        for one in models:
            if needs_architecture(one):
                essence = (one.task, one.model, one.lora if one.lora.enabled else None)
                distinct.setdefault(repr(essence), one)
    if not distinct:
        return []
    payload = json.dumps([c.model_dump(mode="json") for c in distinct.values()])
    if ask is not None:
        try:
            return _problems(ask(payload, timeout=ARCHITECTURE_TIMEOUT))
        except (OSError, EOFError, ValueError, RuntimeError, TimeoutError) as err:
            print(f"preflight: checking models in a process of its own ({err})", file=sys.stderr)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ftmatrix.trainers.architecture"],
            input=payload,
            capture_output=True,
            text=True,
            timeout=ARCHITECTURE_TIMEOUT,
            check=False,
        )
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        done, found = None, None
        reason = str(err)
    if not isinstance(found, list):
        # the check itself failed: say so, and leave the models to their jobs
        tail = done.stderr.strip().splitlines()[-1:] if done is not None else [reason]
        print(f"preflight: models not checked: {' '.join(tail)}", file=sys.stderr)
        return []
    return _problems(found)


def _problems(found: list) -> list[tuple[str, str]]:
    return [(key, message) for problems in found for key, message in problems]


# ------------------------------------------------------------------------ output


def _located(found: list[tuple[str, str]], matrix: Path | None) -> list[str]:
    """'file:line:col: key: message' where the setting is written in the matrix file,
    else 'key: message'."""
    positions = None
    if matrix is not None and found:
        try:
            positions = read(matrix)[1]
        except MatrixError:
            positions = None
    out = []
    for key, message in found:
        mark = _written(positions, key) if positions is not None and key else None
        text = f"{key}: {message}" if key else message
        out.append(f"{positions.file}:{mark[0]}:{mark[1]}: {text}" if mark else text)
    return out


def _written(positions: Positions, dotted: str) -> tuple[int, int] | None:
    """Where `dotted` (or, failing that, its nearest parent) is first written: in base,
    as an axis, inside an axis value (past its label) or in an include entry."""
    while dotted:
        tail = "." + dotted
        marks = [
            mark
            for path, mark in positions.marks.items()
            if any(
                ("." + ".".join(map(str, p))).endswith(tail)
                for p in [path, *(path[:i] + path[i + 1 :] for i in range(1, len(path)))]
            )
        ]
        if marks:
            return min(marks)
        dotted = dotted.rpartition(".")[0]
    return None


def _run_folder(root: Path) -> list[str]:
    existing = root  # nothing is created before every check has passed
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return [f"the run folder {root} cannot be created: {existing} is not writable"]
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        return [f"only {free // 1024**2} MB free under {existing}"]
    return []

"""Checks before the first job: data that is missing or laid out wrong, a run folder
that cannot be written. Reported all at once, so 50 jobs do not fail one by one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ftmatrix.matrix.plan import Job

MIN_FREE_BYTES = 200 * 1024**2
TEXT_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json"}


def check(jobs: list[Job], *, root: Path, base_dir: Path) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for job in jobs:
        data, task = job.config.data, job.config.task
        if data.path is None or (data.path, task) in seen:
            continue
        seen.add((data.path, task))
        path = Path(data.path) if Path(data.path).is_absolute() else base_dir / data.path
        where = f"data.path {data.path!r} ({path})"
        if not path.exists():
            problems.append(f"{where} does not exist")
        elif (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            continue  # a datasets.save_to_disk folder
        elif task == "text-classification":
            if not path.is_file() or path.suffix.lower() not in TEXT_SUFFIXES:
                problems.append(f"{where} must be a .csv, .tsv or .jsonl file for texts")
        elif not path.is_dir():
            problems.append(f"{where} must be a folder of images")
        else:
            base = path / "train" if (path / "train").is_dir() else path
            classes = [p for p in base.iterdir() if p.is_dir()]
            if len(classes) < 2:
                problems.append(
                    f"{where} needs train/ (val/, test/) or one sub-folder per class; "
                    f"found {len(classes)} class folder(s) in {base}"
                )
    existing = root  # nothing is created before every check has passed
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        problems.append(f"the run folder {root} cannot be created: {existing} is not writable")
    else:
        free = shutil.disk_usage(existing).free
        if free < MIN_FREE_BYTES:
            problems.append(f"only {free // 1024**2} MB free under {existing}")
    return problems

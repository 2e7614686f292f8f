"""What `validate` checks of own components in the built-in trainer (`model.factory`,
`data.factory`, `train.loss.factory`, `train.metrics`; see ftmatrix/components.py):
that their code can be found, without importing it."""

from __future__ import annotations

from pathlib import Path

from ftmatrix import components
from ftmatrix.config import JobConfig
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.owncode import origin
from ftmatrix.matrix.problems import Problems


def check(jobs: list[Job], *, base: dict, base_dir: Path, problems: Problems) -> None:
    """A problem at the key that names a factory whose code cannot be found (the base's
    key when the base writes it, else the matrix's axes)."""
    seen: set[tuple[str, str]] = set()
    for job in jobs:
        if not names_own(job.config):
            continue
        for key, factory in components.factories(job.config.model_dump(mode="json")):
            message = components.problem(factory, base_dir=base_dir)
            if message is None or (key, message) in seen:
                continue
            seen.add((key, message))
            problems.add(origin(base, key), key, message)


def names_own(cfg: JobConfig) -> bool:
    """Whether a job names any own component (a cheap test before dumping its config)."""
    own_model = cfg.model is not None and cfg.model.factory is not None
    own_data = cfg.data is not None and cfg.data.factory is not None
    return own_model or own_data or cfg.train.loss.factory is not None or bool(cfg.train.metrics)

"""What `validate` checks of a matrix whose jobs run your own code (custom.py): that a
script's command can be found (on PATH, or a file in its folder), that its placeholders
name settings of the job, that a `module:function` can be found without importing it,
and that each `params` key holds values of one type across the jobs."""

from __future__ import annotations

from pathlib import Path

from ftmatrix import custom
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.problems import Problems


def check(jobs: list[Job], *, base: dict, base_dir: Path, problems: Problems) -> None:
    """Report the problems of own-code jobs at the key that causes them (the base's,
    when it writes the key; else the matrix's axes)."""
    if not custom.is_own(base):
        return
    configs = [job.config for job in jobs]
    seen: set[tuple[str, str]] = set()
    found = custom.params_kinds(configs)
    for cfg in configs:
        found += custom.command_problems(cfg, base_dir=base_dir)
    for key, message in found:
        if (key, message) in seen:
            continue
        seen.add((key, message))
        problems.add(origin(base, key), key, message)


def origin(base: dict, key: str) -> tuple:
    """Where a problem with the setting `key` is reported: where `base` writes it (or
    the deepest part of it that base writes), else the grid."""
    parts = key.split(".")
    value: object = base
    for i, part in enumerate(parts):
        if not isinstance(value, dict) or part not in value:
            return ("base", *parts[:i]) if i else ("grid",)
        value = value[part]
    return ("base", *parts)

"""`--only EXPR`: pick jobs by their settings.

EXPR is one or more `key=value` terms (comma or space separated), all of which must
hold. A key is a dotted config path (`lora.enabled`, `train.lr`) or a label's short
name (`lr`, `lora`); a value matches the setting's label (`r8`), its display (`1e-4`)
or its value read as YAML (`true`, `0.0001`). The same terms pick a distillation
teacher (`distill.teacher_job: model.name=resnet50`).
"""

from __future__ import annotations

import re
from typing import Any

from ftmatrix.matrix import paths
from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.labels import fmt, short_names
from ftmatrix.matrix.load import MatrixError, parse_yaml

TERM = re.compile(r"([\w.\-]+)\s*=\s*([^\s,]+)")

Term = tuple[str, str]  # (key, the value as written)


class SelectError(ValueError):
    """An --only expression that cannot pick jobs; the CLI exits 2 with its message."""


def parse(expr: str) -> list[Term]:
    """The `key=value` terms of an expression; SelectError if it has anything else."""
    terms = TERM.findall(expr)
    leftover = TERM.sub("", expr).replace(",", " ").strip()
    if not terms or leftover or any("=" in value for _, value in terms):
        raise SelectError(
            f"--only expects key=value terms separated by commas or spaces, e.g. "
            f"'lora.enabled=true, lr=1e-4'; got {expr!r}"
        )
    return terms


def matches(job: Job, terms: list[Term]) -> bool:
    """Whether every term holds for the job."""
    short = {v: k for k, v in short_names(list(job.settings)).items()}
    for key, text in terms:
        full = short.get(key, key)
        if job.settings.get(full) == text:
            continue
        try:
            actual: Any = paths.get(job.config, full)
        except KeyError:
            return False
        if actual != _read(text) and fmt(actual) != text:
            return False
    return True


def _read(text: str) -> Any:
    """A term's value read as YAML (`true`, `0.0001`); the text itself if it is not YAML."""
    try:
        return parse_yaml(text, "<--only>")[0]
    except MatrixError:
        return text


def select(jobs: list[Job], expr: str | None) -> list[Job]:
    """The jobs an --only expression picks (all of them without one); SelectError when
    it does not parse, names an unknown key, or picks no job."""
    if not expr:
        return jobs
    terms = parse(expr)
    for key, _ in terms:
        known = {k.rsplit(".", 1)[-1] for j in jobs[:1] for k in j.settings}
        if paths.check(key) is not None and key not in known:
            raise SelectError(f"--only: {paths.check(key)}")
    picked = [j for j in jobs if matches(j, terms)]
    if jobs and not picked:
        raise SelectError(f"--only {expr!r} matches none of the {len(jobs)} jobs{_hint(jobs)}")
    return picked


def _hint(jobs: list[Job]) -> str:
    """What the jobs' varying settings are, so that a user sees what to type."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for key, value in job.settings.items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    if not values:
        return " (no setting varies between them)"
    names = short_names(list(values))
    shown = [
        f"{names[k]}: {', '.join(v[:6])}{', ...' if len(v) > 6 else ''}" for k, v in values.items()
    ]
    return "; their settings are " + "; ".join(shown)

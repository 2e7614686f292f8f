"""`--only EXPR`: pick jobs by their settings.

EXPR is one or more `key=value` terms (comma or space separated), all of which must
hold. A key is a dotted config path (`lora.enabled`, `train.lr`) or a label's short
name (`lr`, `lora`); a value matches the setting's label (`r8`), its display (`1e-4`)
or its value read as YAML (`true`, `0.0001`).
"""

from __future__ import annotations

import re
from typing import Any

from ftmatrix.matrix import paths
from ftmatrix.matrix.plan import Job, _fmt, _short_names
from ftmatrix.matrix.spec import parse_yaml

TERM = re.compile(r"([\w.\-]+)\s*=\s*([^\s,]+)")


class SelectError(ValueError):
    pass


def parse(expr: str) -> list[tuple[str, str]]:
    terms = TERM.findall(expr)
    leftover = TERM.sub("", expr).replace(",", " ").strip()
    if not terms or leftover:
        raise SelectError(f"--only expects key=value terms, e.g. lora.enabled=true; got {expr!r}")
    return terms


def matches(job: Job, terms: list[tuple[str, str]]) -> bool:
    short = {v: k for k, v in _short_names(list(job.settings)).items()}
    for key, text in terms:
        full = short.get(key, key)
        if job.settings.get(full) == text:
            continue
        try:
            actual: Any = paths.get(job.config, full)
        except KeyError:
            return False
        wanted = parse_yaml(text, "<--only>")[0]
        if actual != wanted and _fmt(actual) != text:
            return False
    return True


def select(jobs: list[Job], expr: str | None) -> list[Job]:
    if not expr:
        return jobs
    terms = parse(expr)
    for key, _ in terms:
        known = {k.rsplit(".", 1)[-1] for j in jobs[:1] for k in j.settings}
        if paths.check(key) is not None and key not in known:
            raise SelectError(f"--only: {paths.check(key)}")
    return [j for j in jobs if matches(j, terms)]

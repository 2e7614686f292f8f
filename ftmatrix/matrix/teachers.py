"""Distillation teachers chosen among the jobs: `distill.teacher_job` may name a job by
settings (`model.name=resnet50`); the plan points it at that job's id, and teachers run
first."""

from __future__ import annotations

from ftmatrix.matrix.jobs import Job
from ftmatrix.matrix.problems import Problems
from ftmatrix.matrix.select import SelectError, matches, parse


def resolve(jobs: list[Job], problems: Problems) -> list[Job]:
    """The jobs with every `teacher_job` selector replaced by the id of the one job it
    picks, teachers first and everything else in matrix order."""
    ids = {j.id for j in jobs}
    teachers: set[str] = set()
    out = []
    for job in jobs:
        distill = job.part("distill")
        selector = distill.teacher_job if distill.enabled else None
        if selector is None or selector in ids:
            teachers.update([selector] if selector else [])
            out.append(job)
            continue
        found = _picked(selector, jobs)
        if len(found) != 1:
            which = ", ".join(j.label or j.id for j in found[:5]) or "none"
            problems.add(
                ("base", "distill", "teacher_job"),
                "distill.teacher_job",
                f"'{selector}' must pick exactly one non-distilled job; it picks {which}",
            )
            out.append(job)
            continue
        teacher = found[0].id
        teachers.add(teacher)
        distill = job.config.distill.model_copy(update={"teacher_job": teacher})
        out.append(job.replace_config(job.config.model_copy(update={"distill": distill})))
    return sorted(out, key=lambda j: j.id not in teachers)  # stable


def _picked(selector: str, jobs: list[Job]) -> list[Job]:
    """The non-distilled jobs a selector picks (none when it is not key=value terms)."""
    try:
        terms = parse(selector)
    except SelectError:
        return []
    return [j for j in jobs if not j.part("distill").enabled and matches(j, terms)]

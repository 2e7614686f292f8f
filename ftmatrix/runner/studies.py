"""A search's files in the run folder: the optuna studies and their summary.

  search.db     optuna's RDB storage (SQLite): one study per grid point, the source of
                truth for trials; several runners may share it.
  search.json   what `status` and reports read without optuna (`result.read_search`):
                per grid point, every trial with its job, state, value and settings,
                and the best one.
  plan.json     the trials as jobs (id, label, settings), so that status and reports
                treat a trial like any other job.

A study is named `<point id>-<signature>`. The signature hashes what a trial's value
means (strategy, seed, metric, direction, space): editing those starts a new study,
whose trials still reuse every finished job with the same config; raising `trials` or
turning pruning on continues the same study.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ftmatrix.config import JobConfig, cross_check
from ftmatrix.identity import canonical_json, hash_id
from ftmatrix.matrix.labels import fmt
from ftmatrix.matrix.paths import assign
from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.matrix.search import Dist, SearchSpec, grid_size
from ftmatrix.result import (
    PLAN,
    SEARCH_DB,
    SEARCH_SUMMARY,
    DamagedFile,
    PlanEntry,
    PlanFile,
    Result,
    read_metrics,
    write_json_atomic,
)
from ftmatrix.runner import store

LOCK = ".search.lock"  # serialises creating the database and rewriting the summary
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def storage(root: Path):
    """The run folder's optuna storage (imports optuna; creates search.db)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner says what happens
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(root / SEARCH_DB).resolve()}"
    with store.locked(root / LOCK):  # two runners creating the tables at once collide
        # timeout: wait for another runner's write instead of failing with "locked"
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def study_name(point: Job, spec: SearchSpec, dists: list[Dist]) -> str:
    meaning = {
        "strategy": spec.strategy,
        "seed": spec.seed,
        "metric": spec.metric,
        "direction": spec.direction,
        "space": [dataclasses.asdict(d) for d in dists],
    }
    if spec.population_size is not None:  # (absent: the names of existing studies stay)
        meaning["population_size"] = spec.population_size
    return f"{point.id}-{hash_id(canonical_json(meaning))[:8]}"


def budget(spec: SearchSpec, dists: list[Dist]) -> int:
    """Finished trials a study needs: `trials`, or fewer when strategy grid has fewer
    settings (it never draws one twice)."""
    return min(spec.trials, grid_size(dists)) if spec.strategy == "grid" else spec.trials


def display(value: Any) -> str:
    """A searched value as labels show it: 4 significant digits for floats."""
    return f"{value:.4g}" if isinstance(value, float) else fmt(value)


def trial_job(point: Job, dists: list[Dist], params: dict[str, Any]) -> tuple[Job | None, str]:
    """The job of a trial (its settings applied to the point's config, validated like any
    job), or (None, why) when they make no valid config or are not all drawn yet."""
    if any(d.path not in params for d in dists):
        return None, "the trial's settings were not all drawn"
    values = {d.path: d.value(params[d.path]) for d in dists}
    raw = point.config.model_dump()
    for path, value in values.items():
        raw = assign(raw, path.split("."), value)
    try:
        config = JobConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return None, f"{where}: {first['msg']}"
    problems = cross_check(config)
    if problems:
        return None, f"{problems[0][0]}: {problems[0][1]}"
    return point.with_search(config, {p: display(v) for p, v in values.items()}), ""


def metric_value(result: Result, job_dir: Path, spec: SearchSpec) -> float | None:
    """The searched metric of a finished job: a test metric from result.json, or the
    best epoch's value of a validation metric from metrics.jsonl (None where that is
    damaged)."""
    if spec.metric.startswith("test."):
        value = getattr(result.test, spec.metric.removeprefix("test."), None)
        return None if value is None else float(value)
    try:
        epochs = read_metrics(job_dir)
    except DamagedFile:
        return None
    values = [getattr(m, spec.metric) for m in epochs]
    values = [v for v in values if v is not None]
    if not values:
        return None
    return max(values) if spec.direction == "maximize" else min(values)


def summarize(plan: Plan, storage) -> tuple[dict, PlanFile]:
    """search.json's content and the plan file listing every trial's job."""
    import optuna

    spec, dists = plan.spec.search, plan.search
    points, entries = [], {}
    for point in plan.jobs:
        name = study_name(point, spec, dists)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except KeyError:  # not started yet
            trials = []
        retried = {t.user_attrs.get("retry_of") for t in trials}
        rows = []
        for t in trials:
            job, why = trial_job(point, dists, t.params)
            if job is not None and job.id not in entries:
                entries[job.id] = PlanEntry(id=job.id, label=job.label, settings=job.settings)
            rows.append(
                {
                    "number": t.number,
                    "state": t.state.name.lower(),
                    "value": t.value,
                    "job": job.id if job else None,
                    "label": job.label if job else "",
                    "settings": {d.path: display(d.value(t.params[d.path])) for d in dists}
                    if job
                    else {},
                    "epochs": len(t.intermediate_values),
                    "message": t.user_attrs.get("error") or (why if job is None else None),
                    "retried": t.number in retried,
                }
            )
        complete = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
        sign = 1 if spec.direction == "maximize" else -1
        best = max(complete, key=lambda r: (sign * r["value"], -r["number"]), default=None)
        points.append(
            {
                "id": point.id,
                "label": point.label,
                "study": name,
                "budget": budget(spec, dists),
                "best": best["number"] if best else None,
                "trials": rows,
            }
        )
    summary = {
        "strategy": spec.strategy,
        "metric": spec.metric,
        "direction": spec.direction,
        "seed": spec.seed,
        "prune": spec.prune,
        "trials": spec.trials,
        "space": {d.path: d.kind for d in dists},
        "points": points,
    }
    planfile = PlanFile(
        name=plan.name,
        description=plan.description,
        matrix_path=str(plan.path),
        axes=[*plan.axes, *(d.path for d in dists)],
        jobs=list(entries.values()),
    )
    return summary, planfile


def write(root: Path, plan: Plan, storage) -> dict:
    """Rewrite search.json and plan.json from the studies (under a lock, so the last
    writer holds the newest view); the summary."""
    with store.locked(root / LOCK):
        summary, planfile = summarize(plan, storage)
        write_json_atomic(root / SEARCH_SUMMARY, summary)
        write_json_atomic(root / PLAN, planfile.model_dump(mode="json"))
    return summary


def best_lines(summary: dict) -> list[str]:
    """What `status` says about a search: per grid point, the trials so far and the best."""
    lines = []
    for point in summary["points"]:
        counts: dict[str, int] = {}
        for t in point["trials"]:
            if not t["retried"]:  # drawn again by --retry-failed: its retry counts
                counts[t["state"]] = counts.get(t["state"], 0) + 1
        finished = sum(n for s, n in counts.items() if s.upper() in FINISHED)
        where = f"search {point['label']}" if point["label"] else "search"
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines.append(f"{where}: {finished}/{point['budget']} trials ({states or 'none yet'})")
        best = next((t for t in point["trials"] if t["number"] == point["best"]), None)
        if best is not None:
            lines.append(
                f"  best so far: trial {best['number']} {summary['metric']} "
                f"{best['value']:.4f} — {best['label']} ({best['job']})"
            )
    return lines

"""`ftmatrix run` in one call: from what the command line asked to an exit code.

It picks the launcher (and starts the fork server's imports while the matrix is
validated), loads the plan, works out the slots (--workers, --gpus), the executor
(--executor, else the matrix's `executor.use`) and the Slurm settings (the matrix's,
with the flags on top), then hands the plan to one executor: the local queue
(`local`), a tuned search (`tune`, for a matrix with a `search:` block) or Slurm
(`slurm`). Bad options raise `Refused` before anything is written; a bad matrix raises
the loader's `MatrixError`; the caller prints either and exits 2.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from ftmatrix.matrix import plan as planning
from ftmatrix.matrix.executors import ExecutorSpec, SlurmSpec
from ftmatrix.matrix.select import SelectError, select
from ftmatrix.runner import local, progress, show, slurm, store, tune
from ftmatrix.runner.attempt import Options
from ftmatrix.runner.launchers import choice

EXECUTORS = ("local", "slurm")


class Refused(Exception):
    """An option that cannot work (its message says which and why): exit 2."""


@dataclass(frozen=True)
class Request:
    """What `ftmatrix run` was asked: its options, by their names on the command line."""

    matrix: Path  # the matrix file, as the user wrote its path
    runs_dir: Path | None = None  # --runs-dir
    only: str | None = None  # --only EXPR
    retry_failed: bool = False
    force: bool = False
    gpu: str | None = None  # --gpu: CUDA_VISIBLE_DEVICES for every job
    timeout: float | None = None  # seconds per job
    gpus: str | None = None  # --gpus 0,1 | all: one job per GPU at a time
    jobs_per_gpu: int = 1
    workers: int = 1  # jobs at a time without GPUs
    fail_fast: bool = False
    dry_run: bool = False
    quiet: bool = False
    launcher: str = "auto"  # one of choice.NAMES
    max_jobs: int = 10_000
    executor: str | None = None  # local | slurm; None: the matrix's executor.use
    # Slurm, on top of the matrix's executor.slurm (None: not given)
    partition: str | None = None
    time_limit: int | None = None  # minutes
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    max_running: int | None = None
    sbatch_arg: list[str] | None = None  # KEY=VALUE, repeatable
    detach: bool = False  # submit and return
    track: list[str] | None = None  # --track: trackers on top of the matrix's `track:`
    track_uri: str | None = None  # --track-uri: MLflow's tracking URI

    def __post_init__(self) -> None:
        for name in ("launcher", "executor"):  # (the command line's choices are Enums)
            value = getattr(self, name)
            if isinstance(value, Enum):
                object.__setattr__(self, name, value.value)
        if isinstance(self.track, str):  # --track a,b
            names = [n.strip() for n in self.track.split(",") if n.strip()]
            object.__setattr__(self, "track", names)

    def slurm_flags(self) -> dict[str, Any]:
        """The Slurm options given, as SlurmSpec fields (None: not given)."""
        return {
            "partition": self.partition,
            "time": self.time_limit,
            "gpus_per_job": self.gpus_per_job,
            "cpus_per_job": self.cpus_per_job,
            "mem_gb": self.mem_gb,
            "account": self.account,
            "qos": self.qos,
            "max_running": self.max_running,
        }


@dataclass(frozen=True)
class Outcome:
    code: int  # 0 all done, 1 some failed, 2 bad input, 130 interrupted
    hint: str | None = None  # where the results are and the command that tabulates them


def trackers_of(request: Request, plan: planning.Plan) -> dict[str, Any]:
    """The trackers a run sends its jobs to: the matrix's `track:` and --track; one that
    is unknown or not installed is refused before any job starts."""
    from ftmatrix.trackers import missing

    spec = plan.spec
    names = list(dict.fromkeys([*(spec.track if spec else []), *(request.track or [])]))
    problems = missing(names)
    if problems:
        raise Refused("--track: " + "; ".join(problems))
    uri = request.track_uri or (spec.track_uri if spec else None)
    return {"track": tuple(names), "track_uri": uri}


def run(request: Request, *, console: Console) -> Outcome:
    """Run (or, with dry_run, show) the matrix as asked; see the module's doc."""
    if request.timeout is not None and not request.timeout > 0:
        raise Refused(f"--timeout must be more than 0 seconds, not {request.timeout:g}")
    try:
        launcher = choice.choose(request.launcher)
    except (LookupError, ValueError) as err:
        raise Refused(str(err)) from None
    if hasattr(launcher, "warm") and not request.dry_run:
        launcher.warm()  # the server imports torch while the matrix is validated
    plan = planning.load_plan(request.matrix, max_jobs=request.max_jobs)
    if request.dry_run:
        show.plan_table(plan, console=console, runs_dir=request.runs_dir)
        return Outcome(0)
    options = Options(
        only=request.only,
        retry_failed=request.retry_failed,
        force=request.force,
        gpu=request.gpu,
        timeout=request.timeout,
        fail_fast=request.fail_fast,
        slots=slots(
            gpu=request.gpu,
            gpus=request.gpus,
            jobs_per_gpu=request.jobs_per_gpu,
            workers=request.workers,
        ),
        **trackers_of(request, plan),
    )
    root = store.root_of(plan, request.runs_dir)
    settings = plan.spec.executor if plan.spec is not None else None
    where = request.executor or (settings.use if settings else "local")
    if where not in EXECUTORS:
        raise Refused(f"--executor must be local or slurm, not {where!r}")
    if where == "slurm" and plan.search:
        raise Refused("a search: block runs with the local executor only (for now)")
    spec = None
    if where == "slurm":
        spec = slurm_spec(settings, request.slurm_flags(), request.sbatch_arg or [])
    try:
        select(plan.jobs, request.only)
    except SelectError as err:
        raise Refused(str(err)) from None
    display = progress.display(console, quiet=request.quiet)
    target = report_target(request, plan)
    if spec is not None:
        code = slurm.run(
            plan,
            root=root,
            options=options,
            spec=spec,
            display=display,
            detach=request.detach,
            target=target,
        )
    elif plan.search:
        code = tune.run(plan, root=root, options=options, display=display, launcher=launcher)
    else:
        code = local.run(plan, root=root, options=options, display=display, launcher=launcher)
    hint = None
    if code == 0 and not request.quiet and not request.detach:
        hint = f"results in {root}; tables: ftmatrix report {target}"
    return Outcome(code, hint)


def report_target(request: Request, plan: planning.Plan) -> str:
    """How to name this run to `ftmatrix report|status|cancel` from where the user
    stands: the matrix's name when ./runs/NAME is its folder, else the name with the
    --runs-dir given, else the matrix file (whose runs_dir is relative to the file)."""
    root = store.root_of(plan, request.runs_dir)
    if root.resolve() == (Path("runs") / plan.name).resolve():
        return shlex.quote(plan.name)
    if request.runs_dir is not None:
        return f"{shlex.quote(plan.name)} --runs-dir {shlex.quote(str(request.runs_dir))}"
    return shlex.quote(str(request.matrix))


def slots(*, gpu: str | None, gpus: str | None, jobs_per_gpu: int, workers: int) -> list:
    """What runs at once: one entry per concurrent job, each the CUDA_VISIBLE_DEVICES
    its job gets (None: --gpu, or nothing)."""
    if gpus is None:
        if jobs_per_gpu != 1:
            raise Refused("--jobs-per-gpu needs --gpus")
        return [None] * workers
    if gpu is not None or workers != 1:
        raise Refused("--gpus runs one job per GPU; it does not combine with --gpu or --workers")
    if gpus == "all":
        found = gpu_indices()
        if not found:
            raise Refused("--gpus all: no GPU found (nvidia-smi lists none)")
    else:
        found = [g.strip() for g in gpus.split(",") if g.strip()]
        if not found or not all(g.isdigit() for g in found) or len(set(found)) != len(found):
            raise Refused(f"--gpus must be distinct GPU indices like 0,1,2 or 'all', not {gpus!r}")
    return [g for g in found for _ in range(jobs_per_gpu)]


def gpu_indices() -> list[str]:
    """The GPUs this machine has, as CUDA_VISIBLE_DEVICES indices, read with nvidia-smi
    (never by initialising CUDA here: the runner stays torch-free). Where the runner
    itself was given CUDA_VISIBLE_DEVICES, those."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g.strip() for g in given.split(",") if g.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


def slurm_spec(
    settings: ExecutorSpec | None, flags: dict[str, Any], sbatch_args: list[str]
) -> SlurmSpec:
    """The matrix's executor.slurm settings with the command line's flags on top."""
    merged = settings.slurm.model_dump() if settings else {}
    merged.update({k: v for k, v in flags.items() if v is not None})
    for arg in sbatch_args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise Refused(f"--sbatch-arg must be KEY=VALUE, not {arg!r}")
        merged.setdefault("sbatch_args", {})[key.lstrip("-")] = value
    try:
        return SlurmSpec.model_validate(merged)
    except ValidationError as err:
        raise Refused(
            "\n".join(
                f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                for e in err.errors()
            )
        ) from None

"""The `ftmatrix` command line: thin wrappers that parse options, call the package and
render with rich. Nothing here imports torch; commands that train import lazily."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="ftmatrix",
    help="Declarative experiment matrices for fine-tuning: validate, plan, run, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

MatrixArg = Annotated[
    Path,
    typer.Argument(help="The matrix YAML file.", show_default=False),
]
MaxJobs = Annotated[
    int,
    typer.Option(help="Refuse matrices with more jobs than this (checked before expanding)."),
]


def _load_plan(path: Path, max_jobs: int):
    """Load and expand a matrix, or print every problem and exit 2."""
    from ftmatrix.matrix import plan
    from ftmatrix.matrix import spec as matrix

    try:
        return plan.load_plan(path, max_jobs=max_jobs)
    except matrix.MatrixError as err:
        _refuse(path, err)


def _refuse(path: Path, err) -> NoReturn:
    """Print every problem of a matrix (a MatrixError) and exit 2."""
    for problem in err.problems:
        err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    n = len(err.problems)
    err_console.print(f"{path}: {n} problem{'s' if n != 1 else ''}; nothing was run.")
    raise typer.Exit(2) from None


@app.command()
def validate(matrix: MatrixArg, max_jobs: MaxJobs = 10_000) -> None:
    """Check a matrix file and say how many jobs it makes, or list every problem (exit 2)."""
    p = _load_plan(matrix, max_jobs)
    console.print(f"ok: {len(p.jobs)} job{'s' if len(p.jobs) != 1 else ''} in '{p.name}'")


@app.command()
def plan(
    matrix: MatrixArg,
    max_jobs: MaxJobs = 10_000,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the plan as JSON instead of a table.")
    ] = False,
    runs_dir: Annotated[
        Path | None,
        typer.Option(help="Where run folders live (default: the matrix's runs_dir or ./runs)."),
    ] = None,
) -> None:
    """Show the jobs a matrix expands into: id, label and the settings that vary."""
    from ftmatrix.runner import show

    p = _load_plan(matrix, max_jobs)
    if as_json:
        print(json.dumps(p.to_planfile().model_dump(mode="json"), indent=2))
        return
    show.plan_table(p, console=console, runs_dir=runs_dir)


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option(help="Write the schema to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of matrix files, for editor autocompletion (see README)."""
    from ftmatrix.matrix import spec as matrix

    text = json.dumps(matrix.json_schema(), indent=2) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


RunsDir = Annotated[
    Path | None,
    typer.Option(help="Root of run folders (default: the matrix's runs_dir, else ./runs)."),
]


class LauncherName(str, Enum):
    auto = "auto"
    server = "server"
    forkserver = "forkserver"
    spawn = "spawn"


class ExecutorName(str, Enum):
    local = "local"
    slurm = "slurm"


def _positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be more than 0 seconds, not {value:g}")
    return value


Only = Annotated[
    str | None,
    typer.Option(help="Run only jobs whose settings match, e.g. 'lora.enabled=true'."),
]
Gpu = Annotated[str | None, typer.Option(help="CUDA_VISIBLE_DEVICES for the jobs, e.g. 0 or 1,2.")]
Timeout = Annotated[
    float | None,
    typer.Option(callback=_positive, help="Stop a job after this many seconds (failed: timeout)."),
]
Gpus = Annotated[
    str | None,
    typer.Option(
        help="Run one job per GPU at a time: GPU indices (0,1,2,3) or 'all'; each job "
        "sees only its GPU (CUDA_VISIBLE_DEVICES)."
    ),
]
JobsPerGpu = Annotated[
    int, typer.Option(min=1, help="With --gpus: jobs sharing each GPU at a time.")
]
Workers = Annotated[int, typer.Option(min=1, help="Jobs at a time without GPUs (CPU jobs).")]
Launcher = Annotated[
    LauncherName,
    typer.Option(
        help="server: fork jobs from the warm server (`ftmatrix server start`); "
        "forkserver: from a process this run starts, which imports torch once (Linux); "
        "spawn: a fresh interpreter per job; auto: the warm server if one runs for this "
        "code, else forkserver where it is safe, else spawn."
    ),
]
Executor = Annotated[
    ExecutorName | None,
    typer.Option(help="local (this machine) or slurm; default: the matrix's executor.use."),
]


@app.command()
def run(
    matrix: MatrixArg,
    runs_dir: RunsDir = None,
    only: Only = None,
    retry_failed: Annotated[bool, typer.Option(help="Run failed jobs again.")] = False,
    force: Annotated[bool, typer.Option(help="Run every job again, from scratch.")] = False,
    gpu: Gpu = None,
    timeout: Timeout = None,
    gpus: Gpus = None,
    jobs_per_gpu: JobsPerGpu = 1,
    workers: Workers = 1,
    fail_fast: Annotated[bool, typer.Option(help="Stop at the first failed job.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Show the plan and run nothing.")] = False,
    quiet: Annotated[bool, typer.Option(help="Print only problems and the summary.")] = False,
    launcher: Launcher = LauncherName.auto,
    max_jobs: MaxJobs = 10_000,
    executor: Executor = None,
    partition: Annotated[str | None, typer.Option(help="Slurm partition.")] = None,
    time_limit: Annotated[
        int | None, typer.Option(help="Slurm time limit per job, in minutes.")
    ] = None,
    gpus_per_job: Annotated[int | None, typer.Option(help="Slurm GPUs per job.")] = None,
    cpus_per_job: Annotated[int | None, typer.Option(help="Slurm CPU cores per job.")] = None,
    mem_gb: Annotated[float | None, typer.Option(help="Slurm memory per job, in GB.")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account.")] = None,
    qos: Annotated[str | None, typer.Option(help="Slurm quality of service.")] = None,
    max_running: Annotated[
        int | None, typer.Option(help="Slurm: at most this many jobs of the matrix at once.")
    ] = None,
    sbatch_arg: Annotated[
        list[str] | None,
        typer.Option(help="Extra sbatch option KEY=VALUE (repeatable), e.g. constraint=a100."),
    ] = None,
    detach: Annotated[
        bool, typer.Option(help="Slurm: submit and return; `ftmatrix run` again collects.")
    ] = False,
    track: Annotated[
        str | None,
        typer.Option(
            help="Send each finished job to these trackers too: tensorboard,mlflow,wandb "
            "(comma-separated; adds to the matrix's track:)."
        ),
    ] = None,
    track_uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: sqlite:///<run folder>/mlflow.db)."),
    ] = None,
) -> None:
    """Run a matrix: every pending job in its own process; resumes where it stopped.

    With --executor slurm (or `executor: {use: slurm}` in the matrix) the jobs go to a
    Slurm cluster as one job array; running the command again re-attaches to queued
    jobs instead of submitting them twice.

    Exit code: 0 all done, 1 some failed, 2 invalid input, 130 interrupted (Ctrl-C).
    """
    options = dict(locals())  # every option, by its name: the names of dispatch.Request
    from ftmatrix.matrix import spec
    from ftmatrix.runner import dispatch

    try:
        outcome = dispatch.run(dispatch.Request(**options), console=console)
    except spec.MatrixError as err:
        _refuse(matrix, err)
    except dispatch.Refused as err:
        err_console.print(str(err), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if outcome.hint:
        console.print(outcome.hint, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(outcome.code)


@app.command()
def cancel(
    target: Annotated[
        str, typer.Argument(help="A matrix file, or the name of a run folder under --runs-dir.")
    ],
    runs_dir: RunsDir = None,
) -> None:
    """Cancel the matrix's queued and running Slurm jobs; finished results stay."""
    from ftmatrix.runner import slurm

    root = _run_folder(target, runs_dir)
    if not root.is_dir():
        err_console.print(f"no run folder {root}")
        raise typer.Exit(2)
    cancelled = slurm.cancel(root)
    console.print(f"cancelled {len(cancelled)} Slurm job(s)" + (": " if cancelled else ""), end="")
    console.print(" ".join(cancelled), highlight=False)


@app.command()
def status(
    target: Annotated[
        str, typer.Argument(help="A matrix file, or the name of a run folder under --runs-dir.")
    ],
    runs_dir: RunsDir = None,
    max_rows: Annotated[int, typer.Option(help="Show at most this many jobs.")] = 200,
    follow: Annotated[
        bool,
        typer.Option(
            help="Slurm: wait until no job is queued or running, recording how each one "
            "that ended without a result ended (timeout, cancelled, ...), then show the table."
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=1, help="With --follow: seconds between looks at the queue.")
    ] = 10.0,
) -> None:
    """Counts per state and a table of jobs: state, test accuracy, F1, time; for a search,
    the trials so far and the best one; for Slurm jobs, their queue state (sacct).
    Reads files only (and the Slurm queue, where jobs were submitted to it)."""
    from ftmatrix.runner import status as jobs

    root = _run_folder(target, runs_dir)
    found = jobs.collect(root)
    if not found.rows:
        err_console.print(f"no jobs under {root}")
        raise typer.Exit(2)
    unknown: dict[str, float] = {}
    while follow:
        import time

        from ftmatrix.runner import slurm

        active = slurm.collect(root, unknown_since=unknown)
        found = jobs.collect(root)
        if not active:
            break
        console.print(time.strftime("%H:%M:%S ") + _counts(found), highlight=False)
        time.sleep(interval)
    _show_status(found, root=root, max_rows=max_rows)


def _show_status(found, *, root: Path, max_rows: int) -> None:
    """The counts, a search's trials, the table of jobs; damaged files on stderr."""
    from rich.table import Table

    from ftmatrix.result import DamagedFile, read_search
    from ftmatrix.runner import studies

    for problem in found.problems:
        err_console.print(problem, markup=False, highlight=False, soft_wrap=True)
    console.print(_counts(found), markup=False, highlight=False)
    try:
        searched = read_search(root)
    except DamagedFile as err:
        err_console.print(str(err), markup=False, highlight=False, soft_wrap=True)
        searched = None
    for line in studies.best_lines(searched) if searched else []:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    table = Table(show_lines=False)
    for column in ("id", "label", "state", "test acc", "F1", "time"):
        table.add_column(column)
    for row in found.rows[:max_rows]:
        fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
        state = row.state + (f" ({row.error})" if row.error else "")
        time_s = "" if row.seconds is None else f"{row.seconds:.0f} s"
        cells = (row.id, row.label, state, fmt(row.accuracy, ".4f"), fmt(row.f1, ".4f"), time_s)
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
    if len(found.rows) > max_rows:
        console.print(f"... {len(found.rows) - max_rows} more (--max-rows)")


def _counts(found) -> str:
    return f"{found.name}: " + ", ".join(f"{n} {s}" for s, n in found.counts().items())


def _run_folder(target: str, runs_dir: Path | None) -> Path:
    """A matrix file's run folder, or runs_dir/NAME."""
    path = Path(target)
    if path.is_file():
        from ftmatrix.runner import store

        return store.root_of(_load_plan(path, 10**9), runs_dir)
    return (runs_dir or Path("runs")) / target


class ReportFormat(str, Enum):
    md = "md"
    csv = "csv"
    latex = "latex"
    html = "html"


@app.command()
def report(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Matrix files or run-folder names under --runs-dir.", show_default=False
        ),
    ],
    runs_dir: RunsDir = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Sort and compare by this test metric: a built-in one (accuracy, f1_macro, "
            "loss, ...) or one a job reported under its own name (exact). NAME:min or "
            "NAME:max says which way is better (default: the built-in's way; for an own "
            "name, smaller when it holds loss, err, perplexity, mse, mae or time, else "
            "larger). Default: accuracy, or the first test metric the jobs reported.",
            show_default=False,
        ),
    ] = None,
    rows: Annotated[str | None, typer.Option(help="Pivot table rows: a varying setting.")] = None,
    cols: Annotated[
        str | None, typer.Option(help="Pivot table columns: a varying setting.")
    ] = None,
    per_class: Annotated[bool, typer.Option(help="Per-class accuracy for every job.")] = False,
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="md (with plots and results.csv), csv, latex, or html (report.md and an "
            "interactive report.html, one self-contained file).",
        ),
    ] = ReportFormat.md,
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: runs/<name>/report.md).")
    ] = None,
    plots: Annotated[bool, typer.Option(help="Draw learning curves and metric plots.")] = True,
    epochs: Annotated[
        str, typer.Option(help="Per-epoch table: of the best job (best), every job (all), none.")
    ] = "best",
    together: Annotated[
        bool,
        typer.Option(
            help="One report of all the runs side by side (e.g. TPE vs evolution): "
            "runs_dir/A-vs-B.md, or --out."
        ),
    ] = False,
) -> None:
    """Write comparison tables, the effect of each setting and learning curves."""
    from ftmatrix.reports.report import write
    from ftmatrix.result import PLAN

    if together:
        from ftmatrix.reports import side_by_side

        roots = [_run_folder(target, runs_dir) for target in targets]
        missing = [str(r) for r in roots if not (r / PLAN).exists()]
        if missing or len(roots) < 2:
            err_console.print(f"--together needs two run folders or more; not runs: {missing}")
            raise typer.Exit(2)
        joint = out or roots[0].parent / ("-vs-".join(r.name for r in roots) + ".md")
        try:
            path = side_by_side.write(roots, out=joint, metric=metric, plots=plots)
        except ValueError as err:
            err_console.print(str(err))
            raise typer.Exit(2) from None
        console.print(f"wrote {path}")
        return
    for target in targets:
        root = _run_folder(target, runs_dir)
        if not (root / PLAN).exists():
            err_console.print(f"no run folder at {root} (run the matrix first)")
            raise typer.Exit(2)
        target_out = out if out is None or len(targets) == 1 else out / root.name / out.name
        try:
            path = write(
                root,
                out=target_out,
                metric=metric,
                rows=rows,
                cols=cols,
                per_class=per_class,
                fmt="md" if fmt is ReportFormat.html else fmt.value,
                plots=plots,
                epochs=epochs,
            )
        except ValueError as err:
            err_console.print(str(err))
            raise typer.Exit(2) from None
        console.print(f"wrote {path}")
        if fmt is ReportFormat.html:
            from ftmatrix.reports.html import write_html

            page = target_out.with_suffix(".html") if target_out else None
            console.print(f"wrote {write_html(root, page, metric=metric)}")


class Tracker(str, Enum):
    tensorboard = "tensorboard"
    mlflow = "mlflow"
    wandb = "wandb"


@app.command()
def export(
    target: Annotated[
        str, typer.Argument(help="A matrix file, or the name of a run folder under --runs-dir.")
    ],
    to: Annotated[Tracker, typer.Option(help="The tracker to send the finished jobs to.")],
    uri: Annotated[
        str | None,
        typer.Option(help="MLflow tracking URI (default: sqlite:///<run folder>/mlflow.db)."),
    ] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Send every finished job of a run folder to TensorBoard, MLflow or W&B (offline).

    Idempotent: a job sent before is updated, never duplicated; the way to bring old runs
    in, or to send what a failed tracker missed during `run`.

    Exit code: 0 every job sent, 1 some could not be, 2 invalid input.
    """
    from ftmatrix import trackers
    from ftmatrix.result import DamagedFile

    root = _run_folder(target, runs_dir)
    try:
        done = trackers.export(root, to=to.value, uri=uri)
    except (trackers.TrackerMissing, FileNotFoundError, DamagedFile) as err:
        err_console.print(str(err), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if done.error:
        err_console.print(f"{to.value}: nothing sent ({done.error})", markup=False)
        raise typer.Exit(1)
    console.print(f"sent {len(done.sent)} jobs to {to.value} at {done.where}", markup=False)
    for job_id, why in done.failed.items():
        err_console.print(f"  not sent: {job_id}: {why}", markup=False, highlight=False)
    console.print(f"open it: {done.opens}", markup=False)
    raise typer.Exit(0 if done.ok else 1)


class ServerAction(str, Enum):
    start = "start"
    stop = "stop"
    status = "status"


@app.command()
def server(
    action: Annotated[
        ServerAction, typer.Argument(help="start, stop or status.", show_default=False)
    ] = ServerAction.status,
    idle: Annotated[
        float, typer.Option(min=0.1, help="start: minutes without a job before it exits.")
    ] = 30.0,
) -> None:
    """A warm job server: imports torch, transformers and peft once and forks the jobs of
    every later `ftmatrix run` (same code and HF_*/TORCH* settings), so runs start jobs
    at once. It exits after --idle minutes without a job, or on `ftmatrix server stop`."""
    import time

    from ftmatrix.runner.launchers import warm

    if action == ServerAction.stop:
        stopped = warm.stop()
        pids = ", ".join(str(info["pid"]) for info in stopped)
        console.print(f"stopped {len(stopped)} server(s)" + (f": pid {pids}" if pids else ""))
        return
    path = warm.address()  # (a fingerprint of the code and setting: worked out once)
    info = warm.ping(path)
    if action == ServerAction.status:
        others = len(warm.running()) - (info is not None)
        if others:
            console.print(f"{others} server(s) for other code or settings (stop: server stop)")
        if info is None:
            console.print("no warm server runs for this code and setting")
            raise typer.Exit(1)
    if info is not None:
        up = time.time() - info["started"]
        console.print(
            f"warm server pid {info['pid']}, up {up / 60:.1f} min, "
            f"{info['jobs']} job(s) running; socket {path}"
        )
        return
    with console.status("starting the warm server (importing torch, transformers, peft)"):
        info, seconds, log = warm.start(idle=idle * 60)
    if info is None:
        err_console.print(f"the server did not answer within {seconds:.0f} s; see {log}")
        raise typer.Exit(1)
    console.print(
        f"warm server ready in {seconds:.1f} s (pid {info['pid']}); `ftmatrix run` forks "
        f"its jobs until it has been idle {idle:g} min"
    )


@app.command()
def train(
    run_dir: Annotated[
        Path, typer.Argument(help="A job folder holding config.json.", show_default=False)
    ],
) -> None:
    """Run one job in this process (what `ftmatrix run` starts for every job)."""
    from ftmatrix.trainers.job import main

    raise typer.Exit(main(run_dir))


if __name__ == "__main__":
    app()

"""The `ftmatrix` command line: thin wrappers that parse options, call the package and
render with rich. Nothing here imports torch; commands that train import lazily."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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
    from ftmatrix.runner import matrix, plan

    try:
        return plan.load_plan(path, max_jobs=max_jobs)
    except matrix.MatrixError as err:
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
    from ftmatrix.runner import matrix

    text = json.dumps(matrix.json_schema(), indent=2) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}")


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

"""What the runner adds: wall time of `ftmatrix run` on a matrix of 10 tiny jobs vs the
sum of the jobs' own time, cold and warm, in one run.

The matrix is written to a temporary folder and run the way a user runs it, through
the CLI in a subprocess (`python -m ftmatrix.cli run MATRIX`), twice:

    cold  --launcher forkserver: the run starts its own fork server, which imports
          torch, transformers and peft once (what a run does when no server is up)
    warm  --launcher server: jobs forked by a server `ftmatrix server start` started
          before the run (its start-up is printed, not counted: once per session)

so the wall time counts everything else: the interpreter and CLI start, validation
and planning, every fork, the runner's polling, and the exit.

A job's own time is `timing.total` from its result.json: from the trainer's `main()`
entry to its result written (data, model, epochs, test, weights). That is the work a
job does whoever starts it; progress events would miss the set-up before `start` and
the test after the last epoch. Where its time goes in between, per job: it began at
its `end` event's time minus `timing.total`, so

    start-up      CLI launched -> first job began (cold: torch imported, by the server)
    between jobs  each job's end -> the next job began (fork, polling, claim, config)
    tail          last job's end -> the CLI exited and its output closed

"Per job" is the between-jobs part plus the tail, over the number of jobs: what each
further job costs, and the job length at which it is 10% is printed.

    .venv/bin/python benchmarks/matrix_overhead.py [--epochs N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.tiny

from tests.tiny import MICRO_VIT

# the runner tests' tiny model (tests/tiny.py) at ten learning rates
MATRIX = """
name: overhead
runs_dir: runs
base:
  data: {{builtin: digits, limit: 300}}
  model: {model}
  train: {{epochs: {epochs}, batch_size: 64}}
grid:
  train.lr: [0.01, 0.007, 0.005, 0.003, 0.002, 0.0015, 0.001, 0.0007, 0.0005, 0.0003]
"""


def job_spans(root: Path) -> list[tuple[float, float, dict]]:
    """(began, ended, timing) per job folder, in the order they ran."""
    spans = []
    for job_dir in root.iterdir():
        if not (job_dir / "result.json").exists():
            continue
        result = json.loads((job_dir / "result.json").read_text())
        if result["status"] != "done":
            sys.exit(f"{job_dir.name}: {result['status']}: {result.get('error_message')}")
        events = [json.loads(x) for x in (job_dir / "progress.jsonl").read_text().splitlines()]
        ended = next(e["time"] for e in reversed(events) if e["event"] == "end")
        spans.append((ended - result["timing"]["total"], ended, result["timing"]))
    return sorted(spans, key=lambda s: s[0])


def import_seconds() -> float:
    """A fresh interpreter importing what the fork server preloads: what any Python
    process that trains these jobs pays once, runner or not."""
    from ftmatrix.runner.launchers.forkserver import PRELOAD

    code = (
        "import os, time; began = time.perf_counter(); "
        f"import {', '.join(PRELOAD)}; "
        "print(time.perf_counter() - began, flush=True); os._exit(0)"  # no 2 s teardown
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def measure(matrix: Path, launcher: str, *, env: dict[str, str]) -> dict[str, float]:
    """Run the matrix once through the CLI; where the wall time went (see the doc)."""
    command = [sys.executable, "-m", "ftmatrix.cli", "run", str(matrix), "--launcher", launcher]
    launched = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    exited = time.time()  # (stdout closed too: no process of the run holds it)
    if proc.returncode != 0:
        sys.exit(proc.stdout + proc.stderr)
    spans = job_spans(matrix.parent / "runs" / "overhead")
    shutil.rmtree(matrix.parent / "runs")
    n = len(spans)
    own = sum(s[1] - s[0] for s in spans)
    return {
        "n": n,
        "wall": exited - launched,
        "own": own,
        "training": sum(s[2]["train"] for s in spans),
        "startup": spans[0][0] - launched,
        "between": sum(b[0] - a[1] for a, b in itertools.pairwise(spans)),
        "tail": exited - spans[-1][1],
    }


def report(title: str, m: dict[str, float], note: str) -> None:
    n, own = m["n"], m["own"]
    added = m["wall"] - own
    per_job = (m["between"] + m["tail"]) / n  # the tail: the last job's exit seen, the CLI's
    rows = [
        ("wall time of the run", m["wall"], ""),
        (
            "sum of the jobs' own time",
            own,
            f"{own / n:.2f} s a job, epochs {m['training'] / n:.2f} s",
        ),
        ("runner adds", added, f"{100 * added / own:.1f}% of the jobs' time (target < 10%)"),
        ("  start-up, once", m["startup"], note),
        (f"  between jobs ({n - 1} gaps)", m["between"], ""),
        ("  tail", m["tail"], ""),
        ("per job, start-up aside", per_job, f"{100 * per_job * n / own:.1f}% of a job here"),
    ]
    print(title)
    for name, seconds, text in rows:
        print(f"  {name:30s} {seconds:7.2f} s   {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per job (default 3)")
    args = parser.parse_args()
    from ftmatrix.runner.launchers import warm as server

    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "overhead.yaml"
        matrix.write_text(MATRIX.format(epochs=args.epochs, model=json.dumps(MICRO_VIT)))
        env = {"FTMATRIX_SERVER_DIR": str(Path(tmp) / "servers")}  # no user's server
        cold = measure(matrix, "forkserver", env=env)
        os.environ.update(env)
        info, warmup, _log = server.start(idle=120)
        if info is None:
            sys.exit("the warm server did not start")
        try:
            warm = measure(matrix, "server", env=env)
        finally:
            server.stop()
    imports = import_seconds()
    print(f"`ftmatrix run`: {cold['n']} tiny jobs, {args.epochs} epochs each")
    report(
        "cold: the run's own fork server (--launcher forkserver, the default with no server)",
        cold,
        f"a bare import of torch & co.: {imports:.2f} s",
    )
    report(
        "warm: jobs forked by `ftmatrix server start` (started once, in "
        f"{warmup:.1f} s, before the run)",
        warm,
        "the CLI's own start, planning, the server's reply",
    )
    for name, m in (("cold", cold), ("warm", warm)):
        per_job = (m["between"] + m["tail"]) / m["n"]
        print(
            f"{name}: wall / own {m['wall'] / m['own']:.2f}x; the per-job part is 10% of jobs "
            f"of {per_job / 0.1:.1f} s, the start-up 10% of a run of {m['startup'] / 0.1:.0f} s"
        )


if __name__ == "__main__":
    main()

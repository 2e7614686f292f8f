"""What the runner adds: wall time of `ftmatrix run` on a matrix of 10 tiny jobs vs the
sum of the jobs' own time, in one run.

The matrix is written to a temporary folder and run the way a user runs it, through
the CLI in a subprocess (`python -m ftmatrix.cli run MATRIX`, default launcher), so the
wall time counts everything: the interpreter and CLI start, validation and planning,
the fork server's imports, every fork, the runner's polling, and the exit.

A job's own time is `timing.total` from its result.json: from the trainer's `main()`
entry to its result written (data, model, epochs, test, weights). That is the work a
job does whoever starts it; progress events would miss the set-up before `start` and
the test after the last epoch. Where its time goes in between, per job: it began at
its `end` event's time minus `timing.total`, so

    start-up      CLI launched -> first job began (torch imported once, by the server)
    between jobs  each job's end -> the next job began (fork, polling, claim, config)
    tail          last job's end -> the CLI exited and its output closed

The start-up is paid once per `ftmatrix run` (a single Python process training the
jobs in turn would pay the same imports once): its share shrinks as jobs get longer or
more numerous. "Per job" is the between-jobs part plus the tail, over the number of
jobs: what each further job costs, and the job length at which it is 10% is printed.

    .venv/bin/python benchmarks/matrix_overhead.py [--launcher spawn] [--epochs N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# the runner tests' tiny matrix (tests/runner/conftest.py) at ten learning rates
MATRIX = """
name: overhead
runs_dir: runs
base:
  data: {{builtin: digits, limit: 300}}
  model:
    name: google/vit-base-patch16-224
    pretrained: false
    image_size: 16
    config: {{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2,
             intermediate_size: 32, patch_size: 8}}
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
    from ftmatrix.runner.launch import PRELOAD

    code = (
        "import os, time; began = time.perf_counter(); "
        f"import {', '.join(PRELOAD)}; "
        "print(time.perf_counter() - began, flush=True); os._exit(0)"  # no 2 s teardown
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", default="auto", help="auto, forkserver or spawn")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per job (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        matrix = Path(tmp) / "overhead.yaml"
        matrix.write_text(MATRIX.format(epochs=args.epochs))
        command = [sys.executable, "-m", "ftmatrix.cli", "run", str(matrix)]
        launched = time.time()
        proc = subprocess.run(
            [*command, "--launcher", args.launcher], capture_output=True, text=True
        )
        exited = time.time()  # (stdout closed too: no process of the run holds it)
        if proc.returncode != 0:
            sys.exit(proc.stdout + proc.stderr)
        spans = job_spans(Path(tmp) / "runs" / "overhead")
    imports = import_seconds()
    n = len(spans)
    wall = exited - launched
    own = sum(s[1] - s[0] for s in spans)
    training = sum(s[2]["train"] for s in spans)
    startup = spans[0][0] - launched
    between = sum(b[0] - a[1] for a, b in itertools.pairwise(spans))
    tail = exited - spans[-1][1]
    added = wall - own
    per_job = (between + tail) / n  # the tail: the last job's exit seen, the CLI's own
    rows = [
        ("wall time of the run", wall, ""),
        ("sum of the jobs' own time", own, f"{own / n:.2f} s a job, epochs {training / n:.2f} s"),
        ("runner adds", added, f"{100 * added / own:.1f}% of the jobs' time (target < 10%)"),
        ("  start-up, once", startup, f"a bare import of torch & co.: {imports:.2f} s"),
        (f"  between jobs ({n - 1} gaps)", between, ""),
        ("  tail", tail, ""),
        ("per job, start-up aside", per_job, f"{100 * per_job * n / own:.1f}% of a job here"),
    ]
    print(f"`ftmatrix run --launcher {args.launcher}`: {n} tiny jobs, {args.epochs} epochs each")
    for name, seconds, note in rows:
        print(f"{name:30s} {seconds:7.2f} s   {note}")
    print(f"the per-job part is 10% of jobs of {per_job / 0.1:.1f} s; the start-up is 10% of")
    print(f"a run of {startup / 0.1:.0f} s of jobs (wall / own here: {wall / own:.2f}x)")


if __name__ == "__main__":
    main()

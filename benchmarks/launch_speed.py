"""Per-job launch overhead: the fork server vs a fresh interpreter per job vs calling the
trainer in this process (torch already imported: the floor no launcher can beat).

Each job is the same tiny one (one-layer ViT on 300 digits, one epoch, `log_every: 1`),
in its own folder, started through the launcher API exactly as `attempt.run` does
(config written, lock claimed, `launcher.start(job_dir, env=..., lock_fd=...)`), waited
for to the end, one at a time. The three launchers take turns job by job, so a slow
moment of this shared machine falls on all of them alike.

Overhead of a job = the `time` of its first `step` event in progress.jsonl minus the
moment the runner asked to start it. The issue's wording is "to the first training
step", and the step event is the first sign that the job trained: it is written after
the first optimizer step, so it also counts what a fresh process pays lazily on its
first forward and backward (kernel and autograd set-up), which the earlier `start`
event (after data and model set-up, before the first batch) would not. Both are
printed. The overhead includes the job's own set-up (reading digits, building the
model) and one tiny step, the same work in all three; the floor is that work alone.

The fork server's one-time warm-up (a fresh interpreter importing torch, transformers
and peft, then one trivial fork) is measured apart and is not in the per-job figures:
`ftmatrix run` starts it before it validates and plans the matrix. One uncounted job per
launcher goes first, so the in-process floor has its lazy imports done (the most
demanding floor) and the spawned interpreters find their files in the page cache.

    .venv/bin/python benchmarks/launch_speed.py [JOBS]     (default 10)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.tiny

from tests.tiny import MICRO_VIT  # the runner tests' one-layer ViT

JOBS = 10
CONFIG = {
    "task": "image-classification",
    "data": {"builtin": "digits", "limit": 300},
    "model": MICRO_VIT,
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.003, "log_every": 1},
}


def first_events(job_dir: Path) -> tuple[float, float]:
    """Unix times of the job's first `start` and first `step` events."""
    times: dict[str, float] = {}
    for line in (job_dir / "progress.jsonl").read_text().splitlines():
        event = json.loads(line)
        times.setdefault(event["event"], event["time"])
    return times["start"], times["step"]


def new_job(root: Path, name: str) -> Path:
    job_dir = root / name
    job_dir.mkdir(parents=True)
    (job_dir / "config.json").write_text(json.dumps(CONFIG))
    return job_dir


def launched(launcher, job_dir: Path) -> tuple[float, float]:
    """(to start, to first step) seconds for one job run through `launcher`."""
    from ftmatrix.runner import store

    claim = store.claim(job_dir)
    try:
        asked = time.time()
        handle = launcher.start(job_dir, env=dict(os.environ), lock_fd=claim.fd)
        while (code := handle.poll()) is None:
            time.sleep(0.01)
    finally:
        claim.release()
    if code != 0:
        sys.exit(f"{job_dir.name} exited with {code}:\n{(job_dir / 'log.txt').read_text()}")
    start, step = first_events(job_dir)
    return start - asked, step - asked


def in_process(job_dir: Path) -> tuple[float, float]:
    from ftmatrix.trainers.job import main

    asked = time.time()
    with contextlib.redirect_stdout(io.StringIO()):  # a launched job's goes to log.txt
        code = main(job_dir)
    if code != 0:
        sys.exit(f"{job_dir.name} failed in process:\n{(job_dir / 'result.json').read_text()}")
    start, step = first_events(job_dir)
    return start - asked, step - asked


def warm_up_fork_server() -> float:
    """Seconds until the server has imported its preloads and forked a first child."""
    from multiprocessing import forkserver

    from ftmatrix.runner.launchers.forkserver import ForkServerLauncher

    launcher = ForkServerLauncher()  # registers the preload list
    began = time.perf_counter()
    forkserver.ensure_running()
    child = launcher.ctx.Process(target=os.getpid)  # answered once the preloads are in
    child.start()
    child.join()
    return time.perf_counter() - began


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else JOBS
    import torch  # noqa: F401  (the floor: this process has paid for its imports)

    from ftmatrix.runner.launchers.forkserver import ForkServerLauncher
    from ftmatrix.runner.launchers.spawn import SpawnLauncher

    warm_up = warm_up_fork_server()
    sides = {
        "in-process call (floor)": in_process,
        "fork server": lambda d, launcher=ForkServerLauncher(): launched(launcher, d),
        "fresh interpreter (spawn)": lambda d, launcher=SpawnLauncher(): launched(launcher, d),
    }
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs" / "launch"
        for i in range(jobs + 1):  # job 0 of each side is the uncounted warm one
            for k, (name, run) in enumerate(sides.items()):
                figures = run(new_job(root, f"{k}-{i}"))
                if i:
                    measured[name].append(figures)
    start = {name: statistics.median(s for s, _ in m) for name, m in measured.items()}
    step = {name: statistics.median(s for _, s in m) for name, m in measured.items()}
    floor, fork, spawn = (step[name] for name in sides)
    cores = os.cpu_count()
    print(f"per-job launch overhead, {jobs} jobs per launcher, medians, CPU ({cores} cores)")
    print("job: one-layer ViT on 300 digits, 1 epoch; seconds from start() to the event")
    print(f"{'':28s} {'first step':>10s} {'start event':>12s}")
    for name in sides:
        print(f"{name:28s} {step[name]:9.2f}s {start[name]:11.2f}s")
    print(f"fork server warm-up, once per run (not above): {warm_up:.2f} s")
    print(f"fork server - floor   = {fork - floor:+.2f} s   (target < 0.5 s)")
    print(f"spawn / fork server   = {spawn / fork:.1f}x   (target > 10x)")
    print(f"spawn - floor         = {spawn - floor:+.2f} s")
    print(
        f"overheads over the floor, spawn / fork server = {(spawn - floor) / (fork - floor):.0f}x"
    )


if __name__ == "__main__":
    main()

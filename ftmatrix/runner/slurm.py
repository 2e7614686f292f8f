"""Run a plan on a Slurm cluster through submitit, on the same store, ids and resume rules.

Submission: the jobs to run go to Slurm as one job array per `ftmatrix run` (one sbatch
call, however many jobs; `max_running` becomes the array's `%N` throttle). Each array
task runs `run_job(job_dir)` — the same trainer entry as a local job — on the job folder,
which must be on a filesystem the nodes share. submitit's own files (the pickled call,
its stdout/stderr) live in `runs/<matrix>/.slurm/`.

Claims: the per-job kernel lock is held only while a job is checked and submitted;
after that `slurm.json` in the job folder (its Slurm job id) is the claim. A later
`ftmatrix run` or `ftmatrix status` reads it: a job still queued or running is followed
(re-attached), never submitted again.

Outcomes: result.json when the trainer wrote one; otherwise the Slurm state, read with
sacct (submitit's watcher, so accounting must be on), decides the error class: TIMEOUT
-> timeout (the epoch checkpoint is kept: `--retry-failed` resubmits and it resumes),
CANCELLED -> cancelled, OUT_OF_MEMORY -> oom, NODE_FAIL -> node_failure, PREEMPTED ->
preempted (a requeued job is simply followed), anything else -> crash.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ftmatrix.job import CODE_DIR
from ftmatrix.matrix.executors import SlurmSpec
from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.matrix.select import select
from ftmatrix.result import PROGRESS, SLURM_RECORD, DamagedFile, read_json_object, write_json_atomic
from ftmatrix.runner import attempt, store
from ftmatrix.runner.attempt import INTERRUPTED, Options, follow_progress, record_failure
from ftmatrix.runner.launchers import process
from ftmatrix.runner.progress import Plain

UNKNOWN_GRACE = 120.0  # seconds a job may be in neither squeue nor sacct (accounting lag)
SUBMITIT = ".slurm"
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "RESIZING", "SUSPENDED")
# Slurm's end states with no result.json -> our error class
FAILURES = {
    "TIMEOUT": "timeout",
    "CANCELLED": "cancelled",
    "OUT_OF_MEMORY": "oom",
    "NODE_FAIL": "node_failure",
    "PREEMPTED": "preempted",
}


def run_job(job_dir: str, env: dict[str, str] | None = None) -> int:
    """What each Slurm task runs: the trainer on its job folder, output to log.txt,
    with `env` added to its environment (the runner's FTMATRIX_CODE_DIR and --env, as a
    local job gets them: own code resolves from the matrix's folder, not the node's cwd).

    Its import path is pinned: submitit pickled `ftmatrix.runner.slurm.run_job` into
    every queued task, so it must resolve in later versions too (and `env` stays
    optional: a task queued by an older version passes none)."""
    os.environ.update(env or {})
    # submitit signals USR2 before the time limit to offer a requeue; a plain job would
    # then die with an exception mid-epoch. Ignore it: at the limit Slurm sends SIGTERM,
    # which the trainer turns into a clean stop with its checkpoint kept.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    process.log_header(job_dir, "slurm")
    process.redirect_output(job_dir)
    from ftmatrix.trainers.job import main

    return main(job_dir)


def read_record(job_dir: Path) -> dict | None:
    """slurm.json: the Slurm job a job folder was submitted as; None when there is
    none, or it is damaged (the job then counts as never submitted)."""
    try:
        record = read_json_object(job_dir / SLURM_RECORD)
    except DamagedFile:
        return None
    if record is None or not isinstance(record.get("job_id"), str):
        return None
    return record


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm job id -> its state: PENDING, RUNNING, ... while squeue shows it (straight
    from slurmctld, so a job submitted a moment ago is there), else how it ended as
    sacct reports it (TIMEOUT, CANCELLED, ...; submitit's watcher), else UNKNOWN."""
    import subprocess

    import submitit

    if not job_ids:
        return {}
    states: dict[str, str] = {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(job_ids)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        states[job_id.strip()] = state.strip().upper()
    rest = [j for j in job_ids if j not in states]
    if rest:
        watcher = submitit.SlurmJob.watcher
        for job_id in rest:
            watcher.register_job(job_id)
        watcher.update()
        for job_id in rest:
            states[job_id] = watcher.get_state(job_id, mode="cache").split(" ")[0].upper()
    return states


def _executor(root: Path, plan: Plan, spec: SlurmSpec):
    import submitit

    executor = submitit.SlurmExecutor(folder=root / SUBMITIT / "%j", max_num_timeout=0)
    params = {
        "job_name": f"ftmatrix-{plan.name}",
        "time": spec.time,
        "cpus_per_task": spec.cpus_per_job,
        "array_parallelism": spec.max_running,
        "stderr_to_stdout": True,
        "additional_parameters": dict(spec.sbatch_args),
    }
    optional = {
        "partition": spec.partition,
        "gpus_per_node": spec.gpus_per_job or None,
        "mem": f"{spec.mem_gb:g}GB" if spec.mem_gb else None,
        "account": spec.account,
        "qos": spec.qos,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    executor.update_parameters(**params)
    return executor


def run(
    plan: Plan,
    *,
    root: Path,
    options: Options,
    spec: SlurmSpec,
    display: Plain,
    detach: bool = False,
    target: str | None = None,
) -> int:
    """Submit what is left of the plan and follow it; the exit code as for local runs.
    `target` names the run in the commands it suggests (`ftmatrix status TARGET`)."""
    target = target or plan.name
    jobs = select(plan.jobs, options.only)
    attached: dict[str, str] = {}  # our job id -> Slurm job id, still in the queue
    records = {j.id: read_record(root / j.id) for j in jobs}
    live = queue_states([r["job_id"] for r in records.values() if r])
    states = attempt.states(jobs, root=root, display=display)
    for job in jobs:
        record = records[job.id]
        if record and live.get(record["job_id"]) in ACTIVE and not store.read_status(root / job.id):
            attached[job.id] = record["job_id"]
    queue = [
        j
        for j in jobs
        if j.id not in attached and attempt.todo(_state(states[j.id], records[j.id]), options)
    ]
    if not attempt.checked(queue, plan=plan, root=root, display=display):
        return 2
    store.prepare(plan, root)
    display.start(len(jobs), len(queue) + len(attached))
    if attached:
        display.say(f"re-attached to {len(attached)} job(s) already on the cluster")
    attached.update(_submit(plan, queue, root=root, spec=spec, options=options))
    if detach:
        display.close()
        display.console.print(
            f"submitted; {len(attached)} job(s) on the cluster. Follow with `ftmatrix status "
            f"{target}`; `ftmatrix run` again collects the results."
        )
        return 0
    by_id = {j.id: j for j in jobs}
    try:
        _follow_queue(attached, by_id, root=root, spec=spec, display=display)
    except KeyboardInterrupt:
        display.close()
        display.console.print(
            "stopped following; the jobs go on on the cluster. `ftmatrix run` again "
            f"re-attaches, `ftmatrix cancel {target}` cancels them."
        )
        return INTERRUPTED
    display.close()
    return attempt.summary(jobs, root=root, display=display)


def _state(state: str, record: dict | None) -> str:
    """A job's state for the submit decision: a job that was submitted but left the
    queue without a result is interrupted (resumable), like a killed local job."""
    if record and state == "pending":
        return "interrupted"
    return state


def _submit(plan: Plan, queue: list[Job], *, root: Path, spec: SlurmSpec, options: Options) -> dict:
    """One job array for the queue; each job claimed by its lock while it is checked
    and recorded, so two runners never submit the same job."""
    claims, chosen = [], []
    try:
        for job in queue:
            job_dir = root / job.id
            claim = store.claim(job_dir)
            if claim is None:
                continue  # another runner is submitting or running it
            claims.append(claim)
            record = read_record(job_dir)
            if record and queue_states([record["job_id"]]).get(record["job_id"]) in ACTIVE:
                continue  # submitted meanwhile
            if options.force or store.state(job_dir, claimed=True) == "failed":
                store.reset(job_dir, fresh=options.force)
            store.write_config(job, job_dir, base_dir=plan.path.parent)
            chosen.append(job)
        if not chosen:
            return {}
        executor = _executor(root, plan, spec)
        env = {**options.env, CODE_DIR: str(plan.path.parent.resolve())}  # as attempt.run's
        with executor.batch():
            submitted = [
                executor.submit(run_job, str((root / j.id).resolve()), env) for j in chosen
            ]
        ids = {}
        for job, sjob in zip(chosen, submitted, strict=True):
            write_json_atomic(
                root / job.id / SLURM_RECORD,
                {"job_id": sjob.job_id, "submitted": time.time(), "folder": SUBMITIT},
            )
            ids[job.id] = sjob.job_id
        return ids
    finally:
        for claim in claims:
            claim.release()


def _follow_queue(attached: dict[str, str], jobs: dict[str, Job], *, root, spec, display) -> None:
    """Wait for every attached job to leave the queue; record those without a result."""
    offsets: dict[str, int] = {}
    started: dict[str, float] = {}
    unknown: dict[str, float] = {}  # left the queue, not yet in the accounting
    while attached:
        states = queue_states(list(attached.values()))
        for our_id, slurm_id in list(attached.items()):
            job, job_dir = jobs[our_id], root / our_id
            state = states.get(slurm_id, "UNKNOWN")
            if state == "UNKNOWN":
                since = unknown.setdefault(our_id, time.monotonic())
                if time.monotonic() - since < UNKNOWN_GRACE:
                    continue
                state = "LOST"  # neither squeue nor sacct knows it: it is gone
            if state in ("PENDING", "REQUEUED"):
                continue
            if our_id not in started:  # running, or already over between two polls
                started[our_id] = time.monotonic()
                display.job_started(job)
            offsets[our_id] = follow_progress(
                job_dir / PROGRESS, offsets.get(our_id, 0), job, display
            )
            if state in ACTIVE:
                continue
            result = store.read_status(job_dir)
            if result is None:
                error = FAILURES.get(state, "crash")
                result = record_failure(job_dir, error, f"Slurm job {slurm_id} ended {state}")
            seconds = result.timing.get("total") or (time.monotonic() - started[our_id])
            display.job_finished(job, result.status, result, seconds)
            del attached[our_id]
        if attached:
            time.sleep(spec.poll)


def _unfinished(root: Path) -> dict[str, dict]:
    """Job id -> slurm.json of each job of the run folder submitted to Slurm that has
    no result."""
    return {
        p.name: r
        for p in sorted(root.iterdir())
        if p.is_dir() and (r := read_record(p)) and store.read_status(p) is None
    }


def collect(root: Path, *, unknown_since: dict[str, float] | None = None) -> int:
    """Record how each Slurm job of the run folder that has left the queue without a
    result ended (what a followed run would have recorded); the number still on the
    cluster. Called again and again (`status --follow`), `unknown_since` remembers jobs
    in neither squeue nor sacct yet (accounting lags): on the cluster for UNKNOWN_GRACE
    seconds, lost after that."""
    records = _unfinished(root)
    states = queue_states([r["job_id"] for r in records.values()])
    active = 0
    for our_id, record in records.items():
        state = states.get(record["job_id"], "UNKNOWN")
        if state == "UNKNOWN":
            if unknown_since is None:
                continue
            since = unknown_since.setdefault(our_id, time.monotonic())
            if time.monotonic() - since < UNKNOWN_GRACE:
                active += 1
                continue
            state = "LOST"
        if state in ACTIVE:
            active += 1
        elif store.read_status(root / our_id) is None:
            error = FAILURES.get(state, "crash")
            record_failure(root / our_id, error, f"Slurm job {record['job_id']} ended {state}")
    return active


def cancel(root: Path) -> list[str]:
    """scancel every queued or running job of the run folder; the Slurm ids cancelled.
    Finished results are untouched; a cancelled job is recorded as failed: cancelled."""
    import submitit

    records = _unfinished(root)
    live = queue_states([r["job_id"] for r in records.values()])
    cancelled = []
    for our_id, record in records.items():
        slurm_id = record["job_id"]
        if live.get(slurm_id) in ACTIVE:
            submitit.SlurmJob(root / SUBMITIT / slurm_id.split("_")[0], slurm_id).cancel(
                check=False
            )
            record_failure(root / our_id, "cancelled", f"Slurm job {slurm_id} cancelled")
            cancelled.append(slurm_id)
    return cancelled

"""Run a matrix's `search:` block: for each grid point, an optuna study driven by
ask/tell, whose trials are ordinary jobs.

A trial: ask -> its settings applied to the point's config (validated like any job) ->
the job id by the usual scheme -> a job that already finished is told from its
result.json and never trained again; otherwise the job runs through
`attempt.run` (same claim, launcher and records as any job) while its epochs are
reported to the pruner, and the outcome is told: the metric, pruned, or failed.

Budget: a study is finished when it holds `trials` finished trials — complete, pruned
or failed (a failed setting is an answer too; counting it keeps a setting that always
fails from being drawn without end). Strategy grid stops earlier when every setting
has been tried. `--retry-failed` draws the settings of failed trials again, as new
trials that take their place in the budget.

Stale trials: a runner killed mid-trial leaves its trial RUNNING in search.db. A
RUNNING trial whose job lock is free (neither a runner nor the job process holds it)
is taken over by the next runner: the job resumes from its checkpoint (or, if it
finished meanwhile, its result is read) and the trial is told. It keeps its number and
its settings, so a kill neither eats budget nor changes what is drawn next. A trial
whose job is still running elsewhere is waited for.

Reproducible: the sampler that draws trial k is seeded from (seed, k). Given the same
results of earlier trials, a study that was killed and resumed draws what one run
straight through draws (a sampler seeded once per process would restart its random
stream after a resume and draw its first settings again). Strategy grid keeps one
shuffle of the grid by `seed`; trial k takes its k-th setting.

Pruning: the runner reads each new epoch of a trial's job, reports the validation
metric that stands for `metric` to the study and asks the pruner; a rejected job is
stopped like at Ctrl-C (its checkpoint stays) and recorded with status "pruned", which
is not a failure; its trial is told PRUNED.

Several runners may share a study: drawing a trial and claiming its job happen under
one lock file per study, so no two runners take the same trial.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftmatrix.matrix import search
from ftmatrix.matrix.plan import Job, Plan
from ftmatrix.matrix.select import select
from ftmatrix.result import DamagedFile, read_metrics
from ftmatrix.runner import attempt, sampling, store, studies
from ftmatrix.runner.attempt import CtrlC, Options
from ftmatrix.runner.launchers.process import Launcher
from ftmatrix.runner.progress import Plain

WAIT = "wait"  # every trial of the budget is drawn, some still run elsewhere


@dataclass
class _Task:
    """A drawn (or taken over) trial and its claimed job; claim None: a trial with the
    same settings is training it elsewhere."""

    trial: object  # optuna.trial.Trial
    job: Job
    claim: store.Claim | None
    reported: set[int] = field(default_factory=set)  # epochs the study already has


def seed_of(seed: int, number: int) -> int:
    """The sampler seed for trial `number` of a study searched with `seed`."""
    digest = hashlib.sha256(f"{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sampler_for(spec: search.SearchSpec, dists: list[search.Dist], number: int):
    """The sampler that draws trial `number`. Strategy grid keeps `seed` itself: its
    order is one shuffle of the grid by that seed, and trial k takes the k-th setting."""
    if spec.strategy == "grid":
        return sampling.sampler(spec, dists)
    return sampling.sampler(spec.model_copy(update={"seed": seed_of(spec.seed, number)}), dists)


class _Pruning:
    """Watches a trial's job: reports each epoch's validation metric to the study and
    asks the pruner whether to go on (never at the last epoch: only the test is left)."""

    def __init__(self, task: _Task, key: str, epochs: int):
        self.task, self.key, self.epochs = task, key, epochs

    def __call__(self, event: dict) -> str | None:
        if event.get("event") != "epoch" or event.get(self.key) is None:
            return None
        epoch, value = int(event["epoch"]), float(event[self.key])
        if epoch not in self.task.reported:
            self.task.trial.report(value, epoch)
            self.task.reported.add(epoch)
        if epoch < self.epochs and self.task.trial.should_prune():
            return f"pruned at epoch {epoch}: {self.key} {value:.4f}"
        return None


class PointSearch:
    """The study of one grid point."""

    def __init__(self, plan: Plan, point: Job, *, root: Path, storage):
        import optuna

        self.spec, self.dists = plan.spec.search, plan.search
        self.point, self.root = point, root
        self.name = studies.study_name(point, self.spec, self.dists)
        self.study = optuna.create_study(
            storage=storage,
            study_name=self.name,
            direction=self.spec.direction,
            sampler=sampler_for(self.spec, self.dists, 0),
            pruner=sampling.pruner(self.spec),
            load_if_exists=True,
        )
        if "point" not in self.study.user_attrs:
            self.study.set_user_attr("point", point.id)
            self.study.set_user_attr("label", point.label)
        self.budget = studies.budget(self.spec, self.dists)
        self.lock = root / f".search-{self.name}.lock"

    def finished(self, trials=None) -> int:
        """Finished trials that count: complete, pruned, failed (but not failed ones
        that --retry-failed drew again)."""
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        retried = {t.user_attrs.get("retry_of") for t in trials}
        return sum(
            1 for t in trials if t.state.name in studies.FINISHED and t.number not in retried
        )

    def next(self, options: Options) -> _Task | str | None:
        """The next trial to run: a stale one, else a new one; WAIT, or None when the
        budget is spent. Under the study's lock."""
        from optuna.trial import TrialState

        with store.locked(self.lock):
            while True:  # until a trial makes a valid job
                trials = self.study.get_trials(deepcopy=False)
                running = [t for t in trials if t.state == TrialState.RUNNING]
                stale = next((t for t in running if self._stale(t)), None)
                if stale is not None:
                    task = self._take(stale, options)  # its runner died: take it over
                else:
                    if options.retry_failed and self._enqueue_failed(trials):
                        trials = self.study.get_trials(deepcopy=False)  # one failed less
                    if self.finished(trials) + len(running) >= self.budget:
                        return WAIT if running else None
                    self.study.sampler = sampler_for(self.spec, self.dists, len(trials))
                    task = self._take(self.study.ask(), options)
                if task is not None:
                    return task

    def _stale(self, trial) -> bool:
        """A RUNNING trial that nobody runs: its job's lock is free (or, cut off while
        its settings were drawn, it has no job yet; drawing happens under our lock)."""
        job, _ = studies.trial_job(self.point, self.dists, trial.params)
        return job is None or not store.is_locked(self.root / job.id)

    def _take(self, trial, options: Options) -> _Task | None:
        """Draw (or read back) a trial's settings and claim its job; None when the
        settings make no valid job (the trial is told failed)."""
        from optuna.trial import FrozenTrial, TrialState

        reported: set[int] = set()
        if isinstance(trial, FrozenTrial):
            reported = set(trial.intermediate_values)
            # settings cut short by a kill are drawn as the first runner would have
            self.study.sampler = sampler_for(self.spec, self.dists, trial.number)
            trial = sampling.reopen(self.study, trial)
        for d in self.dists:
            d.suggest(trial)
        job, why = studies.trial_job(self.point, self.dists, trial.params)
        if job is None:
            trial.set_user_attr("error", why)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
        if trial.user_attrs.get("job") != job.id:
            trial.set_user_attr("job", job.id)
        return _Task(trial, job, store.claim(self.root / job.id), reported)

    def _enqueue_failed(self, trials) -> bool:
        """--retry-failed: queue the settings of one failed trial whose job failed, as
        a new trial that takes its place; False when there is none."""
        from optuna.trial import TrialState

        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            if t.state != TrialState.FAIL or t.number in retried:
                continue
            job, _ = studies.trial_job(self.point, self.dists, t.params)
            if job is not None and store.state(self.root / job.id) == "failed":
                self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
                return True
        return False

    def run(
        self,
        task: _Task,
        *,
        base_dir: Path,
        launcher: Launcher,
        options: Options,
        display: Plain,
        ctrl_c: CtrlC,
    ) -> str:
        """Run (or read) the trial's job and tell the study; the trial's state:
        complete, pruned, fail, or interrupted (left RUNNING for the next run)."""
        job, job_dir = task.job, self.root / task.job.id
        claim = task.claim
        while claim is None:  # the same settings train in another trial: wait for them
            if ctrl_c.count:
                return "interrupted"
            time.sleep(0.5)
            claim = store.claim(job_dir)
        try:
            state = store.state(job_dir, claimed=True)
            key = search.epoch_metric(self.spec.metric)
            watch = _Pruning(task, key, job.config.train.epochs)
            verdict = None
            for line in _epochs(job_dir):  # epochs trained before (resumed, finished)
                verdict = watch({"event": "epoch", **line.model_dump()})
            if attempt.todo(state, options) and verdict and not options.force:
                pruned = attempt.record_pruned(job_dir, verdict)  # where it was cut off
                display.job_finished(job, "pruned", pruned, 0.0)
            elif attempt.todo(state, options):
                state = attempt.run(
                    job,
                    job_dir=job_dir,
                    claim=claim,
                    base_dir=base_dir,
                    launcher=launcher,
                    options=options,
                    display=display,
                    ctrl_c=ctrl_c,
                    watch=watch,
                )
                if state == "interrupted":
                    return state
            else:
                display.say(f"{job.label or job.id}: {state} before; told from its result")
        finally:
            claim.release()
        return _tell(self, task.trial, job_dir)


def _tell(search: PointSearch, trial, job_dir: Path) -> str:
    """Tell the study how the trial's job ended; the trial's state."""
    from optuna.trial import TrialState

    study, spec = search.study, search.spec
    result = store.read_status(job_dir)
    status = result.status if result is not None else None
    if result is not None and status == "done":
        value = studies.metric_value(result, job_dir, spec)
        if value is not None:
            study.tell(trial, value, skip_if_finished=True)
            return "complete"
        trial.set_user_attr("error", f"the job's result has no {spec.metric}")
    elif status == "pruned":
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        return "pruned"
    else:
        trial.set_user_attr("error", (result and result.error_class) or "crash")
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    return "fail"


def _epochs(job_dir: Path) -> list:
    """The job's epochs so far; none when metrics.jsonl is damaged (the job then runs
    and its pruner sees the epochs as they come)."""
    try:
        return read_metrics(job_dir)
    except DamagedFile:
        return []


def run(
    plan: Plan,
    *,
    root: Path,
    options: Options,
    display: Plain,
    launcher: Launcher,
) -> int:
    """Run the search of every selected grid point to its budget; the exit code
    (0 done, 1 some trial failed, 2 bad input, 130 interrupted)."""
    points = select(plan.jobs, options.only)
    if not attempt.checked(points, plan=plan, root=root, display=display, launcher=launcher):
        return 2
    store.prepare(plan, root)
    storage = studies.storage(root)
    searches = [PointSearch(plan, p, root=root, storage=storage) for p in points]
    total = sum(s.budget for s in searches)
    display.start(total, total - sum(min(s.finished(), s.budget) for s in searches))
    studies.write(root, plan, storage)
    ctrl_c = CtrlC()
    failed = 0
    try:
        for s in searches:
            waiting = False
            while not ctrl_c.count and not (options.fail_fast and failed):
                task = s.next(options)
                if task is None:
                    break
                if task == WAIT:
                    if not waiting:
                        display.say(f"waiting for trials of {s.name} running in another process")
                    waiting = True
                    time.sleep(1.0)
                    continue
                waiting = False
                studies.write(root, plan, storage)  # status lists the running trial
                state = s.run(
                    task,
                    base_dir=plan.path.parent,
                    launcher=launcher,
                    options=options,
                    display=display,
                    ctrl_c=ctrl_c,
                )
                failed += state == "fail"
                studies.write(root, plan, storage)
    finally:
        ctrl_c.restore()
        display.close()
    if ctrl_c.count:
        display.console.print(
            "interrupted: finished trials are kept; run the same command again to resume."
        )
        return attempt.INTERRUPTED
    summary = studies.write(root, plan, storage)
    chosen = {p.id for p in points}
    summary["points"] = [p for p in summary["points"] if p["id"] in chosen]
    counts: dict[str, int] = {}
    for t in (t for p in summary["points"] for t in p["trials"] if not t["retried"]):
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    display.console.print(
        "summary: trials " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        highlight=False,
    )
    for line in studies.best_lines(summary):
        display.console.print(line, markup=False, highlight=False)
    if counts.get("fail"):
        display.console.print("draw failed trials again with --retry-failed", highlight=False)
        return 1
    return 0 if all(s.finished() >= s.budget for s in searches) else 1

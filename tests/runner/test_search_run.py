"""Running a search: budget, resume after a kill, reproducible draws, pruning, retries.

Jobs are the tiny ViT of helpers.py on a few hundred digits. The runs here are
in-process (one fork server for the whole module, so torch is imported once), except
the kill test, which needs a runner process to SIGKILL.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from rich.console import Console

from ftmatrix.config import JobConfig
from ftmatrix.matrix import plan
from ftmatrix.result import SEARCH_DB, read_result, read_search
from ftmatrix.runner import progress, studies, tune
from ftmatrix.runner.attempt import Options
from ftmatrix.runner.launchers.forkserver import ForkServerLauncher
from ftmatrix.runner.status import collect
from tests.tiny import MICRO_VIT

from .helpers import job_pids, wait_for

pytestmark = pytest.mark.slow
MATRICES = Path(__file__).parents[2] / "matrices"

TINY_BASE = {
    "data": {"builtin": "digits", "limit": 300},
    "model": MICRO_VIT,
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.003},
}

SEARCH = """
search:
  strategy: random
  trials: {trials}
  seed: 7
  space:
    train.lr: {{loguniform: [0.0005, 0.01]}}
    train.batch_size: {{choice: [32, 64]}}
"""


def write(tmp_path, *, trials: int = 3, epochs: int = 2, extra: str = "") -> object:
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": epochs}}
    text = yaml.safe_dump({"name": "tiny", "runs_dir": "runs", "base": base}, sort_keys=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(text + SEARCH.format(trials=trials) + extra)
    return path


@pytest.fixture(scope="module")
def forkserver():
    return ForkServerLauncher()


def run(path, launcher, **options) -> tuple[int, str]:
    out = io.StringIO()
    p = plan.load_plan(path)
    code = tune.run(
        p,
        root=path.parent / "runs" / p.name,
        options=Options(**options),
        display=progress.Plain(Console(file=out, width=200)),
        launcher=launcher,
    )
    return code, out.getvalue()


def starts(job_dir) -> list[str]:
    log = job_dir / "starts.log"
    return log.read_text().splitlines() if log.exists() else []


def trials_of(root) -> list[optuna.trial.FrozenTrial]:
    summary = read_search(root)
    storage = optuna.storages.RDBStorage(f"sqlite:///{root / SEARCH_DB}")
    (point,) = summary["points"]
    return optuna.load_study(study_name=point["study"], storage=storage).get_trials()


def drawn(path, n: int) -> list[str]:
    """The job ids the first n trials of the (random) search will draw: with the random
    sampler they do not depend on results, so an in-memory study can tell."""
    p = plan.load_plan(path)
    study = optuna.create_study(direction="maximize")
    jobs = []
    for number in range(n):
        study.sampler = tune.sampler_for(p.spec.search, p.search, number)
        trial = study.ask()
        for d in p.search:
            d.suggest(trial)
        jobs.append(studies.trial_job(p.jobs[0], p.search, trial.params)[0].id)
        study.tell(trial, 0.0)
    return jobs


def test_the_nni_tuner_study_runs_for_each_grid_point_and_a_rerun_trains_nothing(
    tmp_path, forkserver
):
    """matrices/tuner-tpe.yaml's search (NNI space, TPE) on the tiny model, for two grid
    points: each point's study runs exactly its budget of distinct trials."""
    tuner = yaml.safe_load((MATRICES / "tuner-tpe.yaml").read_text())
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "optimizer": "sgd", "epochs": 1}}
    matrix = {
        "name": "tuner",
        "runs_dir": "runs",
        "base": base,
        "grid": {"lora.enabled": [False, True]},
        "search": {**tuner["search"], "trials": 2},
    }
    path = tmp_path / "tuner.yaml"
    path.write_text(yaml.safe_dump(matrix))
    code, out = run(path, forkserver)
    assert code == 0, out
    root = tmp_path / "runs" / "tuner"
    summary = read_search(root)
    assert [p["label"] for p in summary["points"]] == ["lora=false", "lora=true"]
    jobs = [t["job"] for p in summary["points"] for t in p["trials"]]
    assert len(set(jobs)) == 4
    assert all(t["state"] == "complete" for p in summary["points"] for t in p["trials"])
    for point in summary["points"]:
        for t in point["trials"]:
            result = read_result(root / t["job"])
            assert result.status == "done" and t["value"] == result.test.accuracy
            config = JobConfig.model_validate_json((root / t["job"] / "config.json").read_text())
            assert config.lora.enabled == (point["label"] == "lora=true")
            assert config.train.batch_size in (8, 16, 32, 64, 128)
            assert 0.0001 <= config.train.lr <= 0.1
            assert config.train.optimizer.momentum in [0.1 * k for k in range(1, 10)]
        best = max(point["trials"], key=lambda t: t["value"])
        assert point["best"] == best["number"]
    assert "summary: trials 4 complete" in out and "best so far: trial" in out

    # plan.json lists the trials as jobs: status and reports see them like any job
    rows = collect(root).rows
    assert sorted(r.id for r in rows) == sorted(jobs) and {r.state for r in rows} == {"done"}

    code, out = run(path, forkserver)  # the budget is spent: nothing trains again
    assert code == 0, out
    assert all(len(starts(root / j)) == 1 for j in jobs)
    storage = optuna.storages.RDBStorage(f"sqlite:///{root / SEARCH_DB}")
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    assert sorted(names) == sorted(p["study"] for p in summary["points"])
    for name in names:
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2


def test_a_search_killed_mid_trial_resumes_that_trial_and_ends_at_its_budget(tmp_path):
    """SIGKILL of the runner and of its job after two trials: the re-run takes over the
    third trial (its job resumes from its checkpoint), draws the fourth, and the study
    ends with exactly four distinct trials; no finished job is trained twice."""
    path = write(tmp_path, trials=4, epochs=2)
    jobs = drawn(path, 4)
    assert len(set(jobs)) == 4
    root = tmp_path / "runs" / "tiny"
    command = [sys.executable, "-m", "ftmatrix.cli", "run", str(path), "--launcher", "forkserver"]
    proc = subprocess.Popen(
        command,
        env={**os.environ, "FTMATRIX_FAULT": f"sleep@2:{jobs[2]}"},  # the third hangs
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = root / jobs[2] / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) == 1, 180)
    pids = job_pids(root / jobs[2])
    proc.kill()  # the runner and the job die at once
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert [read_result(root / j).status for j in jobs[:2]] == ["done", "done"]
    assert read_result(root / jobs[2]) is None
    states = [t.state.name for t in trials_of(root)]
    assert states == ["COMPLETE", "COMPLETE", "RUNNING"]  # the killed trial is stale

    again = subprocess.run(
        [*command, "--quiet"], capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stdout + again.stderr
    trials = trials_of(root)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert [t.user_attrs["job"] for t in trials] == jobs  # the same draws as unbroken
    assert all(len(starts(root / j)) == 1 for j in (jobs[0], jobs[1], jobs[3]))
    resumed = starts(root / jobs[2])
    assert len(resumed) == 2 and "start epoch=2 " in resumed[1]  # from its checkpoint
    assert read_result(root / jobs[2]).resumed_from_epoch == 1
    folders = {p.name for p in root.iterdir() if (p / "config.json").exists()}
    assert folders == set(jobs)


def draws(root, path, n: int, *, restart_at: int | None = None) -> list[dict]:
    """n trials of the search in `root`, told made-up values; with `restart_at`, the
    runner "restarts" there (new storage object, new samplers) and one trial is left
    RUNNING, as a kill mid-trial leaves it."""
    p = plan.load_plan(path)
    root.mkdir(parents=True, exist_ok=True)
    search = tune.PointSearch(p, p.jobs[0], root=root, storage=studies.storage(root))
    seen = []
    while len(seen) < n:
        task = search.next(Options())
        params = dict(task.trial.params)
        task.claim.release()
        if restart_at is not None and len(seen) == restart_at:
            restart_at = None  # killed before telling: the trial stays RUNNING
            search = tune.PointSearch(p, p.jobs[0], root=root, storage=studies.storage(root))
            continue
        seen.append(params)
        search.study.tell(task.trial, params["train.lr"] * 100 + params["train.batch_size"])
    return seen


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution"])
def test_a_fixed_seed_draws_the_same_trials_even_across_a_restart(tmp_path, strategy):
    path = write(tmp_path, trials=12)
    path.write_text(path.read_text().replace("strategy: random", f"strategy: {strategy}"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = draws(tmp_path / "a", path, 12)
    assert first == draws(tmp_path / "b", path, 12)
    assert first == draws(tmp_path / "c", path, 12, restart_at=5)
    if strategy != "evolution":  # (children of NSGA-II inherit their parents' values)
        assert len({p["train.lr"] for p in first}) == 12  # no draw repeated after a restart
    path.write_text(path.read_text().replace("seed: 7", "seed: 8"))
    assert first != draws(tmp_path / "d", path, 12)


@pytest.mark.parametrize("pruner", ["median", "asha"])
def test_pruning_stops_a_clearly_worse_trial_and_marks_it_pruned(tmp_path, forkserver, pruner):
    """Two earlier trials planted in the study reached 0.99 validation accuracy at every
    epoch (and passed ASHA's rungs with it); the tiny model's first epoch is far below,
    so the pruner stops it there."""
    path = write(tmp_path, trials=3, epochs=8, extra=f"  prune: {pruner}\n")
    p = plan.load_plan(path)
    root = tmp_path / "runs" / "tiny"
    root.mkdir(parents=True)
    search = tune.PointSearch(p, p.jobs[0], root=root, storage=studies.storage(root))
    for lr in (0.001, 0.002):
        search.study.add_trial(
            optuna.trial.create_trial(
                params={"train.lr": lr, "train.batch_size": 64},
                distributions={
                    "train.lr": optuna.distributions.FloatDistribution(0.0005, 0.01, log=True),
                    "train.batch_size": optuna.distributions.CategoricalDistribution([32, 64]),
                },
                value=0.99,
                intermediate_values={e: 0.99 for e in range(1, 9)},
                system_attrs={"completed_rung_0": 0.99},  # where ASHA keeps rung values
            )
        )
    code, out = run(path, forkserver)
    assert code == 0, out
    trial = trials_of(root)[-1]
    assert trial.state.name == "PRUNED" and list(trial.intermediate_values) == [1]
    job_dir = root / trial.user_attrs["job"]
    result = read_result(job_dir)
    # stopped as soon as the runner saw epoch 1 (a tiny epoch may finish meanwhile)
    assert result.status == "pruned" and 1 <= result.epochs_run < 8
    assert result.error_message.startswith("pruned at epoch 1: val_accuracy")
    assert len((job_dir / "metrics.jsonl").read_text().splitlines()) == result.epochs_run
    assert '"status": "interrupted"' in (job_dir / "progress.jsonl").read_text()
    assert "pruned — pruned at epoch 1" in out and "1 pruned" in out
    assert {r.id: r.state for r in collect(root).rows}[job_dir.name] == "pruned"


def test_a_failed_trial_counts_and_retry_failed_draws_its_settings_again(tmp_path, forkserver):
    path = write(tmp_path, trials=2, epochs=1)
    first, second = drawn(path, 2)
    root = tmp_path / "runs" / "tiny"
    code, out = run(path, forkserver, env={"FTMATRIX_FAULT": f"raise@1:{first}"})
    assert code == 1, out
    assert [t.state.name for t in trials_of(root)] == ["FAIL", "COMPLETE"]
    assert "--retry-failed" in out

    code, out = run(path, forkserver)  # the budget holds the failure: nothing to do
    assert code == 1 and [t.state.name for t in trials_of(root)] == ["FAIL", "COMPLETE"]

    code, out = run(path, forkserver, retry_failed=True)
    assert code == 0, out
    trials = trials_of(root)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].user_attrs == {"retry_of": 0, "job": first}
    assert read_result(root / first).status == "done" and len(starts(root / first)) == 2
    assert len(starts(root / second)) == 1
    lines = studies.best_lines(read_search(root))
    assert lines[0] == "search: 2/2 trials (2 complete)"


def test_report_and_status_of_a_search(tmp_path, forkserver):
    from typer.testing import CliRunner

    from ftmatrix.cli import app

    path = write(tmp_path, trials=3, epochs=1)
    code, out = run(path, forkserver)
    assert code == 0, out
    root = tmp_path / "runs" / "tiny"
    cli = CliRunner()
    status = cli.invoke(app, ["status", "tiny", "--runs-dir", str(tmp_path / "runs")])
    assert status.exit_code == 0, status.output
    assert "search: 3/3 trials (3 complete)" in status.output
    assert "best so far: trial" in status.output
    report = cli.invoke(app, ["report", "tiny", "--runs-dir", str(tmp_path / "runs")])
    assert report.exit_code == 0, report.output
    text = (root / "report.md").read_text()
    assert "## Search" in text and "Best trials by test.accuracy" in text
    assert "![search-trials-1](plots/search-trials-1.png)" in text
    assert (root / "plots" / "search-trials-1.png").exists()
    assert "Parameter importance" in text
    assert "### train.lr" not in text  # no effect table for a setting drawn from a range
    again = cli.invoke(app, ["report", "tiny", "--runs-dir", str(tmp_path / "runs")])
    assert again.exit_code == 0 and (root / "report.md").read_text() == text


def test_two_runners_never_take_the_same_trial_and_a_live_one_is_not_stale(tmp_path):
    """Two runners on one study (two PointSearch objects, as two processes would hold):
    a trial whose job is claimed is left alone; at the budget the other one waits."""
    path = write(tmp_path, trials=2)
    p = plan.load_plan(path)
    root = tmp_path / "runs" / "tiny"
    a, b = (tune.PointSearch(p, p.jobs[0], root=root, storage=studies.storage(root)) for _ in "ab")
    first = a.next(Options())
    second = b.next(Options())
    assert (first.trial.number, second.trial.number) == (0, 1)
    assert first.job.id != second.job.id and second.claim is not None
    assert a.next(Options()) == tune.WAIT  # both drawn, both still running
    first.claim.release()  # runner a dies: its trial is stale, b takes it over
    taken = b.next(Options())
    assert taken.trial.number == 0 and taken.job.id == first.job.id
    assert {t.number for t in b.study.trials} == {0, 1}  # nothing new was drawn


def test_strategy_grid_tries_every_setting_once_and_stops_there(tmp_path):
    path = write(tmp_path, trials=10)
    text = path.read_text().replace("strategy: random", "strategy: grid")
    path.write_text(text.replace("{loguniform: [0.0005, 0.01]}", "{choice: [0.001, 0.003]}"))
    p = plan.load_plan(path)
    root = tmp_path / "runs" / "tiny"
    search = tune.PointSearch(p, p.jobs[0], root=root, storage=studies.storage(root))
    assert search.budget == 4  # 2 x 2 settings, fewer than the 10 trials asked for
    seen = set()
    while (task := search.next(Options())) is not None:
        seen.add((task.job.config.train.lr, task.job.config.train.batch_size))
        task.claim.release()
        search.study.tell(task.trial, 0.5)
    assert seen == {(lr, b) for lr in (0.001, 0.003) for b in (32, 64)}
    assert len(search.study.trials) == 4

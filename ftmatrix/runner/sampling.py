"""optuna's half of a tuned search: the sampler for a strategy, the pruner for `prune`,
and `reopen` (a trial left RUNNING by a killed runner).
The `search:` block itself (schema, space, distributions) is `ftmatrix.matrix.search`."""

from __future__ import annotations

from ftmatrix.matrix.search import Dist, SearchSpec


def sampler(spec: SearchSpec, dists: list[Dist]):
    """The optuna sampler for a strategy (imports optuna)."""
    import optuna

    if spec.strategy == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.strategy == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed)
    if spec.strategy == "evolution":
        population = spec.population_size or max(2, min(spec.trials // 4, 50))
        return optuna.samplers.NSGAIISampler(seed=spec.seed, population_size=population)
    grid = {}
    for d in dists:
        values = d.grid_values()
        grid[d.path] = values if d.plain() else list(range(len(values)))

    class AskTellGrid(optuna.samplers.GridSampler):
        """optuna's GridSampler calls study.stop() once the grid is used up, which only
        works inside study.optimize (with ask/tell it raises); the runner's budget, the
        grid's size, ends a grid search instead."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return AskTellGrid(grid, seed=spec.seed)


def pruner(spec: SearchSpec):
    """The optuna pruner for `prune` (imports optuna). median: a trial stops when its
    validation metric at an epoch is worse than the median of earlier trials at that
    epoch, once min(5, trials // 4) trials (at least 1) have finished; asha: asynchronous
    successive halving (optuna's defaults: rungs from the first finished trial, a
    quarter of the trials go on at each rung)."""
    import optuna

    if spec.prune == "median":
        startup = max(1, min(5, spec.trials // 4))
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if spec.prune == "asha":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def reopen(study, frozen):
    """A live `optuna.trial.Trial` for a RUNNING trial of `study` that another runner
    drew and left (it was killed), so that this runner suggests, reports and tells it.

    optuna has no public way to do this: its own `Study.ask` builds
    `Trial(study, trial_id)`, and a FrozenTrial keeps the id privately. This is the one
    place that relies on both; where an optuna release changes them it raises at once
    (and tests/runner/test_sampling.py fails) instead of guessing."""
    import optuna

    trial_id = getattr(frozen, "_trial_id", None)
    if not isinstance(trial_id, int):
        raise RuntimeError(
            f"optuna {optuna.__version__}: a FrozenTrial no longer has _trial_id; "
            "ftmatrix.runner.sampling.reopen needs another way to reopen a trial"
        )
    trial = optuna.trial.Trial(study, trial_id)
    if trial.number != frozen.number:
        raise RuntimeError(
            f"optuna {optuna.__version__}: Trial(study, id) no longer reopens trial "
            f"{frozen.number} (got {trial.number}); see ftmatrix.runner.sampling.reopen"
        )
    return trial

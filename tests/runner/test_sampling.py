"""optuna's half of a search: the one seam into optuna's private API (`reopen`), which
must fail loudly when an optuna release changes what it relies on."""

from __future__ import annotations

import types

import optuna
import pytest

from ftmatrix.runner import sampling


def test_a_running_trial_left_by_a_killed_runner_is_reopened_with_its_number_and_settings():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    first = study.ask()
    first.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.ask()  # a second trial: the ids are not all 0
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == 0)
    assert frozen.state == optuna.trial.TrialState.RUNNING

    trial = sampling.reopen(study, frozen)
    assert isinstance(trial, optuna.trial.Trial)
    assert trial.number == 0
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == first.params["lr"]  # kept
    trial.report(0.5, 1)
    study.tell(trial, 0.75)
    told = study.get_trials(deepcopy=False)[0]
    assert told.state == optuna.trial.TrialState.COMPLETE and told.value == 0.75
    assert told.intermediate_values == {1: 0.5}


def test_reopen_fails_loudly_when_optuna_no_longer_has_what_it_relies_on():
    study = optuna.create_study()
    study.ask()
    changed = types.SimpleNamespace(number=0)  # a FrozenTrial without its private id
    with pytest.raises(RuntimeError, match="no longer has _trial_id"):
        sampling.reopen(study, changed)


def test_evolution_takes_nni_s_population_size_and_other_strategies_refuse_it():
    from pydantic import ValidationError

    from ftmatrix.matrix.search import SearchSpec

    given = SearchSpec(strategy="evolution", trials=40, population_size=8)
    assert sampling.sampler(given, [])._population_size == 8
    default = SearchSpec(strategy="evolution", trials=40)
    assert sampling.sampler(default, [])._population_size == 10  # a quarter of the trials
    with pytest.raises(ValidationError, match="population_size applies to strategy evolution"):
        SearchSpec(strategy="tpe", population_size=8)

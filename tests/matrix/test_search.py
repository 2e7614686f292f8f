"""The search block: NNI spaces, bounds, validation, and reproducible suggestions."""

from __future__ import annotations

import json
import textwrap

import optuna
import pytest

from ftmatrix.matrix import plan, search
from ftmatrix.matrix import spec as matrix
from ftmatrix.runner import sampling

NNI_SPACE = {
    "batch_size": {"_type": "choice", "_value": [16, 32, 64]},
    "epochs": {"_type": "randint", "_value": [1, 5]},
    "lr": {"_type": "loguniform", "_value": [1e-4, 0.1]},
    "weight_decay": {"_type": "uniform", "_value": [0.0, 0.01]},
    "label_smoothing": {"_type": "quniform", "_value": [0.0, 0.3, 0.05]},
    "grad_clip": {"_type": "qloguniform", "_value": [0.1, 10, 0.1]},
}


def write(tmp_path, text: str, **files: str):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


MATRIX = """
name: s
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
search:
  strategy: tpe
  trials: 5
"""


def test_every_supported_nni_type_parses_from_a_space_file(tmp_path):
    path = write(
        tmp_path, MATRIX + "  space_file: nni.json\n", **{"nni.json": json.dumps(NNI_SPACE)}
    )
    dists = {d.path: d for d in plan.load_plan(path).search}
    assert dists["train.batch_size"].values == (16, 32, 64)
    epochs = dists["train.epochs"]  # randint's upper bound is excluded
    assert (epochs.kind, epochs.low, epochs.high) == ("int", 1, 4)
    assert dists["train.lr"].kind == "loguniform"
    assert dists["train.optimizer.weight_decay"].kind == "uniform"
    assert dists["train.loss.label_smoothing"].step == 0.05
    assert dists["train.grad_clip"].kind == "qloguniform"


@pytest.mark.parametrize("kind", ["normal", "qnormal", "lognormal", "qlognormal"])
def test_unbounded_nni_types_are_refused_with_a_reason(kind):
    _, problems = search.parse_space({"train.lr": {"_type": kind, "_value": [0.01, 0.001]}})
    assert problems == [
        ("train.lr", f"NNI _type '{kind}' is not supported: " + search.NNI_REFUSED[kind])
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"_type": "loguniforn", "_value": [1, 2]}, "did you mean 'loguniform'"),
        ({"uniform": [0.1, 0.01]}, "needs low < high"),
        ({"loguniform": [0, 0.1]}, "needs low > 0"),
        ({"quniform": [0, 1, 0]}, "must be > 0"),
        ({"uniform": [0.1]}, "needs [low, high]"),
        ({"choice": []}, "non-empty list"),
        ({"gaussian": [0, 1]}, "give exactly one distribution"),
        ({"_type": "choice", "_value": [{"_name": "a"}]}, "nested search spaces"),
        ({"int": [1.5, 3]}, "whole numbers"),
    ],
)
def test_bad_distributions_are_refused(spec, message):
    _, problems = search.parse_space({"train.lr": spec})
    assert len(problems) == 1 and message in problems[0][1], problems


def test_bare_nni_names_map_to_fields_and_ambiguous_ones_are_refused():
    dists, problems = search.parse_space(
        {"momentum": {"choice": [0.5, 0.9]}, "alpha": {"uniform": [0.1, 0.9]}}
    )
    assert [d.path for d in dists] == ["train.optimizer.momentum"]
    assert problems[0][0] == "alpha" and "lora.alpha" in problems[0][1]


def test_a_bound_that_is_not_a_valid_setting_is_reported_at_the_space_key(tmp_path):
    path = write(
        tmp_path,
        MATRIX
        + "  space:\n    train.lr: {uniform: [-0.1, 0.1]}\n"
        + "    train.batch_size: {choice: [0, 8]}\n",
    )
    with pytest.raises(matrix.MatrixError) as err:
        plan.load_plan(path)
    found = {(p.key, p.line) for p in err.value.problems}
    assert ("train.lr", 10) in found and ("train.batch_size", 11) in found


def test_a_searched_key_may_not_also_be_a_grid_axis(tmp_path):
    text = MATRIX + "  space:\n    train.lr: {uniform: [0.01, 0.1]}\ngrid:\n  train.lr: [0.1]\n"
    with pytest.raises(matrix.MatrixError, match="both a grid axis and searched"):
        plan.load_plan(write(tmp_path, text))


def test_unknown_metric_is_reported(tmp_path):
    text = MATRIX + "  metric: test.acuracy\n  space:\n    train.lr: {uniform: [0.01, 0.1]}\n"
    with pytest.raises(matrix.MatrixError, match=r"did you mean 'test\.accuracy'"):
        plan.load_plan(write(tmp_path, text))


def sequence(strategy: str, seed: int, n: int = 8) -> list[dict]:
    spec = search.SearchSpec(strategy=strategy, seed=seed, trials=n)
    dists, problems = search.parse_space(
        {
            "train.lr": {"loguniform": [1e-4, 0.1]},
            "train.batch_size": {"choice": [8, 16, 32]},
            "train.loss.label_smoothing": {"quniform": [0.0, 0.3, 0.1]},
        }
    )
    assert not problems
    study = optuna.create_study(direction="maximize", sampler=sampling.sampler(spec, dists))
    drawn = []
    for _ in range(n):
        trial = study.ask()
        values = {d.path: d.suggest(trial) for d in dists}
        drawn.append(values)
        study.tell(trial, values["train.lr"] * values["train.batch_size"])  # any objective
    return drawn


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution"])
def test_a_fixed_seed_suggests_the_same_trials(strategy):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = sequence(strategy, seed=3)
    assert first == sequence(strategy, seed=3)
    assert first != sequence(strategy, seed=4)
    for values in first:
        assert 1e-4 <= values["train.lr"] <= 0.1
        assert values["train.batch_size"] in (8, 16, 32)
        assert round(values["train.loss.label_smoothing"] * 10, 9).is_integer()


def test_the_tpe_study_matrix_plans():
    p = plan.load_plan("matrices/tuner-tpe.yaml")
    assert p.spec.search.trials == 50
    assert {d.path for d in p.search} == {
        "train.batch_size",
        "train.lr",
        "train.optimizer.momentum",
    }
    assert len(p.jobs) == 1  # one grid point; its trials are drawn at run time

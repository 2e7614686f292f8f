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


# ------------------------------------------------------- what a search may draw


def refused_at(path) -> dict[str, tuple[int, str]]:
    with pytest.raises(matrix.MatrixError) as err:
        plan.load_plan(path)
    return {p.key: (p.line, p.message) for p in err.value.problems}


@pytest.mark.parametrize(
    ("entry", "key", "text"),
    [
        ("train.lr: {uniform: [1.0e-4, 50]}", "train.lr", "less than or equal to 10 (got 50)"),
        ("train.lr: {loguniform: [1.0e-5, 20]}", "train.lr", "(got 20"),
        ("train.batch_size: {choice: [8, 16, 0]}", "train.batch_size", "greater than 0"),
        ("train.loss: {choice: [focal, focl]}", "train.loss.name", "unknown loss 'focl'"),
        ("model.image_size: {int: [32, 9000]}", "model.image_size", "(got 9000)"),
    ],
)
def test_every_bound_and_choice_is_checked_as_a_setting(tmp_path, entry, key, text):
    path = write(tmp_path, MATRIX + "  space:\n    " + entry + "\n")
    problems = refused_at(path)
    assert key in problems and text in problems[key][1], problems
    assert problems[key][0] == 10  # the line of the space entry


def test_whole_number_settings_get_whole_number_distributions():
    dists, problems = search.parse_space(
        {
            "train.batch_size": {"uniform": [8, 64]},
            "train.epochs": {"uniform": [0.5, 10.5]},
            "lora.r": {"loguniform": [4, 256]},
            "model.image_size": {"quniform": [32, 224, 32]},
            "train.lr": {"uniform": [0.01, 0.1]},
        }
    )
    assert problems == []
    got = {d.path: (d.kind, d.low, d.high) for d in dists}
    assert got["train.batch_size"] == ("int", 8, 64)
    assert got["train.epochs"] == ("int", 1, 10)
    assert got["lora.r"] == ("logint", 4, 256)
    assert got["model.image_size"] == ("quniform", 32, 224)  # whole q: whole values
    assert got["train.lr"] == ("uniform", 0.01, 0.1)


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_integer_distributions_draw_integers(strategy):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists, _ = search.parse_space(
        {"train.batch_size": {"uniform": [8, 64]}, "lora.r": {"loguniform": [4, 256]}}
    )
    spec = search.SearchSpec(strategy=strategy, seed=1, trials=12)
    study = optuna.create_study(sampler=sampling.sampler(spec, dists))
    for _ in range(12):
        trial = study.ask()
        values = [d.suggest(trial) for d in dists]
        assert all(isinstance(v, int) for v in values), values
        assert 8 <= values[0] <= 64 and 4 <= values[1] <= 256
        study.tell(trial, float(sum(values)))


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"quniform": [1, 10, 0.5]}, "takes whole numbers: quniform needs whole"),
        ({"uniform": [0.2, 0.8]}, "holds none"),
        ({"_type": "qloguniform", "_value": [1, 100, 2.5]}, "takes whole numbers"),
    ],
)
def test_a_whole_number_setting_refuses_a_space_of_fractions(spec, text):
    _, problems = search.parse_space({"train.epochs": spec})
    assert len(problems) == 1 and text in problems[0][1], problems


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        ([5, 1], "randint", "[lower, upper) with upper excluded (NNI): [5, 1] holds no integer"),
        ([3, 3], "randint", "[3, 3] holds no integer"),
        ([0.1, 0.1], "uniform", "low < high (NNI), got [0.1, 0.1]"),
        ([0.01, 0.01, 0.001], "qloguniform", "low < high (NNI)"),
        ([1, -1], "loguniform", "loguniform needs low > 0, got -1"),
    ],
)
def test_nni_bounds_are_read_as_nni_reads_them(value, kind, text):
    _, problems = search.parse_space({"train.lr": {"_type": kind, "_value": value}})
    assert len(problems) == 1 and text in problems[0][1], problems


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("uniform", [0.1, 0.01], ("uniform", 0.01, 0.1, None)),
        ("loguniform", [1e-2, 1e-4], ("loguniform", 1e-4, 1e-2, None)),
        ("quniform", [0.5, 0.1, 0.1], ("quniform", 0.1, 0.5, 0.1)),
        ("qloguniform", [1.0, 0.01, 0.01], ("qloguniform", 0.01, 1.0, 0.01)),
    ],
)
def test_nni_reversed_continuous_bounds_mean_the_same_interval(kind, value, expected):
    """NNI's tuners sample between the two numbers whichever comes first (its validator
    only logs the order), so studies written for NNI run here unchanged."""
    dists, problems = search.parse_space({"train.lr": {"_type": kind, "_value": value}})
    assert problems == []
    d = dists[0]
    assert (d.kind, d.low, d.high, d.step) == expected
    forward, _ = search.parse_space(
        {"train.lr": {"_type": kind, "_value": sorted(value[:2]) + value[2:]}}
    )
    assert forward[0] == d


def test_a_native_reversed_range_is_still_refused():
    """Only NNI's `_type` form reads reversed bounds; ftmatrix's own form says low < high."""
    _, problems = search.parse_space({"train.lr": {"uniform": [0.1, 0.01]}})
    assert problems and "needs low < high" in problems[0][1]


def test_nni_randint_excludes_its_upper_bound():
    dists, problems = search.parse_space({"epochs": {"_type": "randint", "_value": [3, 4]}})
    assert problems == [] and dists[0].grid_values() == [3]


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ({"_type": [], "_value": [1, 2]}, "_type is a name"),
        ({"_type": "choice", "_value": 5}, "non-empty list"),
        ({"int": [1, 5], "step": "x"}, "step is a whole number"),
        ({"int": [1, 10**9]}, "strategy grid would try"),
    ],
)
def test_odd_distributions_are_errors_not_tracebacks(tmp_path, spec, text):
    text_space = json.dumps({"train.epochs": spec})
    path = write(
        tmp_path,
        MATRIX.replace("strategy: tpe", "strategy: grid") + "  space_file: s.json\n",
        **{"s.json": text_space},
    )
    problems = refused_at(path)
    assert any(text in message for _, message in problems.values()), problems


NO_TRIAL = """
name: s
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false, freeze_backbone: true}
  lora: {target_modules: [conv1]}
search:
  trials: 5
  space:
    lora.enabled: {choice: CHOICES}
    train.lr: {loguniform: [1.0e-4, 0.1]}
"""


def test_a_search_whose_every_trial_is_invalid_is_refused_before_training(tmp_path):
    path = write(tmp_path, NO_TRIAL.replace("CHOICES", "[true]"))
    problems = refused_at(path)
    _, message = problems["search.space"]
    assert "no trial of the matrix would be a valid job" in message
    assert "lora.enabled and model.freeze_backbone are both set" in message
    # one valid choice is enough: the search runs, and its failing trials are recorded
    path = write(tmp_path, NO_TRIAL.replace("CHOICES", "[true, false]"))
    assert len(plan.load_plan(path).jobs) == 1


def test_a_grid_point_without_valid_trials_is_named(tmp_path):
    text = NO_TRIAL.replace("CHOICES", "[true]").replace(", freeze_backbone: true", "")
    text += "grid:\n  model.freeze_backbone: [false, true]\n"
    problems = refused_at(write(tmp_path, text))
    assert "the grid point 'freeze_backbone=true'" in problems["search.space"][1]


@pytest.mark.parametrize("lr", [[0.001, 50], [50, 0.001]])
def test_both_bounds_of_a_native_and_an_nni_space_are_validated_in_a_space_file(tmp_path, lr):
    space = {"lr": {"_type": "uniform", "_value": lr}, "train.epochs": {"int": [0, 3]}}
    path = write(tmp_path, MATRIX + "  space_file: s.json\n", **{"s.json": json.dumps(space)})
    problems = refused_at(path)
    assert "(got 50" in problems["train.lr"][1]
    assert "greater than 0" in problems["train.epochs"][1]


def test_plan_shows_how_each_setting_is_drawn_with_reversed_nni_bounds_in_order(tmp_path):
    from typer.testing import CliRunner

    from ftmatrix.cli import app

    space = {
        "lr": {"_type": "loguniform", "_value": [0.1, 0.0001]},
        "batch_size": {"_type": "choice", "_value": [16, 32]},
        "epochs": {"_type": "randint", "_value": [2, 7]},
        "label_smoothing": {"_type": "quniform", "_value": [0.3, 0.0, 0.1]},
    }
    path = write(tmp_path, MATRIX + "  space_file: s.json\n", **{"s.json": json.dumps(space)})
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert (
        "5 tpe trials over train.lr loguniform [0.0001, 0.1], train.batch_size choice "
        "[16, 32], train.epochs int [2, 6], train.loss.label_smoothing quniform [0, 0.3] "
        "q 0.1, maximize test.accuracy"
    ) in out

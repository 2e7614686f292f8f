"""A job config refuses every absurd value: nan and infinities, true/false where a number
belongs, sizes past any real run, seeds numpy and torch reject, and settings that
contradict each other — each with its dotted key, before anything runs."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.config import JobConfig
from ftmatrix.matrix.executors import SlurmSpec
from ftmatrix.matrix.search import SearchSpec

BASE: dict[str, Any] = {
    "data": {"builtin": "digits"},
    "model": {"name": "resnet18", "pretrained": False},
}


def with_setting(dotted: str, value: Any) -> dict[str, Any]:
    config = json.loads(json.dumps(BASE))
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


def refused(dotted: str, value: Any) -> str:
    """The message of the one error at `dotted` (or within it)."""
    with pytest.raises(ValidationError) as err:
        JobConfig.model_validate(with_setting(dotted, value))
    found = [
        e["msg"]
        for e in err.value.errors()
        if ".".join(map(str, e["loc"])).startswith(dotted.rsplit(".", 1)[0])
    ]
    assert found, err.value.errors()
    return found[0]


FLOATS = [
    "train.lr",
    "train.grad_clip",
    "train.optimizer.weight_decay",
    "train.optimizer.eps",
    "train.optimizer.momentum",
    "train.scheduler.gamma",
    "train.loss.gamma",
    "train.loss.beta",
    "train.loss.label_smoothing",
    "train.early_stopping.min_delta",
    "lora.alpha",
    "lora.dropout",
    "model.head_dropout",
    "data.val_fraction",
    "data.augment.horizontal_flip",
    "distill.temperature",
    "distill.alpha",
]


@pytest.mark.parametrize("dotted", FLOATS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_no_float_setting_takes_nan_or_infinity(dotted, bad):
    assert "finite" in refused(dotted, bad) or "less than" in refused(dotted, bad)


@pytest.mark.parametrize(
    ("dotted", "bad"),
    [
        ("train.optimizer.betas", [0.9, float("nan")]),
        ("data.augment.crop_scale", [float("nan"), 1.0]),
        ("train.loss.class_weights", [1.0, float("inf")]),
        ("train.weight_decay_schedule", {1: float("nan")}),
        ("model.config", {"hidden_size": 32, "layer_norm_eps": float("nan")}),
    ],
)
def test_nan_inside_a_list_mapping_or_model_config_is_refused(dotted, bad):
    message = refused(dotted, bad)
    assert "finite" in message


@pytest.mark.parametrize(
    "dotted",
    [
        "train.epochs",
        "train.batch_size",
        "train.seed",
        "train.topk",
        "train.grad_accumulation",
        "train.scheduler.step_size",
        "train.early_stopping.patience",
        "lora.r",
        "model.image_size",
        "model.max_length",
        "data.limit",
        "data.split_seed",
        "train.lr",
        "train.loss.gamma",
        "lora.alpha",
        "distill.temperature",
    ],
)
@pytest.mark.parametrize("bad", [True, False])
def test_true_and_false_are_not_numbers(dotted, bad):
    assert refused(dotted, bad) == "expected a number, not true/false"


def test_true_and_false_are_not_numbers_inside_lists_and_schedules():
    assert "finite numbers" in refused("train.loss.class_weights", [1.0, True])
    assert "true/false" in refused("train.batch_size_schedule", {1: True})
    assert "true/false" in refused("train.batch_size_schedule", {True: 32})


@pytest.mark.parametrize(
    ("dotted", "bad"),
    [
        ("train.epochs", 1_000_000),
        ("train.batch_size", 10**7),
        ("train.grad_accumulation", 10**7),
        ("model.image_size", 100_000),
        ("model.max_length", 10**6),
        ("data.limit", 10**12),
        ("data.num_workers", 100_000),
        ("lora.r", 100_000),
        ("lora.alpha", 1e9),
        ("train.optimizer.weight_decay", 1e4),
        ("train.lr", 100.0),
        ("distill.temperature", 1e6),
        ("train.topk", 10**9),
        ("train.batch_size_schedule", {1: 32, 2: 10**8}),
        ("train.batch_size_schedule", {1: 32, 10**7: 64}),
        ("train.weight_decay_schedule", {1: 0.1, 2: 1e4}),
    ],
)
def test_sizes_and_rates_have_upper_bounds(dotted, bad):
    message = refused(dotted, bad)
    assert "less than" in message or "at most" in message or "lie in" in message


@pytest.mark.parametrize("dotted", ["train.seed", "data.split_seed"])
def test_seeds_lie_where_numpy_and_torch_accept_them(dotted):
    assert "greater than or equal to 0" in refused(dotted, -1)
    assert "less than 4294967296" in refused(dotted, 2**32)
    cfg = JobConfig.model_validate(with_setting(dotted, 2**32 - 1))
    assert cfg.train.seed == 2**32 - 1 or cfg.data.split_seed == 2**32 - 1


def test_valid_numbers_still_pass_and_survive_config_json():
    cfg = JobConfig.model_validate(
        {
            **BASE,
            "train": {
                "epochs": 3.0,  # a whole float is an integer
                "lr": 1,  # an integer is a float
                "batch_size_schedule": {1: 16, 3: 32},
                "loss": {"name": "cross_entropy", "class_weights": [1, 2.5, 0]},
            },
        }
    )
    assert (cfg.train.epochs, cfg.train.lr) == (3, 1.0)
    again = JobConfig.model_validate_json(cfg.model_dump_json())  # keys come back as text
    assert again == cfg and again.train.batch_size_schedule == {1: 16, 3: 32}


# --------------------------------------------------------------- contradictions


@pytest.mark.parametrize(
    ("metric", "mode"),
    [("val_loss", "max"), ("val_accuracy", "min"), ("val_f1", "min")],
)
def test_an_early_stopping_mode_that_contradicts_its_metric_is_refused(metric, mode):
    message = refused("train.early_stopping", {"enabled": True, "metric": metric, "mode": mode})
    assert f"mode {mode} contradicts metric {metric}" in message


@pytest.mark.parametrize(
    ("metric", "mode", "resolved"),
    [("val_loss", "min", "min"), ("val_f1", "max", "max"), ("val_loss", "auto", "min")],
)
def test_a_mode_that_fits_its_metric_is_kept(metric, mode, resolved):
    early = {"enabled": True, "metric": metric, "mode": mode}
    cfg = JobConfig.model_validate(with_setting("train.early_stopping", early))
    assert cfg.train.early_stopping.mode == resolved


@pytest.mark.parametrize(
    "data",
    [
        {"builtin": "digits", "test_fraction": 0},
        {"path": "texts.csv", "test_fraction": 0.0},
        {"path": "texts.JSONL", "test_fraction": 0},
    ],
)
def test_no_test_split_is_refused_where_the_data_has_none_of_its_own(data):
    assert "leaves no test examples" in refused("data", data)


def test_test_fraction_0_is_left_to_preflight_for_folders_and_datasets():
    for data in (
        {"path": "images", "test_fraction": 0},
        {"hf_dataset": "imdb", "test_fraction": 0},
    ):
        assert JobConfig.model_validate({**BASE, "data": data}).data.test_fraction == 0


@pytest.mark.parametrize(
    ("name", "size", "patch"),
    [("vit_b_16", 8, 16), ("vit_b_16", 200, 16), ("vit_b_32", 224 + 16, 32), ("vit_h_14", 16, 14)],
)
def test_a_torchvision_vit_needs_whole_patches(name, size, patch):
    message = refused("model", {"name": name, "image_size": size})
    assert f"{patch}x{patch} patches" in message and f"multiple of {patch}" in message


def test_whole_patches_pass_and_other_models_take_any_size():
    for name, size in [("vit_b_16", 32), ("vit_h_14", 224), ("resnet18", 30)]:
        model = {"name": name, "image_size": size, "pretrained": False}
        assert JobConfig.model_validate({**BASE, "model": model}).model.image_size == size


def test_class_weights_must_not_be_all_zero_or_text():
    assert "not all zero" in refused("train.loss.class_weights", [0, 0, 0])
    assert "finite numbers" in refused("train.loss.class_weights", ["a", 1])


# ------------------------------------------------------- other schemas, same rules


@pytest.mark.parametrize(
    ("text", "minutes"),
    [(90, 90), ("90", 90), ("1:30:00", 90), ("30:30", 31), ("2-0", 2880), ("1-12:30", 2190)],
)
def test_slurm_time_reads_slurm_forms_as_minutes(text, minutes):
    assert SlurmSpec(time=text).time == minutes


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"time": True}, "true/false"),
        ({"time": "1h"}, "not a Slurm time limit"),
        ({"time": 10**7}, "less than or equal"),
        ({"poll": float("inf")}, "finite"),
        ({"mem_gb": float("nan")}, "finite"),
        ({"gpus_per_job": True}, "true/false"),
        ({"max_running": 10**9}, "less than or equal"),
    ],
)
def test_slurm_settings_refuse_absurd_values(settings, fragment):
    with pytest.raises(ValidationError, match=fragment):
        SlurmSpec(**settings)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"trials": True}, "true/false"),
        ({"trials": 10**7}, "less than or equal"),
        ({"seed": -3}, "greater than or equal"),
        ({"seed": 2**40}, "less than"),
    ],
)
def test_search_settings_refuse_absurd_values(settings, fragment):
    with pytest.raises(ValidationError, match=fragment):
        SearchSpec(**settings)


# ------------------------------------------------------------ through validate


def validate(tmp_path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output
    return result, path


HEAD = """\
name: t
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
"""


def test_every_absurd_value_of_a_file_is_reported_at_once_with_line_and_key(tmp_path):
    result, path = validate(
        tmp_path,
        HEAD
        + """\
  train:
    epochs: true
    lr: .nan
    batch_size: 10000000
    seed: -1
seeds: [1, 4294967296]
""",
    )
    assert result.exit_code == 2
    out = result.output
    assert f"{path}:6:5: train.epochs: expected a number, not true/false" in out
    assert f"{path}:7:5: train.lr: Input should be a finite number" in out
    assert f"{path}:8:5: train.batch_size: Input should be less than or equal to 65536" in out
    assert f"{path}:9:5: train.seed: Input should be greater than or equal to 0" in out
    assert f"{path}:10:" in out and "seeds.1" in out


def test_yaml_1_1_forms_mean_what_yaml_1_2_says(tmp_path):
    result, _ = validate(
        tmp_path,
        HEAD
        + """\
  train: {batch_size: 016, epochs: 010}
executor:
  slurm: {time: 1:30:00}
""",
    )
    assert result.exit_code == 0, result.output
    from ftmatrix.matrix import plan

    p = plan.load_plan(tmp_path / "m.yaml")
    train = p.jobs[0].config.train
    assert (train.batch_size, train.epochs) == (16, 10)
    assert p.spec.executor.slurm.time == 90


def test_a_name_the_file_system_cannot_hold_is_refused(tmp_path):
    result, path = validate(tmp_path, HEAD.replace("name: t", "name: " + "x" * 300))
    assert result.exit_code == 2
    assert f"{path}:1:1: name: String should have at most 128 characters" in result.output


@pytest.mark.parametrize(
    ("extra", "line", "key"),
    [
        ("  data: {builtin: digits, augment: {horizontal_flip: 0.7}}\n", 4, "data.augment"),
        ("  lora: {r: 16}\n", 5, "lora.r"),
        ("  train: {early_stopping: {patience: 3}}\n", 5, "train.early_stopping.patience"),
        ("grid:\n  lora.r: [4, 8]\n", 6, "lora.r"),
        ("grid:\n  data.augment.enabled: [false]\n  data.augment.grayscale: [0.1]\n", 7, ""),
    ],
)
def test_settings_no_job_turns_on_are_refused(tmp_path, extra, line, key):
    text = HEAD.replace("  data: {builtin: digits}\n", "") if "data:" in extra else HEAD
    result, path = validate(tmp_path, text + extra)
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}:" in result.output and "would be ignored" in result.output
    assert key in result.output


@pytest.mark.parametrize(
    "extra",
    [
        "  lora: {r: 16, target_modules: [conv1]}\ngrid:\n  lora.enabled: [false, true]\n",
        "  data: {builtin: digits, augment: {grayscale: 0.2}}\n"
        "include:\n  - data.augment.enabled: true\n",
        "  lora: {r: 16, target_modules: [conv1]}\n"
        "search:\n  trials: 2\n  space:\n    lora.enabled: {choice: [true, false]}\n",
        "grid:\n  lora:\n    off: {enabled: false}\n"
        "    r8: {enabled: true, r: 8, target_modules: [conv1]}\n",
    ],
)
def test_settings_some_job_turns_on_are_kept(tmp_path, extra):
    text = HEAD.replace("  data: {builtin: digits}\n", "") if "  data:" in extra else HEAD
    result, _ = validate(tmp_path, text + extra)
    assert result.exit_code == 0, result.output


def test_validate_imports_no_torch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "m.yaml"
    path.write_text(HEAD + "  train: {epochs: true}\n")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom ftmatrix.cli import app\n"
        f"r = CliRunner().invoke(app, ['validate', {str(path)!r}])\n"
        "print(r.exit_code, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False", "False"]


@pytest.mark.parametrize(
    ("search", "fix"),
    [
        ("  metric: test.loss\n  direction: maximize\n", "direction: minimize"),
        ("  metric: val_loss\n", "direction: minimize"),  # maximize is the default
        ("  metric: val_accuracy\n  direction: minimize\n", "direction: maximize"),
    ],
)
def test_a_search_whose_direction_contradicts_its_metric_is_refused(tmp_path, search, fix):
    space = "  space:\n    train.lr: {loguniform: [0.0001, 0.1]}\n"
    result, path = validate(tmp_path, HEAD + "search:\n" + search + space)
    assert result.exit_code == 2
    assert f"{path}:" in result.output and "search.direction: direction" in result.output
    assert fix in result.output


def test_a_search_that_minimises_a_loss_is_valid(tmp_path):
    search = "search:\n  metric: test.loss\n  direction: minimize\n"
    space = "  space:\n    train.lr: {loguniform: [0.0001, 0.1]}\n"
    result, _ = validate(tmp_path, HEAD + search + space)
    assert result.exit_code == 0, result.output

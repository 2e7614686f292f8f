"""One rule for every value a matrix sets: it merges onto what `base` set there. A
mapping merges key by key, and a section written by its name alone (`optimizer: sgd`)
counts as `{name: sgd}` — on either side — so an axis of optimizer names keeps the
momentum and weight decay of the base, in grid and zip axes, labelled subtrees,
includes and search trials alike."""

from __future__ import annotations

import textwrap

import pytest

from ftmatrix.matrix import paths, plan, space
from ftmatrix.matrix.search import parse_space

HEAD = """\
name: t
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
  train:
    optimizer: {name: sgd, momentum: 0.9, weight_decay: 0.01}
    loss: {name: focal, gamma: 3.0}
"""


def load(tmp_path, body: str, head: str = HEAD):
    path = tmp_path / "m.yaml"
    path.write_text(head + textwrap.dedent(body))
    return plan.load_plan(path)


def optimizers(p) -> set[tuple]:
    return {
        (o.name, o.momentum, o.weight_decay) for o in (j.config.train.optimizer for j in p.jobs)
    }


@pytest.mark.parametrize(
    "body",
    [
        "grid:\n  train.optimizer: [sgd, adamw]\n",
        "grid:\n  train.optimizer:\n    plain: sgd\n    adaptive: adamw\n",
        "zip:\n  - train.optimizer: [sgd, adamw]\n    train.lr: [0.1, 0.001]\n",
        "grid:\n  train:\n    plain: {optimizer: sgd}\n    adaptive: {optimizer: adamw}\n",
        "grid:\n  train.optimizer: [{name: sgd}, {name: adamw}]\n",
    ],
    ids=["grid", "labelled", "zip", "subtree", "mapping"],
)
def test_a_plain_optimizer_name_keeps_what_base_set_in_the_optimizer(tmp_path, body):
    p = load(tmp_path, body)
    assert optimizers(p) == {("sgd", 0.9, 0.01), ("adamw", 0.9, 0.01)}
    # and the same two jobs whichever way it is written
    assert len(p.jobs) == 2


def test_every_way_of_writing_it_makes_the_same_jobs(tmp_path):
    ids = []
    for body in (
        "grid:\n  train.optimizer: [sgd, adamw]\n",
        "grid:\n  train.optimizer: [{name: sgd}, {name: adamw}]\n",
        "grid:\n  train.optimizer.name: [sgd, adamw]\n",
    ):
        ids.append([j.id for j in load(tmp_path, body).jobs])
    assert ids[0] == ids[1] == ids[2]


def test_a_base_written_by_name_keeps_its_name_under_a_field_axis(tmp_path):
    head = HEAD.replace("{name: sgd, momentum: 0.9, weight_decay: 0.01}", "sgd")
    p = load(tmp_path, "grid:\n  train.optimizer.momentum: [0.5, 0.9]\n", head=head)
    assert {(o.name, o.momentum) for o in (j.config.train.optimizer for j in p.jobs)} == {
        ("sgd", 0.5),
        ("sgd", 0.9),
    }


def test_an_include_of_a_loss_name_keeps_the_base_loss_settings(tmp_path):
    p = load(
        tmp_path,
        "grid:\n  train.lr: [0.1, 0.01]\ninclude:\n  - {train.lr: 0.01, train.loss: focal}\n"
        "  - {train.lr: 0.5, train.loss: cross_entropy}\n",
    )
    losses = {j.config.train.lr: j.config.train.loss for j in p.jobs}
    assert (losses[0.01].name, losses[0.01].gamma) == ("focal", 3.0)
    assert losses[0.5].name == "cross_entropy" and losses[0.5].gamma == 3.0  # kept, unused


def test_a_searched_optimizer_name_keeps_the_base_settings(tmp_path):
    p = load(
        tmp_path,
        "search:\n  trials: 2\n  space:\n    train.optimizer: {choice: [sgd, adamw]}\n",
    )
    config, why = space.trial_config(p.jobs[0].config, {"train.optimizer": "adamw"})
    assert why == "" and config is not None
    assert (config.train.optimizer.name, config.train.optimizer.weight_decay) == ("adamw", 0.01)


@pytest.mark.parametrize(
    ("raw", "parts", "value", "at", "expected"),
    [
        (
            {"name": "sgd", "momentum": 0.9},
            [],
            "adam",
            "train.optimizer",
            {"name": "adam", "momentum": 0.9},
        ),
        ("sgd", ["momentum"], 0.5, "train.optimizer", {"name": "sgd", "momentum": 0.5}),
        (
            {"optimizer": "sgd"},
            [],
            {"optimizer": {"momentum": 0.5}},
            "train",
            {"optimizer": {"name": "sgd", "momentum": 0.5}},
        ),
        (
            {"train": {"loss": {"name": "focal", "gamma": 2}}},
            ["train", "loss"],
            "l1",
            "",
            {"train": {"loss": {"name": "l1", "gamma": 2}}},
        ),
        ({"config": {"a": 1}}, ["config"], {"b": 2}, "model", {"config": {"a": 1, "b": 2}}),
        ({"name": "resnet18"}, ["name"], "resnet50", "model", {"name": "resnet50"}),
        ({"teacher": {"name": "a"}}, ["teacher"], None, "distill", {"teacher": None}),
    ],
)
def test_assign_merges_at_every_depth(raw, parts, value, at, expected):
    assert paths.assign(raw, parts, value, at=at) == expected


def test_named_sections_are_the_ones_that_take_a_name_alone():
    assert paths.named_sections() == {"train.optimizer", "train.scheduler", "train.loss"}
    assert paths.leaves("train.optimizer", "sgd") == ["train.optimizer.name"]
    assert paths.leaves("model.name", "resnet18") == ["model.name"]
    assert sorted(paths.leaves("train", {"lr": 0.1, "loss": "focal"})) == [
        "train.loss.name",
        "train.lr",
    ]


def test_a_searched_name_and_a_grid_field_inside_it_do_not_clash():
    dists, problems = parse_space(
        {"train.optimizer": {"choice": ["sgd", "adam"]}},
        fixed={"train.optimizer.momentum": "train.optimizer.momentum"},
    )
    assert problems == [] and [d.path for d in dists] == ["train.optimizer"]

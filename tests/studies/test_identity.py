"""The settings that decide what a study measures are part of a job's id; the ones
added later leave every older id as it was."""

from __future__ import annotations

import json

import pytest

from ftmatrix.config import JobConfig
from ftmatrix.identity import job_id
from ftmatrix.matrix import plan

BASE = {
    "data": {"builtin": "digits"},
    "model": {"name": "resnet18", "pretrained": False, "image_size": 32},
}


def jid(**train) -> str:
    return job_id(JobConfig.model_validate({**BASE, "train": train}))


def test_configs_differing_only_in_the_tested_epoch_rule_get_different_ids():
    ids = {
        jid(test="best"),
        jid(test="last"),
        jid(test={"metric": "val_accuracy"}),
        jid(test={"metric": "val_f1"}),
        jid(test={"metric": "val_loss"}),
    }
    assert len(ids) == 5
    # the metric matters only to `best`
    assert jid(test={"epoch": "last", "metric": "val_f1"}) == jid(test="last")


def test_the_default_rule_keeps_the_ids_jobs_had_before_it_could_be_chosen():
    assert jid() == jid(test="best") == jid(test={"epoch": "best", "mode": "auto"})
    # with early stopping on, its metric is the default rule's: part of the id as before
    on = {"enabled": True, "metric": "val_accuracy"}
    assert jid(early_stopping=on) != jid(early_stopping={"enabled": True})


@pytest.mark.parametrize(
    ("changed", "default"),
    [
        ({"lr_schedule": {1: 0.1, 5: 0.01}}, {"lr_schedule": None}),
        (
            {"scheduler": {"name": "linear", "warmup_epochs": 0.2}},
            {"scheduler": {"name": "linear", "warmup_epochs": 0}},
        ),
        (
            {"scheduler": {"name": "cosine", "warmup_steps": 10}},
            {"scheduler": {"name": "cosine", "warmup_steps": 0}},
        ),
        (
            {"loss": {"name": "mse", "outputs": "logits"}},
            {"loss": {"name": "mse", "outputs": "probabilities"}},
        ),
    ],
)
def test_each_new_setting_changes_the_id_only_away_from_its_default(changed, default):
    key = next(iter(default))
    bare = {"scheduler": {"name": default[key]["name"]}} if key == "scheduler" else {}
    if key == "loss":
        bare = {"loss": "mse"}
    assert jid(**default) == jid(**bare)
    assert jid(**changed) != jid(**default)


def test_settings_that_cannot_matter_leave_the_id_alone():
    # raw outputs only change the regression losses; warmup only the warming schedules
    assert jid(loss={"name": "cross_entropy", "outputs": "logits"}) == jid()
    assert jid(scheduler={"name": "step", "warmup_steps": 5}) == jid(scheduler="step")
    kept = JobConfig.model_validate({**BASE, "output": {"keep_checkpoint": True}})
    assert job_id(kept) == jid()


def test_the_planner_hashes_the_new_settings_as_identity_does(tmp_path):
    base = {**BASE, "train": {"epochs": 2}}
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: t\n"
        f"base: {json.dumps(base)}\n"
        "grid:\n"
        "  train.test: [best, last, {metric: val_f1}]\n"
        "  train.lr_schedule: [null, {1: 0.1, 3: 0.01}]\n"
        "  train.loss: [mse, {name: MSELoss, outputs: logits}]\n"
        "  train.scheduler: [none, {name: linear, warmup_epochs: 0.2}]\n"
    )
    jobs = plan.load_plan(path).jobs
    assert len({j.id for j in jobs}) == len(jobs) == 24
    assert all(j.id == job_id(j.config) for j in jobs)

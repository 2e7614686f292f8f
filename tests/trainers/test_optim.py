"""Every optimizer with every schedule: the learning rate follows the library's curve."""

from __future__ import annotations

import pytest
import torch
from transformers import get_scheduler

from ftmatrix.config import TrainConfig
from ftmatrix.trainers import optim

OPTIMIZERS = ["sgd", "adam", "adamw"]
SCHEDULERS = ["none", "step", "cosine", "linear", "plateau"]


def lrs(train: TrainConfig, n_train: int) -> list[float]:
    """The learning rate after every optimizer step, as the trainer schedules it."""
    model = torch.nn.Linear(3, 2)
    opt = optim.build_optimizer(train, model, device="cpu")
    schedule = optim.Schedule(train, opt, n_train=n_train)
    seen = []
    for epoch in range(1, train.epochs + 1):
        for _ in range(optim.steps_per_epoch(train, n_train, epoch)):
            opt.step()
            schedule.after_step()
            seen.append(opt.param_groups[0]["lr"])
        schedule.after_epoch(val_loss=1.0)  # a flat validation loss
    return seen


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_learning_rate_curve_matches_the_library(optimizer, scheduler):
    spec = {
        "name": scheduler,
        "step_size": 2,
        "gamma": 0.5,
        "warmup_fraction": 0.2,
        "patience": 1,
        "factor": 0.5,
    }
    train = TrainConfig(epochs=4, batch_size=10, lr=0.1, optimizer=optimizer, scheduler=spec)
    got = lrs(train, n_train=50)  # 5 steps an epoch, 20 in all
    assert len(got) == 20
    if scheduler in ("linear", "cosine"):
        ref_opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
        ref = get_scheduler(scheduler, ref_opt, num_warmup_steps=4, num_training_steps=20)
        expected = []
        for _ in range(20):
            ref_opt.step()
            ref.step()
            expected.append(ref_opt.param_groups[0]["lr"])
        assert got == pytest.approx(expected)
    elif scheduler == "step":  # halves every 2 epochs
        assert got == pytest.approx([0.1] * 10 + [0.05] * 10)
    elif scheduler == "plateau":
        # torch's rule on a flat loss: reduce once more than `patience` epochs were bad
        ref_opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
        ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=1)
        expected = []
        for _ in range(4):
            expected += [ref_opt.param_groups[0]["lr"]] * 5
            ref.step(1.0)
        assert got == pytest.approx(expected) == [0.1] * 15 + [0.05] * 5
    else:
        assert got == [0.1] * 20


def test_optimizers_get_their_settings():
    model = torch.nn.Linear(3, 2)
    sgd = optim.build_optimizer(
        TrainConfig(optimizer={"name": "sgd", "momentum": 0.9, "nesterov": True}),
        model,
        device="cpu",
    )
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"] is True
    adamw = optim.build_optimizer(
        TrainConfig(optimizer={"name": "adamw", "weight_decay": 0.05}), model, device="cpu"
    )
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.05


def test_piecewise_batch_size_and_weight_decay():
    train = TrainConfig(
        epochs=6,
        batch_size=16,
        batch_size_schedule={1: 16, 3: 32, 5: 64},
        weight_decay_schedule={1: 0.0, 4: 0.01},
    )
    assert [optim.batch_size(train, e) for e in range(1, 7)] == [16, 16, 32, 32, 64, 64]
    assert optim.at_epoch(train.weight_decay_schedule, 3, 0.0) == 0.0
    assert optim.at_epoch(train.weight_decay_schedule, 4, 0.0) == 0.01
    assert optim.steps_per_epoch(train, 100, 1) == 7 and optim.steps_per_epoch(train, 100, 5) == 2


def test_gradient_accumulation_divides_the_steps():
    train = TrainConfig(batch_size=10, grad_accumulation=4)
    assert optim.steps_per_epoch(train, 100, 1) == 3  # 10 micro-batches -> 3 steps


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_and_schedule_trains_an_epoch(tmp_path, optimizer, scheduler):
    from ftmatrix.result import read_metrics, read_result
    from ftmatrix.trainers.job import main
    from tests.tiny import image_job, make_job

    spec = {"name": scheduler, "step_size": 1, "gamma": 0.5, "warmup_fraction": 0.5}
    config = image_job(optimizer=optimizer, scheduler=spec, epochs=1, batch_size=64)
    config["data"]["limit"] = 200  # 140 training examples: 3 steps
    job = make_job(tmp_path / "j", config)
    assert main(job) == 0
    assert read_result(job).status == "done"
    lr = read_metrics(job)[0].lr
    train = TrainConfig.model_validate(config["train"])
    assert lr == pytest.approx(lrs(train, n_train=140)[-1] if scheduler != "step" else 0.005)

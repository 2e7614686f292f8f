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
        schedule.start_epoch(epoch)
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
    # the rate of the epoch's last step (StepLR halves it only for the next epoch)
    assert lr == pytest.approx(lrs(train, n_train=140)[-1])


def test_lr_by_epoch_alone_and_under_an_epoch_wise_scheduler():
    by_epoch = {1: 0.1, 3: 0.01}
    alone = TrainConfig(epochs=4, batch_size=10, lr=0.5, lr_schedule=by_epoch)
    assert lrs(alone, n_train=50) == pytest.approx([0.1] * 10 + [0.01] * 10)  # lr unused
    # StepLR halves every epoch on top of the epoch's value
    stepped = TrainConfig.model_validate(
        {**alone.model_dump(), "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}}
    )
    expected = [0.1] * 5 + [0.05] * 5 + [0.01 / 4] * 5 + [0.01 / 8] * 5
    assert lrs(stepped, n_train=50) == pytest.approx(expected)


def test_lr_by_epoch_scales_a_per_step_schedule():
    train = TrainConfig(epochs=4, batch_size=10, lr_schedule={1: 0.1, 3: 0.01}, scheduler="linear")
    got = lrs(train, n_train=50)
    factor = [(20 - s) / 20 for s in range(1, 21)]  # linear decay, no warmup
    base = [0.1] * 10 + [0.01] * 10
    assert got == pytest.approx([b * f for b, f in zip(base, factor, strict=True)])


def test_a_resumed_lr_schedule_continues_where_it_stopped():
    train = TrainConfig.model_validate(
        {
            "epochs": 4,
            "batch_size": 10,
            "lr_schedule": {1: 0.1, 3: 0.02},
            "scheduler": {"name": "cosine", "warmup_epochs": 0.4},
        }
    )
    whole = lrs(train, n_train=50)
    model = torch.nn.Linear(3, 2)
    opt = optim.build_optimizer(train, model, device="cpu")
    schedule = optim.Schedule(train, opt, n_train=50)
    for epoch in (1, 2):
        schedule.start_epoch(epoch)
        for _ in range(5):
            opt.step()
            schedule.after_step()
    saved = (opt.state_dict(), schedule.state_dict())
    opt = optim.build_optimizer(train, model, device="cpu")  # a new process
    schedule = optim.Schedule(train, opt, n_train=50)
    opt.load_state_dict(saved[0])
    schedule.load_state_dict(saved[1])
    rest = []
    for epoch in (3, 4):
        schedule.start_epoch(epoch)
        for _ in range(5):
            opt.step()
            schedule.after_step()
            rest.append(opt.param_groups[0]["lr"])
    assert rest == pytest.approx(whole[10:])


@pytest.mark.parametrize(
    ("warmup", "steps"),
    [
        ({"warmup_fraction": 0.2}, 4),  # of all 20 steps
        ({"warmup_steps": 3}, 3),
        ({"warmup_epochs": 0.2}, 1),  # a fifth of the first epoch's 5 steps
        ({"warmup_epochs": 1.6}, 8),  # the first epoch and 3 of the second's 5
    ],
)
def test_warmup_as_a_share_of_all_steps_in_steps_or_in_epochs(warmup, steps):
    train = TrainConfig(epochs=4, batch_size=10, lr=0.1, scheduler={"name": "linear", **warmup})
    assert optim.warmup_steps(train, 50) == steps
    ref_opt = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    ref = get_scheduler("linear", ref_opt, num_warmup_steps=steps, num_training_steps=20)
    expected = []
    for _ in range(20):
        ref_opt.step()
        ref.step()
        expected.append(ref_opt.param_groups[0]["lr"])
    assert lrs(train, n_train=50) == pytest.approx(expected)


def test_two_warmups_at_once_are_refused():
    with pytest.raises(ValueError, match="give one warmup, not warmup_fraction and warmup_epochs"):
        TrainConfig(scheduler={"name": "linear", "warmup_fraction": 0.1, "warmup_epochs": 1})


@pytest.mark.parametrize("name", ["mse", "l1", "smooth_l1"])
def test_regression_losses_on_probabilities_or_on_raw_outputs(name):
    from ftmatrix.config import LossConfig
    from ftmatrix.trainers import losses

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    y = torch.tensor([0, 2])
    one_hot = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    ref = {"mse": torch.nn.MSELoss(), "l1": torch.nn.L1Loss(), "smooth_l1": torch.nn.SmoothL1Loss()}
    raw = losses.build(LossConfig(name=name, outputs="logits"), weights=None, num_classes=3)
    soft = losses.build(LossConfig(name=name), weights=None, num_classes=3)
    assert raw(logits, y).item() == pytest.approx(ref[name](logits, one_hot).item())
    assert soft(logits, y).item() == pytest.approx(ref[name](logits.softmax(-1), one_hot).item())
    # by hand, for MSE on raw outputs: mean of the squared differences over 6 entries
    if name == "mse":
        assert raw(logits, y).item() == pytest.approx((1 + 1 + 0.25 + 0 + 9 + 9) / 6)


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("CrossEntropyLoss", "cross_entropy"),
        ("MSELoss", "mse"),
        ("L1Loss", "l1"),
        ("SmoothL1Loss", "smooth_l1"),
        ("nn.CrossEntropyLoss", None),
    ],
)
def test_pytorch_loss_names_are_understood(written, name):
    from ftmatrix.config import LossConfig

    if name is None:  # not a spelling: refused, with the nearest name
        with pytest.raises(ValueError, match="did you mean 'cross_entropy'"):
            LossConfig(name=written)
    else:
        assert LossConfig(name=written).name == name

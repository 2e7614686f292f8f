"""Optimizers and learning-rate schedules (torch.optim and transformers.get_scheduler).

Schedules are stepped where they are defined: linear and cosine per optimizer step,
step and plateau per epoch. The learning rate, batch size and weight decay may follow
piecewise schedules by epoch (a study lowers the first and grows the others as training
goes on); a scheduler scales the learning rate the epoch's schedule sets.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ftmatrix.config import TrainConfig


def at_epoch(schedule: dict[int, float] | None, epoch: int, default: float) -> float:
    """The value of a piecewise schedule {first_epoch: value} at a 1-based epoch."""
    if not schedule:
        return default
    value = default
    for start, v in sorted(schedule.items()):
        if int(start) <= epoch:
            value = v
    return value


def batch_size(train: TrainConfig, epoch: int) -> int:
    return int(at_epoch(train.batch_size_schedule, epoch, train.batch_size))


def steps_per_epoch(train: TrainConfig, n: int, epoch: int) -> int:
    """Optimizer steps in an epoch of n examples (micro-batches / accumulation)."""
    return math.ceil(math.ceil(n / batch_size(train, epoch)) / train.grad_accumulation)


def total_steps(train: TrainConfig, n: int) -> int:
    return sum(steps_per_epoch(train, n, e) for e in range(1, train.epochs + 1))


def warmup_steps(train: TrainConfig, n: int) -> int:
    """Optimizer steps of warmup: a share of all steps, a number of steps, or of epochs
    (0.2: a fifth of the first epoch's steps; 1.5: the first epoch and half the second)."""
    spec = train.scheduler
    if spec.warmup_steps:
        return spec.warmup_steps
    if spec.warmup_epochs:
        whole = int(spec.warmup_epochs)
        steps = sum(steps_per_epoch(train, n, e) for e in range(1, whole + 1))
        return steps + int((spec.warmup_epochs - whole) * steps_per_epoch(train, n, whole + 1))
    return int(spec.warmup_fraction * total_steps(train, n))


def lr_at(train: TrainConfig, epoch: int) -> float:
    """The learning rate an epoch starts from: lr_schedule's value there, else lr."""
    return at_epoch(train.lr_schedule, epoch, train.lr)


def build_optimizer(train: TrainConfig, model: nn.Module, *, device: str) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    spec = train.optimizer
    lr = lr_at(train, 1)
    if spec.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov,
            weight_decay=spec.weight_decay,
        )
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    # the fused kernels are CUDA-only; elsewhere the default (foreach) implementation
    fused = device == "cuda"
    return cls(
        params,
        lr=lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=spec.weight_decay,
        fused=fused or None,
    )


def set_weight_decay(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["weight_decay"] = value


class Schedule:
    """One interface over per-step and per-epoch schedulers."""

    def __init__(self, train: TrainConfig, optimizer: torch.optim.Optimizer, *, n_train: int):
        spec = train.scheduler
        self.kind = spec.name
        self.train = train
        self.optimizer = optimizer
        self.scheduler = None
        if spec.name in ("linear", "cosine"):
            from transformers import get_scheduler

            self.scheduler = get_scheduler(
                spec.name,
                optimizer,
                num_warmup_steps=warmup_steps(train, n_train),
                num_training_steps=total_steps(train, n_train),
            )
        elif spec.name == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=spec.step_size, gamma=spec.gamma
            )
        elif spec.name == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=spec.factor, patience=spec.patience
            )

    def start_epoch(self, epoch: int) -> None:
        """Move to the learning rate lr_schedule sets for `epoch` (1-based), keeping
        whatever factor the scheduler applies: the step from the previous epoch's value
        scales the optimizer's rate and the scheduler's base rates alike, so a resumed
        job (optimizer and scheduler restored after epoch - 1) continues exactly."""
        if not self.train.lr_schedule or epoch == 1:
            return
        ratio = lr_at(self.train, epoch) / lr_at(self.train, epoch - 1)
        if ratio == 1:
            return
        for group in self.optimizer.param_groups:
            group["lr"] *= ratio
        if self.scheduler is not None and hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * ratio for lr in self.scheduler.base_lrs]

    def after_step(self) -> None:
        if self.kind in ("linear", "cosine"):
            self.scheduler.step()

    def after_epoch(self, val_loss: float | None) -> None:
        if self.kind == "step":
            self.scheduler.step()
        elif self.kind == "plateau" and val_loss is not None:
            self.scheduler.step(val_loss)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)

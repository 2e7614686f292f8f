"""The `train:` section of a job: epochs and batches, the optimizer, the learning-rate
schedule, the loss, early stopping and which epoch's weights are tested.

Each field of TrainConfig validates and normalises on its own (the planner checks and
hashes them one by one), so no rule here may read one field to judge another.
Standard library and pydantic only.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ftmatrix import catalog, components
from ftmatrix.bounds import MAX_BATCH, MAX_EPOCHS, Float, Int, Seed
from ftmatrix.result import TestMetrics
from ftmatrix.sections import Section, name_validator, named


class OptimizerConfig(Section):
    """The optimizer and its settings (those of other optimizers are ignored)."""

    name: str = Field("adamw", description="sgd | adam | adamw.")
    weight_decay: Float = Field(0.0, ge=0, le=10, description="Weight decay (decoupled for adamw).")
    momentum: Float = Field(0.0, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum (needs momentum > 0).")
    betas: tuple[Float, Float] = Field((0.9, 0.999), description="Adam/AdamW betas.")
    eps: Float = Field(1e-8, gt=0, le=1, description="Adam/AdamW epsilon.")

    _from_name = model_validator(mode="before")(named("optimizer"))
    _name = field_validator("name", mode="before")(name_validator(catalog.OPTIMIZERS, "optimizer"))

    @model_validator(mode="after")
    def _nesterov(self) -> OptimizerConfig:
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError("betas must lie in [0, 1)")
        return self


class SchedulerConfig(Section):
    """How the learning rate changes over training."""

    name: str = Field("none", description="none | step | cosine | linear | plateau.")
    step_size: Int = Field(7, gt=0, le=MAX_EPOCHS, description="step: epochs between decays.")
    gamma: Float = Field(0.1, gt=0, le=1, description="step: decay factor.")
    warmup_fraction: Float = Field(
        0.0, ge=0, lt=1, description="linear/cosine: share of all steps spent warming up."
    )
    warmup_steps: Int = Field(
        0, ge=0, le=1_000_000_000, description="linear/cosine: optimizer steps of warmup."
    )
    warmup_epochs: Float = Field(
        0.0,
        ge=0,
        le=MAX_EPOCHS,
        description="linear/cosine: warmup in epochs, fractions allowed (0.2: a fifth of "
        "the first epoch's steps).",
    )
    patience: Int = Field(
        2, ge=0, le=MAX_EPOCHS, description="plateau: epochs without improvement."
    )
    factor: Float = Field(0.1, gt=0, lt=1, description="plateau: decay factor.")

    _from_name = model_validator(mode="before")(named("scheduler"))
    _name = field_validator("name", mode="before")(name_validator(catalog.SCHEDULERS, "scheduler"))

    @model_validator(mode="after")
    def _one_warmup(self) -> SchedulerConfig:
        given = [k for k in WARMUPS if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one warmup, not {' and '.join(given)}")
        return self


WARMUPS = ("warmup_fraction", "warmup_steps", "warmup_epochs")


class LossConfig(Section):
    """The training loss. Regression losses compare one-hot targets with the softmax
    probabilities (default) or with the raw outputs (`outputs: logits`)."""

    name: str = Field(
        "cross_entropy",
        description="cross_entropy | focal | mse | l1 | smooth_l1 (PyTorch's names too: "
        "CrossEntropyLoss, MSELoss, L1Loss, SmoothL1Loss).",
    )
    outputs: Literal["probabilities", "logits"] = Field(
        "probabilities",
        description="mse/l1/smooth_l1: compare the one-hot targets with the softmax "
        "probabilities, or with the network's raw outputs (logits).",
    )
    label_smoothing: Float = Field(0.0, ge=0, lt=1, description="cross_entropy: smoothing.")
    class_weights: list[Float] | Literal["balanced"] | None = Field(
        None,
        max_length=100_000,
        description="cross_entropy/focal: one weight per class, or 'balanced'.",
    )
    factory: str | None = Field(
        None,
        description="Your own loss: 'module:function' or 'file.py:function' (relative to "
        "the matrix), called in the job process as function(logits, targets) -> scalar "
        "tensor; it replaces `name` (which then only labels it).",
    )

    _factory = field_validator("factory")(components.check_factory)
    gamma: Float = Field(2.0, ge=0, le=100, description="focal: focusing parameter.")
    alpha: Float | None = Field(
        None, ge=0, le=1, description="focal: weight of the positive term (None: off)."
    )
    beta: Float = Field(1.0, gt=0, le=1_000, description="smooth_l1: where L1 turns into L2.")

    _from_name = model_validator(mode="before")(named("loss"))
    _name = field_validator("name", mode="before")(name_validator(catalog.LOSSES, "loss"))

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights_shape(cls, v: Any) -> Any:
        # one clear message instead of one per member of the union
        if isinstance(v, list) and not all(
            isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in v
        ):
            raise ValueError(f"class_weights must be finite numbers, one per class (got {v!r})")
        return v

    @field_validator("class_weights")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, list) and (not v or any(w < 0 for w in v) or not any(v)):
            raise ValueError(
                "class_weights must be non-negative numbers, one per class, not all zero"
            )
        return v


Monitored = Literal["val_loss", "val_accuracy", "val_f1"]


def better(metric: str) -> str:
    """'min' for a loss, 'max' for a score."""
    return "min" if metric.endswith("loss") else "max"


def check_mode(mode: str, metric: str | None) -> str:
    """`mode` when it agrees with `metric` (or is auto); a clear error otherwise."""
    if metric is None or mode == "auto" or mode == better(metric):
        return mode
    want = better(metric)
    raise ValueError(
        f"mode {mode} contradicts metric {metric}: a {'loss' if want == 'min' else 'score'}"
        f" is better when {'smaller' if want == 'min' else 'larger'} (mode {want}, or auto)"
    )


class EarlyStoppingConfig(Section):
    """Stop when the monitored validation metric stops improving."""

    enabled: bool = Field(False, description="Turn early stopping on.")
    patience: Int = Field(
        5, gt=0, le=MAX_EPOCHS, description="Epochs without improvement before stopping."
    )
    metric: Literal["val_loss", "val_accuracy", "val_f1"] = Field(
        "val_loss", description="The metric to monitor."
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min or max is better; auto: min for losses, max otherwise."
    )
    min_delta: Float = Field(
        0.0, ge=0, le=1e6, description="Smallest change that counts as better."
    )

    @field_validator("mode")
    @classmethod
    def _mode_fits_metric(cls, v: str, info: ValidationInfo) -> str:
        return check_mode(v, info.data.get("metric"))

    @model_validator(mode="after")
    def _mode(self) -> EarlyStoppingConfig:
        if self.mode == "auto":
            object.__setattr__(self, "mode", better(self.metric))
        return self


class TestEpochConfig(Section):
    """Which epoch's weights the test split is evaluated with.

    `best` (the default) is the epoch with the best validation `metric`. Without a
    metric it is early stopping's metric when early stopping is on, else val_loss
    (smaller is better): what ftmatrix always did. `last` is the last epoch trained (the
    one early stopping stopped at, if it did). An epoch whose metric is NaN or infinite
    is never the best; when no epoch has a finite one, the last is tested, and
    result.json records the tested epoch and the rule either way."""

    __test__ = False  # not a pytest test class, whatever its name

    epoch: Literal["best", "last"] = Field(
        "best", description="best: by the validation metric below; last: the last epoch."
    )
    metric: Monitored | None = Field(
        None,
        description="best: the validation metric that ranks epochs; default: early "
        "stopping's when it is on, else val_loss.",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="best: min or max is better; auto: min for losses, max otherwise."
    )

    @model_validator(mode="before")
    @classmethod
    def _from_word(cls, value: Any) -> Any:
        # `test: last` == `test: {epoch: last}`
        return {"epoch": value} if isinstance(value, str) else value

    @field_validator("mode")
    @classmethod
    def _mode_fits_metric(cls, v: str, info: ValidationInfo) -> str:
        if v != "auto" and info.data.get("metric") is None and "metric" in info.data:
            raise ValueError(f"mode {v} needs a metric: give test.metric too")
        return check_mode(v, info.data.get("metric"))

    @model_validator(mode="after")
    def _mode(self) -> TestEpochConfig:
        if self.mode == "auto" and self.metric is not None:
            object.__setattr__(self, "mode", better(self.metric))
        return self


class TrainConfig(Section):
    """The training loop."""

    epochs: Int = Field(3, gt=0, le=MAX_EPOCHS, description="Number of epochs.")
    batch_size: Int = Field(
        32, gt=0, le=MAX_BATCH, description="Examples per optimizer step (per micro-batch)."
    )
    lr: Float = Field(1e-3, gt=0, le=10, description="Peak learning rate.")
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig, description="Optimizer; a name alone is enough: adamw."
    )
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="Learning-rate schedule (name or mapping)."
    )
    loss: LossConfig = Field(
        default_factory=LossConfig, description="Training loss (name or mapping)."
    )
    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig, description="Stop when validation stops improving."
    )
    metrics: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Extra test metrics of your own: 'module:function' or "
        "'file.py:function', each called as function(y_true, y_pred) -> float on the test "
        "split and recorded in result.json's test metrics under the function's name.",
    )
    test: TestEpochConfig = Field(
        default_factory=TestEpochConfig,
        description="Which epoch's weights are tested: best (by a validation metric) or "
        "last; a word alone is enough: `test: last`.",
    )
    lr_schedule: dict[Int, Float] | None = Field(
        None,
        description="Piecewise learning rate by epoch: {first_epoch: lr}, 1-based; replaces "
        "`lr` (a scheduler, if any, scales it).",
    )
    batch_size_schedule: dict[Int, Int] | None = Field(
        None, description="Piecewise batch size by epoch: {first_epoch: batch_size}, 1-based."
    )
    weight_decay_schedule: dict[Int, Float] | None = Field(
        None, description="Piecewise weight decay by epoch: {first_epoch: value}, 1-based."
    )
    grad_clip: Float | None = Field(
        None, gt=0, le=1e6, description="Clip the gradient norm to this."
    )
    grad_accumulation: Int = Field(
        1, gt=0, le=MAX_BATCH, description="Micro-batches per optimizer step."
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast on GPUs that support it, fp32 otherwise."
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto: cuda, then mps, then cpu."
    )
    seed: Seed = Field(0, description="Seeds every random generator of the job.")
    topk: Int = Field(5, gt=0, le=100_000, description="k of the top-k test accuracy.")
    log_every: Int = Field(10, gt=0, le=1_000_000, description="Steps between progress lines.")
    compile: bool = Field(False, description="Opt in to torch.compile.")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for factory in v:
            components.check_factory(factory)
        names = [components.metric_name(f) for f in v]
        taken = sorted(set(names) & set(TestMetrics.model_fields))
        if taken:
            raise ValueError(f"an extra metric may not take a built-in metric's name: {taken}")
        if len(set(names)) != len(names):
            raise ValueError(f"two extra metrics share a name: {', '.join(names)}")
        return v

    @field_validator("lr_schedule", "batch_size_schedule", "weight_decay_schedule")
    @classmethod
    def _schedule(cls, v: dict[int, float] | None, info) -> dict[int, float] | None:
        if v is None:
            return v
        if not v or min(v) != 1:
            raise ValueError("a schedule must start at epoch 1")
        if max(v) > MAX_EPOCHS:
            raise ValueError(f"a schedule's epochs must be at most {MAX_EPOCHS:,}")
        if info.field_name == "batch_size_schedule" and any(
            not 0 < x <= MAX_BATCH for x in v.values()
        ):
            raise ValueError(f"batch sizes must lie in 1..{MAX_BATCH:,}")
        if info.field_name == "weight_decay_schedule" and any(not 0 <= x <= 10 for x in v.values()):
            raise ValueError("weight decays must lie in [0, 10]")
        if info.field_name == "lr_schedule" and any(not 0 < x <= 10 for x in v.values()):
            raise ValueError("learning rates must lie in (0, 10]")
        return dict(sorted(v.items()))

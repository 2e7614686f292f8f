"""JobConfig: the pydantic model of ONE training job.

A matrix (ftmatrix/matrix/) is expanded into many of these; the trainer process reads
one from `RUN_DIR/config.json`. Every field has a default and a description, so the
JSON Schema printed by `ftmatrix schema` documents the whole language.

Imports only the standard library and pydantic: validation must never load torch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ftmatrix import catalog
from ftmatrix.bounds import MAX_BATCH, MAX_EPOCHS, MAX_EXAMPLES, Float, Int, Seed

Task = Literal["image-classification", "text-classification"]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, instances are immutable,
    and no float setting is nan or infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _name_validator(names: dict[str, tuple[str, ...]], what: str):
    """A before-validator that maps accepted spellings to one canonical name."""

    def check(value: Any) -> str:
        name = catalog.canonical(value, names)
        if name is None:
            raise PydanticCustomError(
                "unknown_name",
                "unknown {what} '{value}'; expected one of: {choices}{hint}",
                {
                    "what": what,
                    "value": value,
                    "choices": ", ".join(names),
                    "hint": catalog.did_you_mean(str(value).lower(), names),
                },
            )
        return name

    return check


def _named(cls_name: str):
    """Lets a section be written as its name alone: `loss: focal` == `loss: {name: focal}`."""

    def wrap(value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    wrap.__name__ = f"{cls_name}_from_name"
    return wrap


# --------------------------------------------------------------------------- data


class AugmentConfig(Section):
    """Training-time image augmentation, each image its own draw from torchvision's
    ranges, a batch at a time on the training device. Ignored for text."""

    enabled: bool = Field(False, description="Turn augmentation on; the settings below apply.")
    horizontal_flip: Float = Field(
        0.5, ge=0, le=1, description="Probability of a random horizontal flip."
    )
    resized_crop: bool = Field(True, description="RandomResizedCrop to the model's image size.")
    crop_scale: tuple[Float, Float] = Field(
        (0.6, 1.0), description="Area fraction range kept by the random resized crop."
    )
    affine_degrees: Float = Field(0.0, ge=0, le=180, description="RandomAffine rotation range.")
    affine_translate: Float = Field(
        0.0, ge=0, le=1, description="RandomAffine translation as a fraction of the image."
    )
    grayscale: Float = Field(0.0, ge=0, le=1, description="Probability of RandomGrayscale.")
    color_jitter: Float = Field(
        0.0, ge=0, le=1, description="ColorJitter strength for brightness, contrast, saturation."
    )

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError("crop_scale must be (low, high) with 0 < low <= high <= 1")
        return v


# Text files: a single table, never split into train/val/test by itself.
TEXT_FILES = (".csv", ".tsv", ".jsonl", ".json")


class DataConfig(Section):
    """Where the examples come from and how they are split."""

    builtin: Literal["digits"] | None = Field(
        None, description="A dataset that ships offline: 'digits' (sklearn's 8x8 digits)."
    )
    path: str | None = Field(
        None,
        description=(
            "An image folder (train/ val/ test/ subfolders, or one folder of class folders), "
            "a .csv or .jsonl file of texts, or a folder saved by datasets' save_to_disk. "
            "Relative paths are relative to the matrix file."
        ),
    )
    hf_dataset: str | None = Field(
        None, description="A Hugging Face datasets name, loaded with datasets.load_dataset."
    )
    hf_config: str | None = Field(None, description="The datasets configuration name, if any.")
    text_column: str = Field("text", description="Column holding the text (text tasks).")
    label_column: str = Field("label", description="Column holding the class label.")
    val_fraction: Float = Field(
        0.1, ge=0, lt=1, description="Validation share when the data has no val split."
    )
    test_fraction: Float = Field(
        0.2, ge=0, lt=1, description="Test share when the data has no test split."
    )
    split_seed: Seed = Field(0, description="Seed of the stratified split (fixed across jobs).")
    limit: Int | None = Field(
        None,
        gt=0,
        le=MAX_EXAMPLES,
        description="Keep a stratified subset of this many examples (quick runs).",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Training-time image augmentation."
    )
    num_workers: Int | None = Field(
        None,
        ge=0,
        le=1024,
        description=(
            "DataLoader worker processes; default none: batches are slices of the decoded "
            "tensors and augmentation runs batched on the device."
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("builtin", "path", "hf_dataset") if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "data_source",
                "give exactly one of data.builtin, data.path, data.hf_dataset (got {given})",
                {"given": ", ".join(given) or "none"},
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        return self

    @field_validator("test_fraction")
    @classmethod
    def _test_split(cls, v: float, info: ValidationInfo) -> float:
        # data that never has a test split of its own; folders are checked at pre-flight
        path = info.data.get("path") or ""
        splitless = info.data.get("builtin") is not None or path.lower().endswith(TEXT_FILES)
        if v == 0 and splitless:
            raise ValueError(
                "test_fraction 0 leaves no test examples: this data has no test split of "
                "its own; use a test share above 0"
            )
        return v


# -------------------------------------------------------------------------- model


class ModelConfig(Section):
    """The network: a torchvision classifier or a Hugging Face model."""

    name: str = Field(
        ...,
        description="torchvision model name (resnet18, mobilenet_v2, ...) or a Hugging Face "
        "hub id / local path (google/vit-base-patch16-224).",
    )
    source: Literal["auto", "torchvision", "hf"] = Field(
        "auto",
        description="Where `name` lives; auto: torchvision if it is one of its models, "
        "else Hugging Face (hub ids contain '/').",
    )
    pretrained: bool = Field(
        True, description="Load the official weights; false builds the same architecture empty."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides for the model's config (Hugging Face config fields), e.g. a "
        "tiny ViT: {hidden_size: 32, num_hidden_layers: 2}.",
    )
    head_dropout: Float = Field(0.0, ge=0, lt=1, description="Dropout before the new head.")
    freeze_backbone: bool = Field(False, description="Train only the classification head.")
    image_size: Int = Field(224, gt=0, le=4096, description="Input side in pixels (images).")
    max_length: Int = Field(128, gt=0, le=65536, description="Max tokens per text.")

    @field_validator("config")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number (got {value})")
        return v

    @field_validator("image_size")
    @classmethod
    def _whole_patches(cls, v: int, info: ValidationInfo) -> int:
        # torchvision's ViTs cut the image into whole patches (vit_b_16: 16 pixels);
        # Hugging Face models are checked at pre-flight, where their config is read
        name, source = info.data.get("name"), info.data.get("source")
        patch = vit_patch(name) if source in ("auto", "torchvision") else None
        if patch is not None and v % patch:
            raise ValueError(
                f"{name} cuts images into {patch}x{patch} patches: image_size must be a "
                f"multiple of {patch}"
            )
        return v

    @model_validator(mode="after")
    def _resolve_source(self) -> ModelConfig:
        source = self.source
        if source == "auto":
            if self.name in catalog.TORCHVISION_CLASSIFIERS:
                source = "torchvision"
            elif "/" in self.name or self.name.startswith((".", "~")):
                source = "hf"
            else:
                raise PydanticCustomError(
                    "unknown_model",
                    "unknown model '{name}': not a torchvision classifier{hint}, and not a "
                    "Hugging Face id (org/name) or path; write `source: hf` for a hub id "
                    "without an organisation",
                    {
                        "name": self.name,
                        "hint": catalog.did_you_mean(self.name, catalog.TORCHVISION_CLASSIFIERS),
                    },
                )
        elif source == "torchvision" and self.name not in catalog.TORCHVISION_CLASSIFIERS:
            raise PydanticCustomError(
                "unknown_model",
                "unknown torchvision model '{name}'{hint}",
                {
                    "name": self.name,
                    "hint": catalog.did_you_mean(self.name, catalog.TORCHVISION_CLASSIFIERS),
                },
            )
        if source == "torchvision" and self.config:
            raise ValueError("model.config overrides apply to Hugging Face models only")
        object.__setattr__(self, "source", source)
        return self


def vit_patch(name: Any) -> int | None:
    """The patch size of a torchvision ViT by name (vit_b_16 -> 16), else None."""
    if not isinstance(name, str) or name not in catalog.TORCHVISION_CLASSIFIERS:
        return None
    if not name.startswith("vit_"):
        return None
    return int(name.rsplit("_", 1)[1])


# --------------------------------------------------------------------------- lora


class LoraConfig(Section):
    """Low-rank adaptation through peft."""

    enabled: bool = Field(False, description="Wrap the model with LoRA adapters.")
    r: Int = Field(8, gt=0, le=4096, description="Rank of the update matrices.")
    alpha: Float = Field(
        16, gt=0, le=1_000_000, description="Scaling numerator (scale = alpha / r)."
    )
    dropout: Float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA branch.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        description="Linear layers to adapt. Familiar names are mapped to the model "
        "(query/key/value mean q_proj/k_proj/v_proj on a transformers-5 ViT).",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train.")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved; default: the classifier head."
    )

    @model_validator(mode="after")
    def _targets(self) -> LoraConfig:
        if self.enabled and not self.target_modules:
            raise ValueError("LoRA is enabled but lora.target_modules is empty")
        return self


# -------------------------------------------------------------------------- train


class OptimizerConfig(Section):
    """The optimizer and its settings (those of other optimizers are ignored)."""

    name: str = Field("adamw", description="sgd | adam | adamw.")
    weight_decay: Float = Field(0.0, ge=0, le=10, description="Weight decay (decoupled for adamw).")
    momentum: Float = Field(0.0, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum (needs momentum > 0).")
    betas: tuple[Float, Float] = Field((0.9, 0.999), description="Adam/AdamW betas.")
    eps: Float = Field(1e-8, gt=0, le=1, description="Adam/AdamW epsilon.")

    _from_name = model_validator(mode="before")(_named("optimizer"))
    _name = field_validator("name", mode="before")(_name_validator(catalog.OPTIMIZERS, "optimizer"))

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
    patience: Int = Field(
        2, ge=0, le=MAX_EPOCHS, description="plateau: epochs without improvement."
    )
    factor: Float = Field(0.1, gt=0, lt=1, description="plateau: decay factor.")

    _from_name = model_validator(mode="before")(_named("scheduler"))
    _name = field_validator("name", mode="before")(_name_validator(catalog.SCHEDULERS, "scheduler"))


class LossConfig(Section):
    """The training loss. Regression losses compare softmax output with one-hot targets."""

    name: str = Field("cross_entropy", description="cross_entropy | focal | mse | l1 | smooth_l1.")
    label_smoothing: Float = Field(0.0, ge=0, lt=1, description="cross_entropy: smoothing.")
    class_weights: list[Float] | Literal["balanced"] | None = Field(
        None,
        max_length=100_000,
        description="cross_entropy/focal: one weight per class, or 'balanced'.",
    )
    gamma: Float = Field(2.0, ge=0, le=100, description="focal: focusing parameter.")
    alpha: Float | None = Field(
        None, ge=0, le=1, description="focal: weight of the positive term (None: off)."
    )
    beta: Float = Field(1.0, gt=0, le=1_000, description="smooth_l1: where L1 turns into L2.")

    _from_name = model_validator(mode="before")(_named("loss"))
    _name = field_validator("name", mode="before")(_name_validator(catalog.LOSSES, "loss"))

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
        metric = info.data.get("metric")
        if metric is None or v == "auto":
            return v
        better = "min" if metric.endswith("loss") else "max"
        if v != better:
            raise ValueError(
                f"mode {v} contradicts metric {metric}: a {'loss' if better == 'min' else 'score'}"
                f" is better when {'smaller' if better == 'min' else 'larger'} (mode {better}, "
                f"or auto)"
            )
        return v

    @model_validator(mode="after")
    def _mode(self) -> EarlyStoppingConfig:
        if self.mode == "auto":
            object.__setattr__(self, "mode", "min" if self.metric.endswith("loss") else "max")
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

    @field_validator("batch_size_schedule", "weight_decay_schedule")
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
        return dict(sorted(v.items()))


# ------------------------------------------------------------------------ distill


class DistillConfig(Section):
    """Knowledge distillation: soft targets from a teacher plus the hard-label loss."""

    enabled: bool = Field(False, description="Train against a teacher's soft targets.")
    teacher: ModelConfig | None = Field(
        None, description="The teacher as a model spec (its pretrained weights are used)."
    )
    teacher_job: str | None = Field(
        None,
        description="Use the best weights of another job of the same matrix: its id, or "
        "settings that pick exactly one job, e.g. 'model.name=resnet50'.",
    )
    temperature: Float = Field(
        4.0, gt=0, le=1_000, description="Softmax temperature of both models."
    )
    alpha: Float = Field(
        0.5, ge=0, le=1, description="Weight of the soft-target KL term (1 - alpha: hard loss)."
    )

    @model_validator(mode="after")
    def _teacher(self) -> DistillConfig:
        if self.enabled and self.teacher is None and self.teacher_job is None:
            raise ValueError("distillation is enabled but no distill.teacher or teacher_job")
        if self.teacher is not None and self.teacher_job is not None:
            raise ValueError("give distill.teacher or distill.teacher_job, not both")
        return self


class OutputConfig(Section):
    """What the job keeps."""

    save_weights: Literal["best", "last", "none"] = Field(
        "best", description="Which weights go to weights/ (LoRA: adapter plus head)."
    )
    save_predictions: bool = Field(
        True, description="Write test predictions (predictions.npz) beside result.json."
    )


# -------------------------------------------------------------------------- job


class JobConfig(Section):
    """Everything one training job needs."""

    task: Task = Field("image-classification", description="What the model predicts.")
    data: DataConfig = Field(..., description="Where the examples come from.")
    model: ModelConfig = Field(..., description="The network.")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Epochs, batch size, optimizer, schedule, loss."
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig, description="Knowledge distillation."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="What is kept.")

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in catalog.TASKS:
            raise PydanticCustomError(
                "unknown_name",
                "unknown task '{value}'; expected one of: {choices}{hint}",
                {
                    "value": v,
                    "choices": ", ".join(catalog.TASKS),
                    "hint": catalog.did_you_mean(v, catalog.TASKS),
                },
            )
        return v

    @model_validator(mode="after")
    def _combinations(self) -> JobConfig:
        for _key, message in cross_check(self):
            raise ValueError(message)
        return self


def cross_check(cfg: JobConfig) -> list[tuple[str, str]]:
    """Combinations of sections that cannot work, as (dotted key, message) pairs.

    Kept outside the model so the planner can check many jobs built from cached,
    already validated sections without validating each job from scratch.
    """
    problems = []
    if cfg.task == "text-classification":
        if cfg.model.source == "torchvision":
            problems.append(
                (
                    "model.name",
                    f"task text-classification needs a Hugging Face text model, "
                    f"not the torchvision model '{cfg.model.name}'",
                )
            )
        if cfg.data.builtin == "digits":
            problems.append(("data.builtin", "'digits' is an image dataset; the task is text"))
    if cfg.lora.enabled and cfg.model.freeze_backbone:
        problems.append(
            ("lora.enabled", "lora.enabled and model.freeze_backbone are both set: pick one")
        )
    return problems

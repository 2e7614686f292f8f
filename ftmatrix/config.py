"""JobConfig: the pydantic model of ONE training job.

A matrix (ftmatrix/matrix/) is expanded into many of these; the trainer process reads
one from `RUN_DIR/config.json`. Every field has a default and a description, so the
JSON Schema printed by `ftmatrix schema` documents the whole language.

The `train:` section lives in training.py, the base of every section in sections.py;
both are re-exported here. Imports only the standard library and pydantic: validation
must never load torch.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ftmatrix import catalog, components, custom
from ftmatrix.bounds import MAX_EXAMPLES, Float, Int, Seed
from ftmatrix.peft_methods import PeftSettings
from ftmatrix.sections import Section
from ftmatrix.sft import SftConfig
from ftmatrix.training import (  # re-exported: `from ftmatrix.config import TrainConfig`
    EarlyStoppingConfig,
    LossConfig,
    OptimizerConfig,
    SchedulerConfig,
    TestEpochConfig,
    TrainConfig,
)

__all__ = [
    "EarlyStoppingConfig",
    "JobConfig",
    "LossConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TestEpochConfig",
    "TrainConfig",
]

Task = Literal["image-classification", "text-classification", "causal-lm"]


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

    builtin: Literal["digits", "reverse-digits"] | None = Field(
        None,
        description="A dataset that ships offline: 'digits' (sklearn's 8x8 digits); "
        "'reverse-digits' (task causal-lm: 'rev 123=' -> '321', generated from split_seed, "
        "data.limit pairs, 2000 by default).",
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
    factory: str | None = Field(
        None,
        description="Your own data: 'module:function' or 'file.py:function' (relative to "
        "the matrix), called in the job process as function(**data.config) and returning "
        "the splits as tensors or Datasets (see trainers/own_data.py); used as given: "
        "no resizing, normalisation or augmentation.",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for data.factory."
    )
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
    sft: SftConfig = Field(
        default_factory=SftConfig,
        description="Task causal-lm: prompt/response columns, packing, answer extraction.",
    )

    _factory = field_validator("factory")(components.check_factory)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        sources = ("builtin", "path", "hf_dataset", "factory")
        given = [k for k in sources if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "data_source",
                "give exactly one of data.builtin, data.path, data.hf_dataset, data.factory "
                "(got {given})",
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
    factory: str | None = Field(
        None,
        description="Your own network: 'module:function' or 'file.py:function' (relative "
        "to the matrix), called in the job process as function(num_classes=N, "
        "**model.config) and returning an nn.Module that maps normalised images "
        "(N, 3, image_size, image_size) to logits; `name` is then only its label.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Task causal-lm: recompute activations in the backward pass (less "
        "memory, about a third more compute); the same training, so not in the job id.",
    )

    _factory = field_validator("factory")(components.check_factory)

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
        if self.factory is not None:  # your own network: `name` only labels it
            return self
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


class LoraConfig(PeftSettings):
    """Low-rank adaptation, or another PEFT method (`method`, peft_methods.py), through peft."""

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
    keep_checkpoint: bool = Field(
        False,
        description="Keep checkpoint/ (what a resume needs: the last epoch's full state) "
        "after the job is done; by default it is removed once result.json is written.",
    )


# -------------------------------------------------------------------------- job


class JobConfig(Section):
    """Everything one training job needs."""

    task: Task = Field("image-classification", description="What the model predicts.")
    data: DataConfig | None = Field(
        None, description="Where the examples come from (required unless script/function)."
    )
    model: ModelConfig | None = Field(
        None, description="The network (required unless script/function)."
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapters.")
    train: TrainConfig = Field(
        default_factory=TrainConfig, description="Epochs, batch size, optimizer, schedule, loss."
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig, description="Knowledge distillation."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="What is kept.")
    # your own code instead of the built-in trainer (custom.py)
    script: custom.ScriptConfig | None = Field(None, description="Run this command as the job.")
    function: str | None = Field(None, description="Call 'module:function' as the job.")
    params: dict[str, Any] = Field(default_factory=dict, description="Your code's own settings.")

    _function = field_validator("function")(custom.check_function)
    _params = field_validator("params")(custom.check_params)

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
    problems: list[tuple[str, str]] = []
    if cfg.script is not None and cfg.function is not None:
        problems.append(("function", "give script or function, not both"))
    if custom.is_own(cfg):
        return problems
    for key in ("data", "model"):
        if getattr(cfg, key) is None:
            problems.append((key, f"required: every job needs `{key}:` (or a script/function)"))
    if cfg.data is None or cfg.model is None:
        return problems
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
    if cfg.data.factory is not None and cfg.task != "image-classification":
        problems.append(
            ("data.factory", "data.factory gives tensors: task image-classification only "
             "(any tensor input, for your own model.factory too)")
        )  # fmt: skip
    problems += causal_lm_problems(cfg)
    if cfg.lora.enabled and cfg.model.freeze_backbone:
        problems.append(
            ("lora.enabled", "lora.enabled and model.freeze_backbone are both set: pick one")
        )
    return problems


def causal_lm_problems(cfg: JobConfig) -> list[tuple[str, str]]:
    """Settings that contradict task causal-lm, or need it."""
    assert cfg.data is not None and cfg.model is not None
    problems: list[tuple[str, str]] = []
    if cfg.task != "causal-lm":
        if cfg.data.builtin == "reverse-digits":
            problems.append(("data.builtin", "'reverse-digits' is a task causal-lm dataset"))
        if cfg.model.gradient_checkpointing:
            problems.append(
                ("model.gradient_checkpointing", "gradient checkpointing is built for task "
                 "causal-lm only")
            )  # fmt: skip
        return problems
    if cfg.model.source == "torchvision":
        problems.append(
            ("model.name", f"task causal-lm needs a Hugging Face causal language model "
             f"(e.g. a Llama or GPT-2 from model.config), not the torchvision model "
             f"'{cfg.model.name}'")
        )  # fmt: skip
    if cfg.data.builtin == "digits":
        problems.append(("data.builtin", "'digits' is an image dataset; the task is causal-lm"))
    if cfg.data.hf_dataset is not None:
        problems.append(("data.hf_dataset", "task causal-lm reads a .jsonl file or a builtin"))
    if cfg.data.path is not None and not cfg.data.path.lower().endswith(".jsonl"):
        problems.append(("data.path", "task causal-lm reads a .jsonl file of prompt/response"))
    if cfg.distill.enabled:
        problems.append(("distill.enabled", "distillation is not built for task causal-lm"))
    if cfg.model.freeze_backbone:
        problems.append(("model.freeze_backbone", "a causal LM has no head to train alone"))
    return problems

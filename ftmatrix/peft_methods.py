"""PEFT methods beside LoRA: the `lora:` section's `method` and the fields only some
methods read.

`lora.method` is an axis like any other (`lora.method: [lora, dora, ia3]`). Each method
reads its own subset of the section's fields (`FIELDS`); identity.py keeps only those in
a job's normal form, so a setting that cannot matter (IA³'s rank, LoHa's bias) never
changes a job id, and `method: lora` with no new field normalises exactly as the LoRA
section did before methods existed: every existing matrix keeps its job ids.

Standard library and pydantic only, like every schema module; the trainer builds the
adapters in trainers/peft_methods.py through peft's own configs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ftmatrix.bounds import Int
from ftmatrix.sections import Section

Method = Literal[
    "lora", "dora", "rslora", "loha", "lokr", "ia3", "adalora", "vera", "prompt_tuning",
    "prefix_tuning",
]  # fmt: skip
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]
Quantize = Literal["none", "4bit", "8bit"]

# Methods that prepend learned virtual tokens: they need a Hugging Face text model.
VIRTUAL_TOKENS = ("prompt_tuning", "prefix_tuning")
_LORA_LIKE = ("r", "alpha", "dropout", "target_modules", "bias", "modules_to_save")
# The fields of the `lora:` section each method reads (`enabled` and `method` aside).
FIELDS: dict[str, tuple[str, ...]] = {
    "lora": _LORA_LIKE,
    "dora": _LORA_LIKE,
    "rslora": _LORA_LIKE,
    "loha": ("r", "alpha", "dropout", "target_modules", "modules_to_save"),
    "lokr": ("r", "alpha", "dropout", "target_modules", "modules_to_save"),
    "ia3": ("target_modules", "feedforward_modules", "modules_to_save"),
    "adalora": (*_LORA_LIKE, "init_r"),
    "vera": ("r", "dropout", "target_modules", "modules_to_save"),
    "prompt_tuning": ("num_virtual_tokens", "modules_to_save"),
    "prefix_tuning": ("num_virtual_tokens", "modules_to_save"),
}
# Fields added with the methods: absent from a job's normal form at their default, so
# the ids of jobs written before them stand.
LATER_DEFAULTS: dict[str, Any] = {"quantize": "none"}


class PeftSettings(Section):
    """The settings of the `lora:` section that choose among PEFT methods (the base of
    config.LoraConfig, which adds rank, alpha, dropout, targets, bias)."""

    method: Method = Field(
        "lora",
        description="The adapter: lora; dora (weight-decomposed LoRA); rslora (rank-stabilised "
        "scale alpha/sqrt(r)); loha, lokr (Hadamard / Kronecker products); ia3 (learned "
        "scaling vectors); adalora (adaptive rank, r is the target rank); vera (shared "
        "random projections, trained scaling vectors); prompt_tuning, prefix_tuning (learned "
        "virtual tokens, Hugging Face text models only).",
    )
    init_r: Int = Field(
        12, gt=0, le=4096, description="AdaLoRA: the rank every layer starts from (above r)."
    )
    feedforward_modules: list[str] = Field(
        default_factory=list,
        description="IA³: the target layers whose input (not output) is scaled, the "
        "feed-forward layers of the original method.",
    )
    num_virtual_tokens: Int = Field(
        20, gt=0, le=4096, description="Prompt/prefix tuning: learned tokens prepended."
    )
    quantize: Quantize = Field(
        "none",
        description="Load the frozen base in 4-bit (QLoRA, NF4) or 8-bit through "
        "bitsandbytes; needs a CUDA device and a Hugging Face model.",
    )

    @model_validator(mode="after")
    def _method_fields(self) -> PeftSettings:
        for message in method_problems(self):
            raise ValueError(message)
        return self


def method_problems(section: Any) -> list[str]:
    """What is wrong with one method's settings on their own, as messages."""
    if not getattr(section, "enabled", False):
        return []
    problems = []
    if section.method == "adalora" and section.init_r <= section.r:
        problems.append(
            f"adalora prunes from init_r ({section.init_r}) ranks down to r ({section.r}): "
            "init_r must be above r"
        )
    if section.method == "ia3":
        stray = [m for m in section.feedforward_modules if m not in section.target_modules]
        if stray:
            problems.append(f"ia3 feedforward_modules {stray} are not in target_modules")
    return problems


def normalized_method(d: dict[str, Any]) -> dict[str, Any]:
    """The normal form of an enabled `lora:` section (JSON data): only the fields its
    method reads; `method` itself only when it is not plain LoRA."""
    method = d.get("method", "lora")
    keep = {"enabled": d["enabled"], **{k: d[k] for k in FIELDS[method] if k in d}}
    if method != "lora":
        keep["method"] = method
    for name, default in LATER_DEFAULTS.items():
        if d.get(name, default) != default:
            keep[name] = d[name]
    if keep.get("modules_to_save", 0) is None:
        del keep["modules_to_save"]
    return keep

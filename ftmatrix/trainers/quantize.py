"""Quantised bases (`lora.quantize: 4bit | 8bit`): the frozen Hugging Face base loaded
through bitsandbytes, ready for an adapter.

4bit is the QLoRA recipe (Dettmers et al., 2023): NF4 weights, their scales quantised
again (double quantisation), matrix products computed in bf16. 8bit is LLM.int8().
The base is quantised while it loads, on the job's device: a pretrained model is never
held in full precision first. A base without pretrained weights (`pretrained: false`)
is built from its config (seeded, as every job's model), written to a temporary folder
and loaded back quantised from there, since transformers quantises only in
`from_pretrained`.

Pre-flight refuses the setting without CUDA (what the product supports); the loading
itself is device-agnostic, and bitsandbytes' CPU backend is what the tests run it on.
"""

from __future__ import annotations

import importlib.util
import tempfile
from typing import Any

import torch
from torch import nn

from ftmatrix.config import JobConfig
from ftmatrix.trainers import compute

# Names of classification heads (models.py): never quantised, they are new and train in full.
HEADS = ("classifier", "score", "classification_head")


def wanted(cfg: JobConfig) -> str | None:
    """The quantisation this job's base loads with: 4bit, 8bit, or None."""
    if not cfg.lora.enabled or cfg.lora.quantize == "none":
        return None
    return cfg.lora.quantize


def bnb_config(setting: str, *, skip: tuple[str, ...] = ()):
    """transformers' BitsAndBytesConfig for `setting`; `skip`: modules kept unquantised."""
    from transformers import BitsAndBytesConfig

    keep = list(skip) or None  # None: transformers' own choice (the LM head stays whole)
    if setting == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=keep,
        )
    if setting == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
    raise ValueError(f"unknown lora.quantize {setting!r}")


def load(
    auto: Any, cfg: JobConfig, config: Any, *, skip: tuple[str, ...] = (), **kwargs: Any
) -> nn.Module:
    """The model of transformers auto class `auto` for `config`, quantised as `cfg`
    says, on the job's device; `skip`: modules left unquantised (a classifier's head,
    HEADS). `kwargs` go to `from_pretrained` (ignore_mismatched_sizes for a new head)."""
    setting = wanted(cfg)
    assert setting is not None
    options = {
        "quantization_config": bnb_config(setting, skip=skip),
        "device_map": {"": str(compute.device(cfg.train.device))},
    }
    if cfg.model.pretrained:
        return auto.from_pretrained(cfg.model.name, config=config, **options, **kwargs)
    with tempfile.TemporaryDirectory(prefix="ftmatrix-base-") as folder:
        auto.from_config(config).save_pretrained(folder)
        model = auto.from_pretrained(folder, **options)
    model.name_or_path = model.config._name_or_path = ""  # as from_config: no folder for peft
    return model


def prepare(model: nn.Module) -> nn.Module:
    """peft's preparation of a quantised base for training an adapter on it: every base
    weight frozen, the layers kept in 16 bits (norms, embeddings) cast to fp32 for a
    stable loss. Gradient checkpointing stays `model.gradient_checkpointing`'s choice."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def is_quantized(model: nn.Module) -> bool:
    """Whether some layer of `model` is a bitsandbytes layer (4-bit or 8-bit)."""
    return any(type(m).__module__.startswith("bitsandbytes") for m in model.modules())


def problems(cfg: JobConfig) -> list[str]:
    """Why this job's base cannot load quantised here (empty when it can)."""
    why = []
    if not torch.cuda.is_available() or cfg.train.device in ("cpu", "mps"):
        why.append("bitsandbytes quantisation runs on a CUDA device and this job has none")
    if cfg.model.source != "hf" or cfg.model.factory is not None:
        why.append("only Hugging Face models load quantised")
    if importlib.util.find_spec("bitsandbytes") is None:
        why.append("bitsandbytes is not installed (pip install 'bitsandbytes>=0.48')")
    return why

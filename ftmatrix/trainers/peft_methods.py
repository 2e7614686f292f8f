"""Every PEFT method of `lora.method`, built through peft's own configs.

The layer names a user writes are mapped to the model in hand by trainers/lora.py
(`query` is `q_proj` on a transformers-5 ViT). The head trains in full (it is new), as
under plain LoRA, unless `modules_to_save` says otherwise. AdaLoRA's rank allocation
runs after each optimizer step (`after_steps`), as peft's method needs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ftmatrix.config import JobConfig, LoraConfig
from ftmatrix.peft_methods import VIRTUAL_TOKENS
from ftmatrix.trainers import lora, quantize
from ftmatrix.trainers.models import ConfigError

TASK_TYPES = {"text-classification": "SEQ_CLS", "causal-lm": "CAUSAL_LM"}


def wrap(
    model: nn.Module, spec: LoraConfig, *, head: str | None, task: str = "",
    total_steps: int = 1000,
) -> nn.Module:  # fmt: skip
    """The model with `spec.method`'s adapters; the rest frozen but `modules_to_save`
    (default: the head). The task's peft task type is what prompt and prefix tuning
    need; `total_steps` is AdaLoRA's schedule length."""
    from peft import get_peft_model

    task_type = TASK_TYPES.get(task)
    if spec.quantize != "none":  # the base was loaded quantised (models.py, sft_data.py)
        if not quantize.is_quantized(model):
            raise ConfigError(f"lora.quantize {spec.quantize}: this base was not loaded quantised")
        model = quantize.prepare(model)

    config = peft_config(model, spec, head=head, task_type=task_type, total_steps=total_steps)
    return get_peft_model(model, config)


def peft_config(
    model: nn.Module, spec: LoraConfig, *, head: str | None, task_type: str | None,
    total_steps: int,
):  # fmt: skip
    """peft's config object for `spec` on `model`."""
    import peft

    method = spec.method
    keep = spec.modules_to_save if spec.modules_to_save is not None else ([head] if head else None)
    if method in ("prompt_tuning", "prefix_tuning"):
        if task_type is None:
            raise ConfigError(
                f"lora.method {method} prepends virtual tokens: it needs a Hugging Face text "
                "model (task text-classification or causal-lm)"
            )
        cls = peft.PromptTuningConfig if method == "prompt_tuning" else peft.PrefixTuningConfig
        # SEQ_CLS: peft trains the classifier head itself; modules_to_save adds to it
        extra = {"modules_to_save": spec.modules_to_save} if spec.modules_to_save else {}
        return cls(task_type=task_type, num_virtual_tokens=spec.num_virtual_tokens, **extra)
    excluded = head or "\x00"
    targets = lora.resolve_targets(model, spec.target_modules, head=excluded)
    common = {"target_modules": targets, "modules_to_save": keep}
    if method in ("lora", "dora", "rslora"):
        return peft.LoraConfig(
            r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias=spec.bias,
            use_dora=method == "dora", use_rslora=method == "rslora", **common,
        )  # fmt: skip
    if method == "loha":
        return peft.LoHaConfig(r=spec.r, alpha=spec.alpha, rank_dropout=spec.dropout, **common)
    if method == "lokr":
        return peft.LoKrConfig(r=spec.r, alpha=spec.alpha, rank_dropout=spec.dropout, **common)
    if method == "ia3":
        ff = lora.resolve_targets(model, spec.feedforward_modules, head=excluded)
        return peft.IA3Config(feedforward_modules=ff, **common)
    if method == "adalora":
        return peft.AdaLoraConfig(
            init_r=spec.init_r, target_r=spec.r, lora_alpha=spec.alpha,
            lora_dropout=spec.dropout, bias=spec.bias, total_step=max(total_steps, 3),
            tinit=0, tfinal=0, **common,
        )  # fmt: skip
    if method == "vera":
        return peft.VeraConfig(r=spec.r, vera_dropout=spec.dropout, **common)
    raise ConfigError(f"unknown lora.method {method}")


def after_steps(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """For AdaLoRA: reallocate ranks after each optimizer step (while the gradients the
    step used are still there), counting steps as peft's schedule does."""
    base = getattr(model, "base_model", None)
    if not hasattr(base, "update_and_allocate"):
        return
    steps = {"n": 0}

    def hook(_optimizer, _args, _kwargs) -> None:
        steps["n"] += 1
        base.update_and_allocate(steps["n"])

    optimizer.register_step_post_hook(hook)


def adapter_bytes(folder: Path) -> int:
    """Bytes on disk of the adapter files peft saved in `folder` (0 when none)."""
    if not folder.is_dir():
        return 0
    return sum(
        (folder / name).stat().st_size
        for name in os.listdir(folder)
        if name.startswith("adapter_") and (folder / name).is_file()
    )


def peak_memory(device: torch.device) -> int | None:
    """Peak bytes the device allocated (CUDA), else the process's peak resident size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss()


def peak_rss() -> int | None:
    """This process's peak resident set size in bytes: Linux's VmHWM, the high-water
    mark of its own memory since it started. Not getrusage's ru_maxrss, which on Linux
    keeps, across fork and exec, the size of the parent the job was started from (a
    runner holding 800 MiB would make every job report at least that)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError):
        pass
    try:  # no /proc (macOS): ru_maxrss, in bytes there, KiB elsewhere
        import resource
        import sys

        maxrss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return maxrss if sys.platform == "darwin" else maxrss * 1024
    except (ImportError, OSError):
        return None


def refusals(cfg: JobConfig) -> list[tuple[str, str]]:
    """(dotted key, reason) for adapter settings this machine or model cannot honour,
    found before any job starts (pre-flight runs them in its model process)."""
    spec = cfg.lora
    if not spec.enabled:
        return []
    problems = []
    if spec.method in VIRTUAL_TOKENS and cfg.task not in TASK_TYPES:
        problems.append(
            ("lora.method", f"{spec.method} prepends virtual tokens: it needs a Hugging Face "
             f"text model, not task {cfg.task}")
        )  # fmt: skip
    if spec.method == "prefix_tuning" and cfg.task == "text-classification":
        # peft feeds the prefix as past key values; transformers 5's encoders take none
        # ("Model does not support past key values" at the first forward pass)
        problems.append(
            ("lora.method", "prefix_tuning needs a model that takes past key values (a "
             "causal LM); this text classifier does not: use prompt_tuning")
        )  # fmt: skip
    if spec.quantize != "none":
        problems += _quantize_problems(cfg)
    return problems


def _quantize_problems(cfg: JobConfig) -> list[tuple[str, str]]:
    return [
        ("lora.quantize", f"{cfg.lora.quantize} base refused: {why}")
        for why in quantize.problems(cfg)
    ]

"""Knowledge distillation (Hinton et al. 2015): soft targets from a teacher.

loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * hard loss

The teacher is a model spec (built with its pretrained weights) or the best weights of
a finished job of the same matrix: the sibling folder `../<teacher_job>/`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ftmatrix.config import DistillConfig, JobConfig
from ftmatrix.result import CONFIG, read_result
from ftmatrix.trainers import lora, models
from ftmatrix.trainers.models import Built, ConfigError


def teacher(
    spec: DistillConfig, *, job_dir: Path, cfg: JobConfig, class_names: list[str]
) -> tuple[torch.nn.Module, Built]:
    """The frozen teacher, in eval mode."""
    if spec.teacher_job is not None:
        folder = job_dir.parent / spec.teacher_job
        result = read_result(folder)
        if result is None or result.status != "done":
            raise ConfigError(f"teacher job {spec.teacher_job} has not finished ({folder})")
        teacher_cfg = JobConfig.model_validate_json((folder / CONFIG).read_text())
        built = models.build(teacher_cfg, len(class_names), class_names)
        model = built.model
        if teacher_cfg.lora.enabled:
            model = lora.wrap(model, teacher_cfg.lora, head=built.head)
        weights = folder / "weights"
        if (weights / "model.safetensors").exists():
            model.load_state_dict(load_file(str(weights / "model.safetensors")))
        elif (weights / "adapter_model.safetensors").exists():
            # adapter + head on the pretrained base, which from_pretrained just loaded
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, load_file(str(weights / "adapter_model.safetensors")))
        else:
            raise ConfigError(f"teacher job {spec.teacher_job} saved no weights ({weights})")
    else:
        spec_cfg = cfg.model_copy(update={"model": spec.teacher})
        built = models.build(spec_cfg, len(class_names), class_names)
        model = built.model
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return model, built


def loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / t, dim=-1),
        F.log_softmax(teacher_logits.float() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * (t * t) * soft + (1 - alpha) * hard

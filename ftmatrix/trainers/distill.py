"""Knowledge distillation (Hinton et al. 2015): soft targets from a teacher.

loss = alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * hard loss

The teacher is a model spec (built with its pretrained weights) or the best weights of
a finished job of the same matrix: the sibling folder `../<teacher_job>/`. It sees the
student's batches, re-normalised and resized to what it was built for; for texts it
must share the student's tokenizer (the same model family, or the same fitted data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import ValidationError

from ftmatrix.config import DistillConfig, JobConfig
from ftmatrix.result import (
    CONFIG,
    WEIGHTS,
    WEIGHTS_ADAPTER,
    WEIGHTS_MODEL,
    DamagedFile,
    read_result,
)
from ftmatrix.trainers import checkpoint, lora, models
from ftmatrix.trainers.models import Built, ConfigError


@dataclass
class Teacher:
    """A frozen teacher, in eval mode, fed the student's batches."""

    model: torch.nn.Module
    built: Built
    image_size: int
    student: Built

    @torch.no_grad()
    def logits(self, x) -> torch.Tensor:
        return models.logits(self.built, self.model, self._inputs(x))

    def _inputs(self, x):
        """Images as the teacher expects them: its normalisation and its input size
        (a ResNet teacher on ImageNet statistics for a ViT student on 0.5/0.5, say)."""
        if isinstance(x, dict):  # token ids: the teacher must share the tokenizer
            return x
        same = (self.built.mean, self.built.std) == (self.student.mean, self.student.std)
        if same and x.shape[-1] == self.image_size:
            return x
        stats = [
            torch.tensor(v, device=x.device).view(1, -1, 1, 1)
            for v in (self.student.mean, self.student.std, self.built.mean, self.built.std)
        ]
        x = x * stats[1] + stats[0]  # back to 0..1
        if x.shape[-1] != self.image_size:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
        return (x - stats[2]) / stats[3]


def teacher(
    spec: DistillConfig, *, job_dir: Path, cfg: JobConfig, student: Built, class_names: list[str]
) -> Teacher:
    """The teacher: another job's best weights, or a model spec with its pretrained ones."""
    if spec.teacher_job is not None:
        folder = job_dir.parent / spec.teacher_job
        try:
            result = read_result(folder)
        except DamagedFile as err:
            raise ConfigError(f"teacher job {spec.teacher_job}: {err}") from None
        if result is None or result.status != "done":
            raise ConfigError(f"teacher job {spec.teacher_job} has not finished ({folder})")
        try:
            teacher_cfg = JobConfig.model_validate_json((folder / CONFIG).read_bytes())
        except (OSError, ValidationError) as err:
            problem = f"teacher job {spec.teacher_job}: cannot read {CONFIG}: {err}"
            raise ConfigError(problem) from None
        built = models.build(teacher_cfg, len(class_names), class_names)
        model = built.model
        if teacher_cfg.lora.enabled:
            model = lora.wrap(model, teacher_cfg.lora, head=built.head)
        weights = folder / WEIGHTS
        if (weights / WEIGHTS_MODEL).exists():
            checkpoint.load_weights(weights / WEIGHTS_MODEL, model)
        elif (weights / WEIGHTS_ADAPTER).exists():
            # adapter + head on the pretrained base, which from_pretrained just loaded
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(model, load_file(str(weights / WEIGHTS_ADAPTER)))
        else:
            raise ConfigError(f"teacher job {spec.teacher_job} saved no weights ({weights})")
        image_size = teacher_cfg.model.image_size
    else:
        spec_cfg = cfg.model_copy(update={"model": spec.teacher})
        built = models.build(spec_cfg, len(class_names), class_names)
        model = built.model
        image_size = spec.teacher.image_size
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return Teacher(model, built, image_size, student)


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

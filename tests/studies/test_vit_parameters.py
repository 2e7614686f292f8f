"""HW4's parameter counts: ViT-base with LoRA r=8 and r=24 on query, key and value, two
classes, 128 px images, from a config with `pretrained: false` — the architecture the
pretrained path builds (position embeddings for vit-base's 224 px, interpolated), so
the counts are those the homework reports with the pretrained weights."""

from __future__ import annotations

import pytest
import torch

from ftmatrix.config import JobConfig
from ftmatrix.reports.tables import params_cell
from ftmatrix.trainers import lora, models
from tests.tiny import TINY_VIT


def hw4_job(r: int | None) -> JobConfig:
    lora_spec = {"enabled": False}
    if r is not None:
        lora_spec = {
            "enabled": True,
            "r": r,
            "alpha": 2 * r,
            "dropout": 0.1,
            "target_modules": ["query", "key", "value"],
        }
    return JobConfig.model_validate(
        {
            "data": {"builtin": "digits"},
            "model": {
                "name": "google/vit-base-patch16-224",
                "pretrained": False,
                "image_size": 128,
            },
            "lora": lora_spec,
        }
    )


def counted(cfg: JobConfig) -> tuple[int, int, bool]:
    """(trainable, total, interpolates) as the job counts them: built on the meta device,
    which holds no weights."""
    with torch.device("meta"):
        built = models.build(cfg, 2)
        model = built.model
        if cfg.lora.enabled:
            model = lora.wrap(model, cfg.lora, head=built.head)
    trainable, total = models.count_parameters(model)
    return trainable, total, built.interpolate


@pytest.mark.parametrize(("r", "shown"), [(8, "443,906 (0.51%)"), (24, "1,328,642 (1.52%)")])
def test_vit_base_lora_counts_are_the_homeworks(r, shown):
    trainable, total, interpolates = counted(hw4_job(r))
    assert params_cell(trainable, 100 * trainable / total) == shown
    assert interpolates  # 224 px position embeddings, interpolated to 128 px


def test_vit_base_in_full_has_the_pretrained_checkpoints_size():
    trainable, total, _ = counted(hw4_job(None))
    # google/vit-base-patch16-224 has 86,567,656 with its 1,000-class head (768 x 1000
    # + 1000); here the head has 2 classes
    assert trainable == total == 86_567_656 - 769_000 + 1_538


def test_a_vit_whose_config_names_the_input_size_needs_no_interpolation():
    cfg = JobConfig.model_validate({"data": {"builtin": "digits"}, "model": TINY_VIT})
    built = models.build(cfg, 10)
    assert built.model.config.image_size == 32 and not built.interpolate
    at_16 = JobConfig.model_validate(
        {"data": {"builtin": "digits"}, "model": {**TINY_VIT, "image_size": 16}}
    )
    small = models.build(at_16, 10)
    assert small.model.config.image_size == 32 and small.interpolate  # same architecture
    assert models.count_parameters(small.model) == models.count_parameters(built.model)
    out = models.logits(small, small.model, torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, 10)

"""Fixtures of the trainer tests; the tiny models and jobs they use are in tests/tiny.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import TINY_VIT, make_job

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def lora_vit_job(tmp_path_factory) -> Path:
    """The acceptance job, trained once: tiny ViT on all of digits, LoRA r=8 on query,
    value."""
    from ftmatrix.trainers.job import main

    config = {
        "task": "image-classification",
        "data": {"builtin": "digits"},
        "model": TINY_VIT,
        "lora": {"enabled": True, "r": 8, "alpha": 16, "target_modules": ["query", "value"]},
        "train": {"epochs": 6, "batch_size": 32, "lr": 0.01, "log_every": 5},
    }
    job = make_job(tmp_path_factory.mktemp("runs") / "lora-vit", config)
    assert main(job) == 0
    return job

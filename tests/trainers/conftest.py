"""Tiny jobs for the trainer tests: digits with a ViT or ResNet small enough for a CPU,
texts with a two-layer BERT built from its config. Nothing touches the network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_VIT = {
    "name": "google/vit-base-patch16-224",
    "pretrained": False,
    "image_size": 32,
    "config": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "patch_size": 8,
    },
}
TINY_BERT = {
    "name": "google-bert/bert-base-uncased",
    "pretrained": False,
    "max_length": 16,
    "config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    },
}


def image_job(**train) -> dict:
    return {
        "task": "image-classification",
        "data": {"builtin": "digits", "limit": 400},
        "model": TINY_VIT,
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, **train},
    }


def write_texts(folder: Path) -> Path:
    """A small two-class CSV: sentences about sport vs about cooking."""
    sport = ["the team won the match", "a great goal in the final", "the striker scored twice"]
    food = ["bake the bread slowly", "add salt to the soup", "the cake needs sugar"]
    rows = ["text,label"]
    for i in range(40):
        rows.append(f"{sport[i % 3]} {i},sport")
        rows.append(f"{food[i % 3]} {i},food")
    path = folder / "texts.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def text_job(path: Path, **train) -> dict:
    return {
        "task": "text-classification",
        "data": {"path": str(path)},
        "model": TINY_BERT,
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003, **train},
    }


def make_job(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


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

"""Tiny models and jobs, shared by the tests and the benchmarks.

Everything here is plain data or a small function (no fixtures: those live in the
conftest files and use these). Models are built from small configs with random weights
(`pretrained: false`), data is scikit-learn's bundled digits or texts a test writes:
nothing touches the network.

    from tests.tiny import TINY_VIT, image_job, make_job

Benchmarks run as `python benchmarks/x.py` from the repository root; they put the root
on `sys.path` first.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# A ViT small enough for a CPU: 2 layers of width 64 on 32 px digits (16 patches). Its
# config's image_size is the input's, so its position embeddings are built for 32 px.
TINY_VIT: dict[str, Any] = {
    "name": "google/vit-base-patch16-224",
    "pretrained": False,
    "image_size": 32,
    "config": {
        "image_size": 32,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 128,
        "patch_size": 8,
    },
}

# Smaller still, for tests that run whole matrices as processes: one layer of width 16
# on 16 px digits, so that a job costs mostly its imports.
MICRO_VIT: dict[str, Any] = {
    "name": "google/vit-base-patch16-224",
    "pretrained": False,
    "image_size": 16,
    "config": {
        "image_size": 16,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "patch_size": 8,
    },
}

# A two-layer BERT of width 32 with the real tokenizer's name (its vocabulary is fitted
# to the training texts when the tokenizer cannot be loaded offline).
TINY_BERT: dict[str, Any] = {
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

# A two-layer Llama of width 64, built from its config for task causal-lm (its
# vocabulary is the tokenizer's: the character tokenizer of the built-in datasets).
TINY_LLAMA: dict[str, Any] = {
    "name": "tiny-llama",
    "source": "hf",
    "pretrained": False,
    "max_length": 24,
    "config": {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 48,
    },
}


def image_job(**train: Any) -> dict[str, Any]:
    """A JobConfig as data: TINY_VIT on 400 digits, one epoch; `train` overrides. Its
    own copy: a test may change it (TINY_VIT itself is shared by every test)."""
    return {
        "task": "image-classification",
        "data": {"builtin": "digits", "limit": 400},
        "model": copy.deepcopy(TINY_VIT),
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, **train},
    }


def text_job(path: Path, **train: Any) -> dict[str, Any]:
    """A JobConfig as data: TINY_BERT on the texts at `path`, one epoch (its own copy)."""
    return {
        "task": "text-classification",
        "data": {"path": str(path)},
        "model": copy.deepcopy(TINY_BERT),
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.003, **train},
    }


def write_texts(folder: Path) -> Path:
    """A small two-class CSV (80 rows): sentences about sport vs about cooking."""
    sport = ["the team won the match", "a great goal in the final", "the striker scored twice"]
    food = ["bake the bread slowly", "add salt to the soup", "the cake needs sugar"]
    rows = ["text,label"]
    for i in range(40):
        rows.append(f"{sport[i % 3]} {i},sport")
        rows.append(f"{food[i % 3]} {i},food")
    path = folder / "texts.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def make_job(folder: Path, config: dict[str, Any]) -> Path:
    """A job folder holding `config` as its config.json, as the runner would write it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def tiny_matrix(*, name: str = "tiny", epochs: int = 3) -> str:
    """A matrix file's text: MICRO_VIT on 300 digits, lr x LoRA (4 jobs)."""
    base = {
        "data": {"builtin": "digits", "limit": 300},
        "model": MICRO_VIT,
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.003},
    }
    return (
        f"name: {name}\n"
        "runs_dir: runs\n"
        f"base: {json.dumps(base)}\n"  # JSON is YAML
        "grid:\n"
        "  train.lr: [0.003, 0.001]\n"
        "  lora.enabled: [false, true]\n"
    )


def cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m ftmatrix ARGS` in `cwd`, offline, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "ftmatrix", *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )

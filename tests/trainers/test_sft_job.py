"""Task causal-lm as a job: its settings never change another task's id, a tiny Llama
run through `ftmatrix run` learns digit reversal far above chance with its metrics
written, and a job killed after an epoch resumes to the metrics of an unbroken run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.config import JobConfig
from ftmatrix.identity import job_id
from tests.tiny import make_job

LLAMA = {
    "name": "tiny-llama",
    "source": "hf",
    "pretrained": False,
    "max_length": 24,
    "config": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "max_position_embeddings": 48,
    },
}  # fmt: skip


def sft_job(*, limit: int, epochs: int, **sft) -> dict:
    return {
        "task": "causal-lm",
        "data": {"builtin": "reverse-digits", "limit": limit,
                 "sft": {"digits": 3, "answer_regex": r"(\d+)", "max_new_tokens": 5, **sft}},
        "model": LLAMA,
        "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "optimizer": "adamw",
                  "device": "cpu"},
    }  # fmt: skip


def test_sft_settings_never_change_another_tasks_id():
    base = {"data": {"builtin": "digits"}, "model": {"name": "resnet18", "pretrained": False}}
    plain = job_id(JobConfig.model_validate(base))
    data = {**base["data"], "sft": {"packing": True, "answer_regex": "x(.)", "digits": 5}}
    assert job_id(JobConfig.model_validate({**base, "data": data})) == plain


def test_gradient_checkpointing_is_not_in_the_id_and_sft_settings_are():
    cfg = sft_job(limit=100, epochs=1)
    plain = job_id(JobConfig.model_validate(cfg))
    ckpt = {**cfg, "model": {**LLAMA, "gradient_checkpointing": True}}
    assert job_id(JobConfig.model_validate(ckpt)) == plain  # the same training
    packed = sft_job(limit=100, epochs=1, packing=True)
    assert job_id(JobConfig.model_validate(packed)) != plain
    # a generated dataset has no columns: naming them cannot make another job
    cols = sft_job(limit=100, epochs=1, prompt_column="q")
    assert job_id(JobConfig.model_validate(cols)) == plain


@pytest.mark.slow
def test_llm_sft_job_through_ftmatrix_run_learns_reversal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matrix = {"name": "sft", "base": sft_job(limit=1000, epochs=3)}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    out = CliRunner().invoke(app, ["run", "m.yaml", "--runs-dir", "runs"])
    assert out.exit_code == 0, out.output
    [job] = [p for p in (tmp_path / "runs" / "sft").iterdir() if (p / "result.json").exists()]
    result = json.loads((job / "result.json").read_text())
    assert result["status"] == "done"
    test = result["test"]
    # 200 test prompts, none seen in training; chance of 3 right digits: 1/1000
    assert test["n"] == 200 and test["exact_match"] >= 0.5
    assert test["accuracy"] == test["exact_match"]
    assert 1.0 <= test["perplexity"] < 2.0
    assert result["tokens_per_second"] > 0 and result["peak_memory_bytes"] > 0
    rows = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert all(r["val_perplexity"] > 1 and r["tokens_per_second"] > 0 for r in rows)
    assert (job / "weights" / "model.safetensors").exists()


def _run(job: Path, **env: str) -> int:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "ftmatrix.trainers", str(job)], env=environ,
        capture_output=True, timeout=600,
    ).returncode  # fmt: skip


@pytest.mark.slow
def test_sft_job_killed_after_an_epoch_resumes_to_the_same_metrics(tmp_path):
    cfg = sft_job(limit=300, epochs=3)
    whole = make_job(tmp_path / "whole", cfg)
    broken = make_job(tmp_path / "broken", cfg)
    assert _run(whole) == 0
    assert _run(broken, FTMATRIX_FAULT="exit@2") == 1  # died at epoch 2, no result
    assert not (broken / "result.json").exists()
    assert _run(broken) == 0
    a, b = (json.loads((j / "result.json").read_text()) for j in (whole, broken))
    assert b["resumed_from_epoch"] == 1
    assert b["test"]["loss"] == a["test"]["loss"]
    assert b["test"]["exact_match"] == a["test"]["exact_match"]
    lines = [[json.loads(x)["val_loss"] for x in (j / "metrics.jsonl").read_text().splitlines()]
             for j in (whole, broken)]  # fmt: skip
    assert lines[0] == lines[1] and len(lines[0]) == 3

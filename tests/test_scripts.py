"""The GPU-only scripts on a CPU: scripts/gpu-check.py's dry run writes and plans its
matrices (the LLM SFT one with its QLoRA job), and benchmarks/gpu_speed.py's MFU
arithmetic (peak table, FLOPs per token, forward FLOPs) gives the values by hand."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_speed():
    spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "benchmarks" / "gpu_speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_plans_the_vision_and_the_sft_matrices(tmp_path):
    script = str(ROOT / "scripts" / "gpu-check.py")
    done = subprocess.run(
        [sys.executable, script, "--dry-run", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gpucheck-sft: 3 jobs: ['lora=full', 'lora=r16', 'lora=q4']" in done.stdout
    sft = json.loads((tmp_path / "gpucheck-sft.yaml").read_text())
    assert sft["base"]["train"]["precision"] == "bf16"
    assert sft["grid"]["lora"]["q4"]["quantize"] == "4bit"
    assert sft["grid"]["lora"]["q4"]["r"] == sft["grid"]["lora"]["r16"]["r"] == 16
    vision = json.loads((tmp_path / "gpucheck.yaml").read_text())
    assert vision["include"][0]["model.config"]["hidden_size"] == 64  # tests/tiny.py's ViT
    assert len(list((tmp_path / "images" / "test").iterdir())) == 4


def test_gpu_speed_peak_table_and_override():
    gs = _gpu_speed()
    assert gs.peak_flops("NVIDIA H100 80GB HBM3", None) == 989e12
    assert gs.peak_flops("NVIDIA H100 PCIe", None) == 756e12
    assert gs.peak_flops("NVIDIA H200", None) == 989e12
    assert gs.peak_flops("NVIDIA A100-SXM4-80GB", None) == 312e12
    assert gs.peak_flops("Some Future GPU", None) is None
    assert gs.peak_flops("NVIDIA H100 PCIe", 500.0) == 500e12
    assert gs.mfu(494.5e12, 989e12) == "MFU  50.0 %"


@pytest.mark.parametrize("lora", [False, True])
def test_gpu_speed_sft_flops_per_token_by_hand(lora):
    import torch

    gs = _gpu_speed()
    cfg = gs.sft_cfg(gs.LLAMA_CHECK, lora=lora, batch=2, seq=32, device=torch.device("cpu"))
    model, flops = gs.sft_model(cfg)
    # width 64, 2 layers of attention (4 x 64 x 64) + MLP (3 x 64 x 128) + 2 norms (64),
    # a final norm, the LM head 256 x 64; the input embedding does no matrix product
    weights = 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64 + 256 * 64
    attention = 12 * 2 * 32 * 64
    adapter = 2 * 2 * 16 * (64 + 64)  # LoRA r16 on q_proj, v_proj of 2 layers
    if lora:
        assert flops == 4 * (weights + adapter) + 2 * adapter + attention
    else:
        assert flops == 6 * weights + attention
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == (
        adapter if lora else weights + 256 * 64
    )


def test_gpu_speed_forward_flops_of_a_linear_layer():
    import torch

    gs = _gpu_speed()
    layer = torch.nn.Linear(64, 10, bias=False)
    assert gs.forward_flops(layer, torch.randn(8, 64)) == 2 * 8 * 64 * 10

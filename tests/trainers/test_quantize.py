"""Quantised bases (`lora.quantize`): the bitsandbytes config of each setting, the
pre-flight refusals, and — on bitsandbytes' CPU backend — a tiny Llama, BERT and ViT
loaded in 4 and 8 bits through the job's own loading code, adapted, counted as peft
counts them, trained a few steps, checkpointed and reloaded.

The product runs quantised bases on CUDA only (pre-flight refuses the CPU); these tests
call the loading functions directly, with `train.device: cpu`, so that the code the
GPU runs is exercised on every machine that has bitsandbytes.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from ftmatrix.config import JobConfig
from ftmatrix.result import read_result
from ftmatrix.trainers import checkpoint, models, peft_methods, quantize, sft_data
from ftmatrix.trainers.causal_lm import CharTokenizer
from ftmatrix.trainers.models import ConfigError
from tests.tiny import TINY_BERT, TINY_LLAMA, TINY_VIT, image_job, make_job

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
needs_bnb = pytest.mark.skipif(not HAS_BNB, reason="bitsandbytes is not installed")
_NO_BNB = "bitsandbytes is not installed (pip install 'bitsandbytes>=0.48')"
LAYER = {"4bit": "Linear4bit", "8bit": "Linear8bitLt"}
TOK = CharTokenizer("0123456789rev =")


def _sft_cfg(setting: str, **lora) -> JobConfig:
    return JobConfig.model_validate(
        {
            "task": "causal-lm",
            "data": {"builtin": "reverse-digits", "limit": 64,
                     "sft": {"digits": 3, "answer_regex": r"(\d+)", "max_new_tokens": 5}},
            "model": TINY_LLAMA,
            "lora": {"enabled": True, "quantize": setting, "r": 4,
                     "target_modules": ["q_proj", "v_proj"], **lora},
            "train": {"epochs": 1, "batch_size": 16, "lr": 1e-2, "device": "cpu"},
        }
    )  # fmt: skip


def _llama(setting: str, **lora):
    cfg = _sft_cfg(setting, **lora)
    torch.manual_seed(0)
    base = sft_data.build(cfg, TOK)
    return cfg, base


def _layer_kinds(model: nn.Module) -> dict[str, str]:
    return {n.rsplit(".", 1)[-1]: type(m).__name__ for n, m in model.named_modules()}


def _steps(model: nn.Module, batch: dict, *, n: int, lr: float = 1e-2) -> list[float]:
    """Loss before each of `n` AdamW steps on one fixed batch."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for _ in range(n):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def test_bitsandbytes_config_of_each_setting():
    four = quantize.bnb_config("4bit")
    assert four.load_in_4bit and not four.load_in_8bit
    # the QLoRA recipe: NF4, double quantisation, bf16 compute
    assert four.bnb_4bit_quant_type == "nf4"
    assert four.bnb_4bit_use_double_quant is True
    assert four.bnb_4bit_compute_dtype == torch.bfloat16
    eight = quantize.bnb_config("8bit", skip=quantize.HEADS)
    assert eight.load_in_8bit and not eight.load_in_4bit
    assert eight.llm_int8_skip_modules == list(quantize.HEADS)
    with pytest.raises(ValueError, match=r"unknown lora\.quantize"):
        quantize.bnb_config("2bit")


def test_quantize_is_wanted_only_with_an_adapter():
    assert quantize.wanted(_sft_cfg("4bit")) == "4bit"
    assert quantize.wanted(_sft_cfg("none")) is None
    on = _sft_cfg("8bit")
    off = on.model_copy(update={"lora": on.lora.model_copy(update={"enabled": False})})
    assert quantize.wanted(off) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_refusals_name_the_device_the_source_and_the_missing_package(monkeypatch):
    cpu = "bitsandbytes quantisation runs on a CUDA device and this job has none"
    assert quantize.problems(_sft_cfg("4bit")) == ([cpu] if HAS_BNB else [cpu, _NO_BNB])
    tv = JobConfig.model_validate(
        {**image_job(), "model": {"name": "resnet18", "pretrained": False},
         "lora": {"enabled": True, "quantize": "8bit", "target_modules": ["fc"]}}
    )  # fmt: skip
    assert "only Hugging Face models load quantised" in quantize.problems(tv)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name)
    )
    assert quantize.problems(_sft_cfg("8bit"))[-1] == _NO_BNB
    assert peft_methods.refusals(_sft_cfg("8bit"))[-1] == (
        "lora.quantize",
        f"8bit base refused: {_NO_BNB}",
    )


def test_a_base_not_loaded_quantised_is_refused_by_wrap():
    cfg = _sft_cfg("4bit")
    plain = sft_data.build(_sft_cfg("none"), TOK)
    with pytest.raises(ConfigError, match=r"lora\.quantize 4bit: this base was not loaded"):
        peft_methods.wrap(plain, cfg.lora, head=None, task=cfg.task)


@needs_bnb
@pytest.mark.parametrize("setting", ["4bit", "8bit"])
def test_tiny_llama_loads_quantised_adapts_counts_and_learns(setting):
    cfg, base = _llama(setting)
    kinds = _layer_kinds(base)
    for name in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert kinds[name] == LAYER[setting], name
    assert kinds["lm_head"] == "Linear"  # transformers keeps the output layer whole
    model = peft_methods.wrap(base, cfg.lora, head=None, task=cfg.task)
    assert quantize.is_quantized(model)
    # r * (in + out) per adapted layer: q_proj and v_proj (64 -> 64) in 2 layers
    assert model.get_nb_trainable_parameters()[0] == 2 * 2 * 4 * (64 + 64)
    assert models.count_parameters(model) == model.get_nb_trainable_parameters()
    # peft counts a 4-bit weight as the two values each byte packs: the same total
    _, plain = _llama("none")
    assert model.get_nb_trainable_parameters()[1] == 2048 + sum(
        p.numel() for p in plain.parameters()
    )
    # only adapter weights train; the quantised base and the norms are frozen
    assert {n.split(".")[-2] for n, p in model.named_parameters() if p.requires_grad} == {"default"}
    ids = torch.randint(3, len(TOK), (8, 16), generator=torch.Generator().manual_seed(1))
    losses = _steps(model, {"input_ids": ids, "labels": ids}, n=4)
    assert losses[-1] < losses[0] - 0.05, losses


@needs_bnb
@pytest.mark.parametrize("setting", ["4bit", "8bit"])
def test_checkpoint_of_a_quantised_base_reloads_with_the_same_predictions(setting, tmp_path):
    """What resume and best-epoch selection do: the trainable tensors saved, a fresh
    quantised base (same seed) wrapped again, the tensors loaded back."""
    cfg, base = _llama(setting)
    model = peft_methods.wrap(base, cfg.lora, head=None, task=cfg.task)
    ids = torch.randint(3, len(TOK), (4, 12), generator=torch.Generator().manual_seed(2))
    _steps(model, {"input_ids": ids, "labels": ids}, n=2)
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    state = checkpoint.model_state(model)
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    checkpoint.save_weights(tmp_path / "best.safetensors", model)
    _, fresh_base = _llama(setting)
    fresh = peft_methods.wrap(fresh_base, cfg.lora, head=None, task=cfg.task).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(input_ids=ids).logits, before)  # the trained adapter
    checkpoint.load_weights(tmp_path / "best.safetensors", fresh)
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, before)
    with pytest.raises(RuntimeError, match="does not match the model's trainable tensors"):
        checkpoint.load_model_state(fresh, {k: v for k, v in list(state.items())[1:]})


@needs_bnb
@pytest.mark.parametrize(
    ("task", "setting"),
    [("text", "4bit"), ("text", "8bit"), ("image", "4bit"), ("image", "8bit")],
)
def test_hf_classifiers_load_quantised_with_a_whole_head_and_learn(task, setting):
    lora = {"enabled": True, "quantize": setting, "r": 4, "target_modules": ["query", "value"]}
    if task == "text":
        job = {"task": "text-classification", "data": {"path": "t.csv"}, "model": TINY_BERT}
        batch = {
            "input_ids": torch.randint(5, 500, (8, 8), generator=torch.Generator().manual_seed(0))
        }
    else:
        job = {**image_job(), "model": TINY_VIT}
        batch = {
            "pixel_values": torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        }
    cfg = JobConfig.model_validate({**job, "lora": lora, "train": {"device": "cpu"}})
    torch.manual_seed(0)
    built = models.build(cfg, 2)
    linears = {
        n: type(m).__name__ for n, m in built.model.named_modules() if isinstance(m, nn.Linear)
    }
    assert linears.pop(built.head) == "Linear"  # the new head is never quantised
    assert len(linears) >= 12 and set(linears.values()) == {LAYER[setting]}  # every other one is
    model = peft_methods.wrap(built.model, cfg.lora, head=built.head, task=cfg.task)
    width = 32 if task == "text" else 64
    head = width * 2 + 2
    assert models.count_parameters(model) == model.get_nb_trainable_parameters()
    assert model.get_nb_trainable_parameters()[0] == 2 * 2 * 4 * 2 * width + head
    batch["labels"] = torch.tensor([0, 1] * 4)
    losses = _steps(model, batch, n=5, lr=3e-2)
    assert losses[-1] < losses[0] - 0.05, losses


@needs_bnb
@pytest.mark.slow
def test_a_whole_causal_lm_job_on_a_4bit_base_finishes_and_exports_its_adapter(tmp_path):
    """The job process end to end (pre-flight is what refuses the CPU, not the job)."""
    from ftmatrix.trainers.job import main

    cfg = _sft_cfg("4bit").model_dump(mode="json")
    cfg["train"]["epochs"] = 2
    job = make_job(tmp_path / "q", cfg)
    assert main(job) == 0
    result = read_result(job)
    assert result.status == "done" and result.epochs_run == 2
    assert result.params.trainable == 2 * 2 * 4 * (64 + 64)
    assert result.test.perplexity > 1.0 and 0.0 <= result.test.exact_match <= 1.0
    assert result.adapter_bytes == peft_methods.adapter_bytes(job / "weights") > 0

"""Every PEFT method of `lora.method` on a tiny ViT and a tiny BERT: exact trainable
parameters (by hand and as peft counts them), saved adapters that load again through
peft with the same predictions, and training that learns."""

from __future__ import annotations

import pytest
import torch

from ftmatrix.config import JobConfig
from ftmatrix.result import read_result
from ftmatrix.trainers import models, peft_methods
from ftmatrix.trainers.job import main
from ftmatrix.trainers.models import ConfigError
from tests.tiny import TINY_BERT, TINY_LLAMA, image_job, make_job

# Tiny ViT (width 64, 2 layers, query+value adapted, r=4) and its 10-class head 64*10+10.
HEAD_VIT = 650
VIT = {
    # r * (64 + 64) per adapted layer, 4 layers
    "lora": 4 * 4 * 128 + HEAD_VIT,
    "rslora": 4 * 4 * 128 + HEAD_VIT,
    "dora": 4 * (4 * 128 + 64) + HEAD_VIT,  # + a magnitude vector per layer
    "loha": 4 * 2 * 4 * 128 + HEAD_VIT,  # two low-rank pairs
    "lokr": 1162,
    "ia3": 4 * 64 + HEAD_VIT,  # one scaling vector per layer
    "adalora": 4 * (12 * 128 + 12) + HEAD_VIT,  # init_r=12 (default): A, B and the singular values
    "vera": 4 * (64 + 4) + HEAD_VIT,  # d (r) and b (out) per layer; projections frozen
}
# Tiny BERT (width 32, 2 layers), two classes: head 32*2+2.
HEAD_BERT = 66
BERT = {
    "lora": 4 * 4 * 64 + HEAD_BERT,
    "ia3": 4 * 32 + HEAD_BERT,
    "prompt_tuning": 20 * 32 + HEAD_BERT,  # 20 virtual token embeddings
    "prefix_tuning": 2 * 2 * 20 * 32 + HEAD_BERT,  # a key and a value per layer and token
}


def _built(task: str, lora: dict, *, seed: int = 0):
    job = (
        image_job()
        if task == "image"
        else {"task": "text-classification", "data": {"path": "t.csv"}, "model": TINY_BERT}
    )
    cfg = JobConfig.model_validate({**job, "lora": {"enabled": True, "r": 4, **lora}})
    torch.manual_seed(seed)
    return cfg, models.build(cfg, 10 if task == "image" else 2)


def _wrapped(task: str, lora: dict):
    cfg, built = _built(task, lora)
    return peft_methods.wrap(built.model, cfg.lora, head=built.head, task=cfg.task), built


def nudge(model, scale: float) -> None:
    """Move every adapter weight away from its (often no-op) init, so that a reloaded
    adapter that lost a weight predicts differently."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("method", sorted(VIT))
def test_vit_trainable_parameters_by_hand_and_as_peft_counts(method):
    model, _ = _wrapped("image", {"method": method})
    assert models.count_parameters(model) == model.get_nb_trainable_parameters()
    assert model.get_nb_trainable_parameters()[0] == VIT[method]


@pytest.mark.parametrize("method", sorted(BERT))
def test_bert_trainable_parameters_by_hand_and_as_peft_counts(method):
    model, _ = _wrapped("text", {"method": method})
    assert models.count_parameters(model) == model.get_nb_trainable_parameters()
    assert model.get_nb_trainable_parameters()[0] == BERT[method]


def test_virtual_tokens_refused_on_an_image_model():
    with pytest.raises(ConfigError, match="prompt_tuning prepends virtual tokens"):
        _wrapped("image", {"method": "prompt_tuning"})


@pytest.mark.parametrize(
    "method", ["lora", "rslora", "dora", "loha", "lokr", "ia3", "adalora", "vera"]
)
def test_saved_adapter_loads_through_peft_with_the_same_predictions(method, tmp_path):
    from peft import PeftModel

    model, _ = _wrapped("image", {"method": method})
    nudge(model, 0.05)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    before = model(pixel_values=x).logits
    model.save_pretrained(str(tmp_path))
    assert peft_methods.adapter_bytes(tmp_path) > 0
    _, fresh = _built("image", {"method": method})  # the same random base (same seed)
    loaded = PeftModel.from_pretrained(fresh.model, str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.allclose(loaded(pixel_values=x).logits, before, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt_tuning"])
def test_saved_text_adapter_loads_through_peft_with_the_same_predictions(method, tmp_path):
    """The text methods, prompt tuning included (its virtual tokens are the adapter)."""
    from peft import PeftModel

    model, _ = _wrapped("text", {"method": method})
    nudge(model, 0.05)
    model.eval()
    ids = torch.randint(5, 500, (3, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    before = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(str(tmp_path))
    assert peft_methods.adapter_bytes(tmp_path) > 0
    _, fresh = _built("text", {"method": method})
    loaded = PeftModel.from_pretrained(fresh.model, str(tmp_path)).eval()
    with torch.no_grad():
        after = loaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(after, before, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "lr"), [("lora", 0.01), ("dora", 0.01), ("ia3", 0.05)])
def test_method_trains_above_chance_and_reports_size_and_memory(method, lr, tmp_path):
    config = {
        **image_job(epochs=4, lr=lr, batch_size=32),
        "data": {"builtin": "digits", "limit": 800},
        "lora": {"enabled": True, "method": method, "r": 4},
    }
    assert main(make_job(tmp_path / method, config)) == 0
    result = read_result(tmp_path / method)
    assert result.test.accuracy > 0.3  # ten classes: chance is 0.1
    assert result.params.trainable == VIT[method]
    weights = tmp_path / method / "weights"
    assert result.adapter_bytes == peft_methods.adapter_bytes(weights) > 0
    assert result.peak_memory_bytes > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_quantised_base_refused_at_preflight_without_cuda():
    from ftmatrix.trainers import architecture

    job = {"task": "text-classification", "data": {"path": "t.csv"}, "model": TINY_BERT}
    cfg = JobConfig.model_validate({**job, "lora": {"enabled": True, "quantize": "4bit"}})
    problems = architecture.check(cfg)
    assert (
        "lora.quantize",
        "4bit base refused: bitsandbytes quantisation runs on a CUDA device and this job has none",
    ) in problems  # the loading itself runs anywhere bitsandbytes does (test_quantize.py)


def test_virtual_tokens_refused_at_preflight_on_an_image_model():
    from ftmatrix.trainers import architecture

    cfg = JobConfig.model_validate(
        {**image_job(), "lora": {"enabled": True, "method": "prefix_tuning"}}
    )
    assert architecture.check(cfg) == [
        ("lora.method", "prefix_tuning prepends virtual tokens: it needs a Hugging Face text "
         "model, not task image-classification")
    ]  # fmt: skip


def test_prefix_tuning_on_a_text_classifier_is_refused_before_it_can_crash():
    """peft passes the prefix as past key values, which transformers 5's BERT does not
    take: the first forward pass raises. Pre-flight says so instead."""
    cfg, _ = _built("text", {"method": "prefix_tuning"})
    model, _ = _wrapped("text", {"method": "prefix_tuning"})
    with pytest.raises(ValueError, match="past key values"):
        model(input_ids=torch.ones(1, 4, dtype=torch.long))
    (problem,) = peft_methods.refusals(cfg)
    assert problem[0] == "lora.method" and "use prompt_tuning" in problem[1]


def _llama_prefix(*, seed: int = 0):
    from ftmatrix.trainers import sft_data
    from ftmatrix.trainers.causal_lm import CharTokenizer

    cfg = JobConfig.model_validate(
        {
            "task": "causal-lm",
            "data": {"builtin": "reverse-digits", "limit": 64,
                     "sft": {"digits": 3, "answer_regex": r"(\d+)", "max_new_tokens": 5}},
            "model": TINY_LLAMA,
            "lora": {"enabled": True, "method": "prefix_tuning", "num_virtual_tokens": 8},
        }
    )  # fmt: skip
    torch.manual_seed(seed)
    base = sft_data.build(cfg, CharTokenizer("0123456789rev ="))
    return cfg, base


def test_prefix_tuning_on_a_causal_lm_counts_as_peft_and_reloads_with_the_same_predictions(
    tmp_path,
):
    """Prefix tuning's home: a causal LM, which takes the prefix as past key values."""
    from peft import PeftModel

    cfg, base = _llama_prefix()
    model = peft_methods.wrap(base, cfg.lora, head=None, task=cfg.task)
    assert peft_methods.refusals(cfg) == []
    # a key and a value of width 64 per layer (2) and virtual token (8); the LM frozen
    assert model.get_nb_trainable_parameters() == (2 * 2 * 8 * 64, 2 * 2 * 8 * 64 + _total(base))
    assert models.count_parameters(model) == model.get_nb_trainable_parameters()
    nudge(model, 0.5)
    model.eval()
    ids = torch.randint(3, 18, (3, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    model.save_pretrained(str(tmp_path))
    assert peft_methods.adapter_bytes(tmp_path) > 0
    _, fresh = _llama_prefix()  # the same random base (same seed)
    with torch.no_grad():  # the prefix changes what the model predicts
        assert not torch.allclose(fresh(input_ids=ids, attention_mask=mask).logits, before)
    loaded = PeftModel.from_pretrained(fresh, str(tmp_path)).eval()
    with torch.no_grad():
        after = loaded(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(after, before, atol=1e-5)


def _total(model) -> int:
    return sum(p.numel() for p in model.parameters())

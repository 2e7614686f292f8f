"""The causal-LM instruction-tuning core: response-only labels, packing, and a tiny
Llama from its config learning to reverse digit strings well above chance."""

from __future__ import annotations

import random

import pytest
import torch

from ftmatrix.trainers import causal_lm as lm


def test_loss_is_on_the_response_and_eos_only():
    tok = lm.CharTokenizer("0123456789rev =")
    ex = lm.example(tok, "rev 12=", "21", max_length=32)
    assert ex.input_ids == [tok.bos_id, *tok.encode("rev 12="), *tok.encode("21"), tok.eos_id]
    assert ex.labels == [lm.IGNORE] * 8 + [*tok.encode("21"), tok.eos_id]
    assert tok.decode(ex.input_ids) == "rev 12=21"


def test_packing_fills_rows_without_splitting_an_example():
    tok = lm.CharTokenizer("0123456789rev =")
    examples = [lm.example(tok, p, r, max_length=32) for p, r in lm.reversal_pairs(5, seed=0)]
    rows = lm.pack(examples, max_length=27)  # each example is 13 tokens: two per row
    assert [len(r.input_ids) for r in rows] == [26, 26, 13]
    assert rows[0].labels == examples[0].labels + examples[1].labels


@pytest.mark.slow
def test_tiny_llama_learns_reversal_far_above_chance():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = lm.CharTokenizer("0123456789rev =")
    pairs = lm.reversal_pairs(2050, seed=0)
    train, test = pairs[:2000], pairs[2000:]
    examples = [lm.example(tok, p, r, max_length=32) for p, r in train]
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        pad_token_id=tok.pad_id, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    held = [lm.example(tok, p, r, max_length=32) for p, r in test]
    before = lm.mean_loss(model, held, pad_id=tok.pad_id, batch_size=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(3):
        random.Random(epoch).shuffle(examples)
        for start in range(0, len(examples), 32):
            loss = model(**lm.batch(examples[start : start + 32], pad_id=tok.pad_id)).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    after = lm.mean_loss(model, held, pad_id=tok.pad_id, batch_size=64)
    assert after < before / 10 and lm.perplexity(after) < 1.5
    # chance of guessing 3 reversed digits: 1/1000
    score = lm.exact_match(model, tok, test, pattern=r"(\d+)", max_new_tokens=5)
    assert score >= 0.8

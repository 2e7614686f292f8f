"""Chats rendered through a tokenizer's own chat template, with no network: a tiny
word-level tokenizer trained here (the `tokenizers` library), wrapped in
`transformers.PreTrainedTokenizerFast` with a Jinja chat template and saved with
`save_pretrained` into a folder that `model.name` names, as a pretrained model's would be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ftmatrix.config import JobConfig
from ftmatrix.trainers import causal_lm, sft_data
from ftmatrix.trainers.causal_lm import IGNORE

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# what a chat model's template does: each turn tagged with its role and closed, and the
# assistant's tag opened for the answer (add_generation_prompt)
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
CHATS = [
    [
        {"role": "system", "content": "reverse the digits"},
        {"role": "user", "content": "rev 123"},
        {"role": "assistant", "content": "321"},
    ],
    [{"role": "user", "content": "rev 456"}, {"role": "assistant", "content": "654"}],
    [{"role": "user", "content": "rev 789"}, {"role": "assistant", "content": "987"}],
    [{"role": "user", "content": "rev 120"}, {"role": "assistant", "content": "021"}],
]


def save_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over the words of CHATS, saved as a hub model's would be."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece()  # joins words with spaces
    texts = [m["content"] for chat in CHATS for m in chat]
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[4:],
    )
    wrapped.chat_template = TEMPLATE
    wrapped.save_pretrained(folder)


@pytest.fixture
def chat_job(tmp_path, monkeypatch) -> JobConfig:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_tokenizer(tmp_path / "tiny-chat")
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHATS))
    return JobConfig.model_validate(
        {
            "task": "causal-lm",
            "data": {
                "path": str(data),
                "val_fraction": 0.0,
                "test_fraction": 0.25,
                "sft": {"messages_column": "messages"},
            },
            "model": {"name": str(tmp_path / "tiny-chat"), "max_length": 32},
        }
    )


def test_a_local_tokenizer_folder_renders_chats_with_its_template(chat_job):
    splits = sft_data.load(chat_job)
    tok = sft_data.tokenizer(chat_job, splits)
    assert isinstance(tok, sft_data.HubTokenizer)  # model.name: the saved folder
    pairs = {a: q for q, a in splits.train + splits.test}
    assert sft_data.render(chat_job, tok, pairs["321"]) == (
        "<|system|> reverse the digits <|end|> <|user|> rev 123 <|end|> <|assistant|> "
    )
    assert sft_data.render(chat_job, tok, pairs["654"]) == (
        "<|user|> rev 456 <|end|> <|assistant|> "
    )
    # the role tags are single special tokens, not spelled out
    ids = tok.encode(sft_data.render(chat_job, tok, pairs["654"]))
    words = tok.tokenizer.convert_ids_to_tokens(ids)
    assert words == ["<|user|>", "rev", "456", "<|end|>", "<|assistant|>"]


def test_the_loss_covers_the_assistants_response_only(chat_job):
    splits = sft_data.load(chat_job)
    tok = sft_data.tokenizer(chat_job, splits)
    prompt = next(q for q, a in splits.train + splits.test if a == "321")
    ex = causal_lm.example(tok, sft_data.render(chat_job, tok, prompt), "321", max_length=32)
    words = tok.tokenizer.convert_ids_to_tokens(ex.input_ids)
    assert words == [
        "<s>",
        *["<|system|>", "reverse", "the", "digits", "<|end|>"],
        *["<|user|>", "rev", "123", "<|end|>", "<|assistant|>"],
        "321",
        "</s>",
    ]
    learned = [i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE]
    assert tok.tokenizer.convert_ids_to_tokens(learned) == ["321", "</s>"]
    assert ex.labels[: len(ex.labels) - 2] == [IGNORE] * (len(ex.labels) - 2)
    assert tok.decode(learned) == "321"


def test_a_pretrained_model_saved_beside_its_tokenizer_loads_offline(chat_job):
    """The model of a local folder: its loss is the cross entropy of the response tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    splits = sft_data.load(chat_job)
    tok = sft_data.tokenizer(chat_job, splits)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tok.pad_id, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id,
    )  # fmt: skip
    assert chat_job.model is not None
    LlamaForCausalLM(config).save_pretrained(chat_job.model.name)
    model = sft_data.build(chat_job, tok)
    prompt = next(q for q, a in splits.train + splits.test if a == "654")
    ex = causal_lm.example(tok, sft_data.render(chat_job, tok, prompt), "654", max_length=32)
    batch = causal_lm.batch([ex], pad_id=tok.pad_id)
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    # logits at t predict token t+1: only the two response positions count
    logits, labels = out.logits[0, :-1], batch["labels"][0, 1:]
    kept = labels != IGNORE
    assert int(kept.sum()) == 2
    by_hand = torch.nn.functional.cross_entropy(logits[kept], labels[kept])
    assert float(out.loss) == pytest.approx(float(by_hand), rel=1e-5)

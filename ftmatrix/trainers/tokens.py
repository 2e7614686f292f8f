"""Texts to token ids: the model's tokenizer, or one fitted to the training texts when
the model is built from its config offline; ids cached per (texts, tokenizer, length)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ftmatrix.trainers import cache


def encode(
    tokenizer, texts: list[str], *, max_length: int, cache_dir: Path | None, tok: list[str]
) -> dict[str, torch.Tensor]:
    """Token ids and attention masks, padded to max_length; cached per (texts,
    tokenizer identity `tok`, max_length) when there is a `cache_dir`."""
    if cache_dir is None or not texts:
        return tokenize(tokenizer, texts, max_length)

    def fill(alloc: cache.Alloc) -> None:
        for name, ids in tokenize(tokenizer, texts, max_length).items():
            alloc(name, tuple(ids.shape), ids.numpy().dtype)[...] = ids.numpy()

    about = cache.fingerprint(["text", str(max_length), *tok, *texts])
    key = f"text-{max_length}tok-{len(texts)}-{about[:32]}"
    return {k: torch.from_numpy(v) for k, v in cache.cached(cache_dir, key, fill).items()}


def identity(tokenizer) -> list[str]:
    """What decides the ids a tokenizer gives: its whole serialised definition (vocab,
    normaliser, pre-tokeniser, added tokens; a fitted one has no name to go by) less
    the truncation and padding state that each call sets, and the sides it pads and
    truncates on."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        definition = json.dumps(spec, sort_keys=True)
    else:  # a slow (Python) tokenizer: its vocabulary
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
    return [
        type(tokenizer).__name__,
        str(getattr(tokenizer, "name_or_path", "")),
        str(tokenizer.pad_token_id),
        str(getattr(tokenizer, "padding_side", "")),
        str(getattr(tokenizer, "truncation_side", "")),
        definition,
    ]


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    if not texts:  # tokenizers refuse an empty batch (an empty val split)
        empty = torch.zeros((0, max_length), dtype=torch.long)
        return {"input_ids": empty, "attention_mask": empty.clone()}
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
    )
    return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}


FITTED_VOCAB = 30_000  # below the vocab_size of every BERT-like model's default config


def fit_tokenizer(texts: list[str], *, vocab_size: int = FITTED_VOCAB):
    """A word-level tokenizer learned from the training texts (the `vocab_size` most
    frequent words): the offline stand-in when a model is built from its config and its
    own tokenizer is not available."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )

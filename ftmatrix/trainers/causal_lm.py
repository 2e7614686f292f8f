"""Causal-LM instruction fine-tuning, the core: prompt/response pairs to token ids with
the loss on response tokens only, a tiny offline tokenizer, optional packing, and
exact-match scoring of greedy generations through an answer-extracting regex.

Not yet wired to a `task: causal-lm` job (see the report of issue 17): these pieces are
tested on their own (tests/trainers/test_causal_lm.py), training a tiny Llama built from
its config on a synthetic task well above chance.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import torch

IGNORE = -100  # the label cross-entropy skips: prompt tokens and padding


class CharTokenizer:
    """One token per character of a fixed alphabet, plus pad/bos/eos: ships offline."""

    def __init__(self, alphabet: str):
        self.specials = ["<pad>", "<s>", "</s>"]
        self.chars = sorted(set(alphabet))
        self.index = {c: i + len(self.specials) for i, c in enumerate(self.chars)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.specials) + len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted({c for c in text if c not in self.index})
        if unknown:
            raise ValueError(f"characters {unknown} are not in the tokenizer's alphabet")
        return [self.index[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        offset = len(self.specials)
        return "".join(self.chars[i - offset] for i in ids if i >= offset)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt: the loss is on the response only


def example(tok: CharTokenizer, prompt: str, response: str, *, max_length: int) -> Example:
    """<s> prompt response </s>, cut to max_length; labels only on response and </s>."""
    p = [tok.bos_id, *tok.encode(prompt)]
    r = [*tok.encode(response), tok.eos_id]
    ids = (p + r)[:max_length]
    labels = ([IGNORE] * len(p) + r)[:max_length]
    return Example(ids, labels)


def pack(examples: list[Example], *, max_length: int) -> list[Example]:
    """Concatenate examples into rows of at most max_length tokens (none split)."""
    rows: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        if ids and len(ids) + len(ex.input_ids) > max_length:
            rows.append(Example(ids, labels))
            ids, labels = [], []
        ids, labels = ids + ex.input_ids, labels + ex.labels
    if ids:
        rows.append(Example(ids, labels))
    return rows


def batch(examples: list[Example], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask, labels."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), IGNORE)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def mean_loss(model, examples: list[Example], *, pad_id: int, batch_size: int) -> float:
    """Token-weighted mean loss over the response tokens of `examples`."""
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            b = batch(examples[start : start + batch_size], pad_id=pad_id)
            n = int((b["labels"][:, 1:] != IGNORE).sum())
            total += float(model(**b).loss) * n
            tokens += n
    return total / max(tokens, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def exact_match(
    model, tok: CharTokenizer, pairs: list[tuple[str, str]], *, pattern: str,
    max_new_tokens: int,
) -> float:  # fmt: skip
    """Share of prompts whose greedy generation, through `pattern` (its first group, else
    the whole match), equals the response's extraction the same way."""
    answer = re.compile(pattern)

    def extract(text: str) -> str | None:
        m = answer.search(text)
        return None if m is None else (m.group(1) if m.groups() else m.group(0))

    model.eval()
    hits = 0
    with torch.no_grad():
        for prompt, response in pairs:
            ids = torch.tensor([[tok.bos_id, *tok.encode(prompt)]])
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
            )  # fmt: skip
            text = tok.decode(out[0, ids.shape[1] :].tolist())
            hits += extract(text) is not None and extract(text) == extract(response)
    return hits / max(len(pairs), 1)


def reversal_pairs(n: int, *, seed: int, digits: int = 3) -> list[tuple[str, str]]:
    """A task a tiny model learns: 'rev 123=' -> '321'. Chance exact match is 10^-digits."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice("0123456789") for _ in range(digits))
        out.append((f"rev {s}=", s[::-1]))
    return out

"""Task causal-lm, before training: prompt/response pairs, their tokenizer, the model.

Pairs come from a JSONL file (`data.sft.prompt_column`/`response_column`, or a chat in
`messages_column`) or are generated (`data.builtin: reverse-digits`, distinct digit
strings drawn from `data.split_seed`, so a matrix runs with no files and train and test
never share a prompt). They are split by `data.val_fraction`/`test_fraction`, seeded by
`data.split_seed`, the same for every job of a matrix.

The tokenizer: a model built from its config (`pretrained: false`) gets the offline
character tokenizer of causal_lm.py over the characters of the data; a pretrained model
its own tokenizer (`transformers.AutoTokenizer`), whose chat template renders chats.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ftmatrix.config import JobConfig
from ftmatrix.sft import GENERATED_EXAMPLES
from ftmatrix.trainers import quantize
from ftmatrix.trainers.causal_lm import CharTokenizer
from ftmatrix.trainers.models import ConfigError
from ftmatrix.trainers.sources import DataError

Pair = tuple[str, str]  # (prompt, response)
MODEL_TYPES = ("llama", "gpt2", "qwen2", "mistral", "gpt_neox", "phi")  # guessed from a name


@dataclass
class PairSplits:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]


def load(cfg: JobConfig) -> PairSplits:
    """The job's pairs, split into train, val and test."""
    data = cfg.data
    assert data is not None
    if data.builtin == "reverse-digits":
        pairs = reverse_digits(
            data.limit or GENERATED_EXAMPLES, digits=data.sft.digits, seed=data.split_seed
        )
    else:
        assert data.path is not None
        pairs = read_jsonl(Path(data.path), cfg)
        if data.limit is not None:
            pairs = pairs[: data.limit]
    order = list(range(len(pairs)))
    random.Random(data.split_seed).shuffle(order)
    n_test = round(len(pairs) * data.test_fraction)
    n_val = round(len(pairs) * data.val_fraction)
    test = [pairs[i] for i in order[:n_test]]
    val = [pairs[i] for i in order[n_test : n_test + n_val]]
    train = [pairs[i] for i in order[n_test + n_val :]]
    if not train or not test:
        raise DataError(f"{len(pairs)} pairs leave an empty train or test split")
    return PairSplits(train, val, test)


def reverse_digits(n: int, *, digits: int, seed: int) -> list[Pair]:
    """'rev 0123=' -> '3210' for n distinct digit strings: chance exact match 10^-digits."""
    if n > 10**digits:
        raise DataError(
            f"reverse-digits has only {10**digits} distinct {digits}-digit strings; "
            f"data.limit asks for {n}"
        )
    rng = random.Random(seed)
    picked = rng.sample(range(10**digits), n)
    strings = [str(v).zfill(digits) for v in picked]
    return [(f"rev {s}=", s[::-1]) for s in strings]


def read_jsonl(path: Path, cfg: JobConfig) -> list[Pair]:
    """Pairs from a JSONL file; a bad line is a DataError naming path:line and key."""
    sft = cfg.data.sft if cfg.data else None
    assert sft is not None
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not JSON: {err}") from err
        if sft.messages_column is not None:
            pairs.append(_chat(row, sft.messages_column, where=f"{path}:{number}"))
            continue
        for key in (sft.prompt_column, sft.response_column):
            if not isinstance(row, dict) or not isinstance(row.get(key), str):
                raise DataError(
                    f"{path}:{number}: no text under '{key}' "
                    f"(data.sft.prompt_column / response_column)"
                )
        pairs.append((row[sft.prompt_column], row[sft.response_column]))
    if not pairs:
        raise DataError(f"{path} holds no examples")
    return pairs


def _chat(row: object, column: str, *, where: str) -> Pair:
    """A chat's turns before the last (the prompt, rendered later) and the last's text.
    The prompt is kept as JSON text until the tokenizer renders it."""
    messages = row.get(column) if isinstance(row, dict) else None
    ok = (
        isinstance(messages, list)
        and len(messages) >= 2
        and all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and "role" in m
            for m in messages
        )
    )
    if not ok:
        raise DataError(
            f"{where}: '{column}' must be a list of at least two "
            "{{role, content}} messages (data.sft.messages_column)"
        )
    return json.dumps(messages[:-1]), messages[-1]["content"]


# ----------------------------------------------------------------- tokenizer


class HubTokenizer:
    """A transformers tokenizer behind CharTokenizer's interface (encode/decode, ids)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        eos = tokenizer.eos_token_id
        self.eos_id = eos
        self.bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def tokenizer(cfg: JobConfig, splits: PairSplits):
    """The job's tokenizer (see the module's docstring)."""
    assert cfg.model is not None
    if cfg.model.pretrained:
        from transformers import AutoTokenizer

        return HubTokenizer(AutoTokenizer.from_pretrained(cfg.model.name))
    texts = [t for split in (splits.train, splits.val, splits.test) for pair in split for t in pair]
    return CharTokenizer("".join(sorted(set("".join(texts)))))


def render(cfg: JobConfig, tok, prompt: str) -> str:
    """The prompt as the model reads it: a chat through the tokenizer's chat template
    (`role: content` lines when it has none), plain text as it is."""
    assert cfg.data is not None
    if cfg.data.sft.messages_column is None:
        return prompt
    messages = json.loads(prompt)
    inner = getattr(tok, "tokenizer", None)
    if inner is not None and getattr(inner, "chat_template", None):
        return inner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "


# --------------------------------------------------------------------- model


def build(cfg: JobConfig, tok) -> nn.Module:
    """The causal LM: pretrained weights, or the architecture of `model.config` (its
    `model_type`, else one guessed from the name) sized to the tokenizer."""
    import transformers as tf

    spec = cfg.model
    assert spec is not None
    overrides = dict(spec.config)
    model_type = overrides.pop("model_type", None)
    ids = {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    if spec.pretrained:
        config = tf.AutoConfig.from_pretrained(spec.name, **overrides)
    else:
        model_type = model_type or next((t for t in MODEL_TYPES if t in spec.name.lower()), None)
        if model_type is None:
            raise ConfigError(
                f"cannot tell the architecture of '{spec.name}': give "
                f"model.config.model_type (one of {', '.join(MODEL_TYPES)})"
            )
        try:
            config = tf.AutoConfig.for_model(model_type, vocab_size=len(tok), **ids, **overrides)
        except ValueError as err:
            raise ConfigError(f"model.config: {err}") from err
    model = _load(cfg, config)
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(
        model.config, "n_positions", None
    )
    needed = spec.max_length + (cfg.data.sft.max_new_tokens if cfg.data else 0)
    if positions is not None and positions < needed:
        raise ConfigError(
            f"{spec.name} has {positions} positions: fewer than model.max_length "
            f"+ data.sft.max_new_tokens ({needed})"
        )
    return model


def _load(cfg: JobConfig, config) -> nn.Module:
    """The weights (pretrained, else random) for `config`, quantised when `lora.quantize` says."""
    import transformers as tf

    auto = tf.AutoModelForCausalLM
    if quantize.wanted(cfg):  # a 4-bit or 8-bit base (QLoRA) on the job's device
        return quantize.load(auto, cfg, config)
    if cfg.model.pretrained:
        return auto.from_pretrained(cfg.model.name, config=config)
    return auto.from_config(config)


def build_for_check(cfg: JobConfig) -> nn.Module:
    """The model as `build` makes it, with a stand-in tokenizer (pre-flight, on the meta
    device: the data is not read there)."""
    return build(cfg, CharTokenizer("0123456789abcdefghijklmnopqrstuvwxyz =+-"))

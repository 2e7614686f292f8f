"""`data.sft`: the settings of a causal-LM instruction fine-tuning job (`task: causal-lm`).

Where the prompt/response pairs are in a JSONL file (or chat messages), how examples are
packed, and how a generated answer is scored (exact match through a regex). Normalised
away for every other task (identity.py), so no classification job's id depends on it.
Standard library and pydantic only, like every schema module.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from ftmatrix.bounds import Int
from ftmatrix.sections import Section

# data.builtin datasets of task causal-lm, each generated from data.split_seed
GENERATED = ("reverse-digits",)
GENERATED_EXAMPLES = 2000  # pairs generated when data.limit is not set


class SftConfig(Section):
    """Instruction fine-tuning data and scoring (task causal-lm only)."""

    prompt_column: str = Field("prompt", description="JSONL key of the prompt text.")
    response_column: str = Field("response", description="JSONL key of the wanted response.")
    messages_column: str | None = Field(
        None,
        description="JSONL key of a chat (a list of {role, content}); the last message is "
        "the response, the ones before it the prompt. Replaces prompt/response columns.",
    )
    answer_regex: str = Field(
        r"(?s)^\s*(.*?)\s*$",
        description="Extracts the answer from a generation and from the reference "
        "response (its first group, else the whole match); exact match compares the two. "
        "Default: the whole text, stripped.",
    )
    max_new_tokens: Int = Field(
        32, gt=0, le=65536, description="Tokens generated per test prompt (greedy)."
    )
    packing: bool = Field(
        False, description="Concatenate training examples into rows of model.max_length."
    )
    digits: Int = Field(
        3, gt=0, le=32, description="Length of the digit strings of builtin reverse-digits."
    )

    @field_validator("answer_regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as err:
            raise ValueError(f"answer_regex does not compile: {err}") from None
        return v

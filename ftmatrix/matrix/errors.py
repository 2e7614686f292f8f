"""Pydantic's validation errors in the words of a matrix file.

One translator for every schema a matrix meets (the file's own keys, a job's config,
a search space), so that the same mistake reads the same wherever it is made. Standard
library only: every module of the matrix language may import it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ftmatrix import catalog


def message(error: Any, *, fields: Sequence[str], parent: str | None = None) -> str:
    """What a pydantic error (one item of `ValidationError.errors()`) says, for a user.

    `fields` are the keys allowed where an unknown key was written (for the suggestion),
    and `parent` the dotted key they belong to, when the message should list them."""
    text = error["msg"]
    if error["type"] == "extra_forbidden":
        name = str(error["loc"][-1]) if error["loc"] else ""
        text = f"unknown key '{name}'{catalog.did_you_mean(name, fields)}"
        if parent is not None:
            text += f"; '{parent}' has: {', '.join(fields)}"
    elif error["type"] == "missing":
        text = "required key missing"
    elif error["type"] != "unknown_name" and not isinstance(error.get("input"), (dict, list)):
        text = f"{text} (got {error.get('input')!r}){_literal_hint(error)}"
    return text.removeprefix("Value error, ")


def _literal_hint(error: Any) -> str:
    """' (did you mean 'x'?)' for a word outside a fixed set of choices (a Literal)."""
    if error["type"] != "literal_error":
        return ""
    choices = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
    return catalog.did_you_mean(str(error.get("input")), choices)


def config_key(section: str, error: Any) -> str:
    """The dotted config key a pydantic error of `section` is about (validator-only
    parts of its location, such as `function-after[...]`, left out)."""
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "union["))]
    return ".".join([section, *loc])

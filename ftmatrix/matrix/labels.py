"""How settings are shown: compact values (`1e-4`, `r=8,alpha=16`) and short column
names (`lr` for `train.lr`).

Job labels, the `plan` table, `--only` and search trials all show settings this way, so
that what a user reads in one place can be typed in another.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel


def fmt(value: Any) -> str:
    """Compact, stable display of a setting: 1e-4, true, r=8,alpha=16."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return ",".join(f"{k}={fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(fmt(v) for v in value)
    return str(value)


def _float(value: float) -> str:
    """The shortest exact form: `1e-4` rather than `0.0001`, `0.1` as `0.1`."""
    if value != 0 and abs(value) < 1e-3 and math.isfinite(value):
        text = repr(value)
        for digits in range(16):
            text = f"{value:.{digits}e}"
            if float(text) == value:
                break
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return repr(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """`train.lr` -> `lr`, `lora.enabled` -> `lora`, `model.name` -> `model`; full keys
    where two short names would collide."""
    last = []
    for k in keys:
        parts = k.split(".")
        if len(parts) > 1 and parts[-1] in ("enabled", "name"):
            parts = parts[:-1]
        last.append(parts[-1])
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}

"""The building blocks of every job-config section: a strict, immutable pydantic base,
and validators for settings named by a word (a loss, an optimizer, a scheduler).

Standard library and pydantic only, like every schema module."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from ftmatrix import catalog


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, instances are immutable,
    and no float setting is nan or infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def name_validator(names: dict[str, tuple[str, ...]], what: str):
    """A before-validator that maps accepted spellings to one canonical name."""

    def check(value: Any) -> str:
        name = catalog.canonical(value, names)
        if name is None:
            raise PydanticCustomError(
                "unknown_name",
                "unknown {what} '{value}'; expected one of: {choices}{hint}",
                {
                    "what": what,
                    "value": value,
                    "choices": ", ".join(names),
                    "hint": catalog.did_you_mean_name(value, names),
                },
            )
        return name

    return check


def named(cls_name: str):
    """Lets a section be written as its name alone: `loss: focal` == `loss: {name: focal}`."""

    def wrap(value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    wrap.__name__ = f"{cls_name}_from_name"
    return wrap

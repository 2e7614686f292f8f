"""Number types and limits shared by every schema (job, matrix, search, executor).

pydantic alone would read YAML's `true` as 1 in a number field; these types refuse it.
The limits lie far beyond any real fine-tuning run and below what would exhaust memory
or overflow before the first step. Standard library and pydantic only.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def not_bool(value: Any) -> Any:
    """Before-validator of number fields: true/false are not numbers here."""
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "expected a number, not true/false")
    return value


# Numbers that refuse true/false. Floats are finite where the model says
# allow_inf_nan=False (every job-config section does).
Int = Annotated[int, BeforeValidator(not_bool)]
Float = Annotated[float, BeforeValidator(not_bool)]
FiniteFloat = Annotated[float, BeforeValidator(not_bool), Field(allow_inf_nan=False)]

# numpy's and torch's generators take seeds in [0, 2**32).
SEED_LIMIT = 2**32
Seed = Annotated[int, BeforeValidator(not_bool), Field(ge=0, lt=SEED_LIMIT)]

MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_EXAMPLES = 1_000_000_000
# A run folder is runs/<name>/<job id>: one path component, 255 bytes on every common
# file system, with room left for the suffixes of files named after it.
MAX_NAME = 128

"""The `executor:` block of a matrix: where its jobs run (schema only; see slurm.py)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ftmatrix.bounds import Float, Int, not_bool

# Slurm's --time forms: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds.
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
MAX_MINUTES = 366 * 24 * 60


def slurm_minutes(value: Any) -> Any:
    """A time limit as whole minutes: a number is minutes; text is read as Slurm's
    --time reads it (`1:30:00` is 90 minutes, `2-0` two days), seconds rounded up."""
    value = not_bool(value)
    if not isinstance(value, str):
        return value
    m = _SLURM_TIME.match(value.strip())
    if m is None:
        raise ValueError(
            "not a Slurm time limit: write minutes (90), MM:SS, HH:MM:SS, D-HH, D-HH:MM "
            "or D-HH:MM:SS"
        )
    days, first, second, third = m.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (*parts, 0, 0)[:3]
        return int(days) * 1440 + hours * 60 + minutes + math.ceil(seconds / 60)
    if len(parts) == 3:  # HH:MM:SS
        return parts[0] * 60 + parts[1] + math.ceil(parts[2] / 60)
    return parts[0] + (math.ceil(parts[1] / 60) if len(parts) == 2 else 0)  # MM[:SS]


class SlurmSpec(BaseModel):
    """Where and how matrix jobs run on Slurm (`executor.slurm` in a matrix, or flags)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    partition: str | None = Field(None, description="Partition (queue); default: the cluster's.")
    time: Annotated[int, BeforeValidator(slurm_minutes)] = Field(
        60,
        gt=0,
        le=MAX_MINUTES,
        description="Time limit per job: minutes, or Slurm's text forms (1:30:00, 2-0).",
    )
    gpus_per_job: Int = Field(0, ge=0, le=64, description="GPUs per job (--gpus-per-node).")
    cpus_per_job: Int = Field(1, gt=0, le=4096, description="CPU cores per job (--cpus-per-task).")
    mem_gb: Float | None = Field(
        None, gt=0, le=100_000, description="Memory per job in GB (--mem)."
    )
    account: str | None = Field(None, description="Account to charge (--account).")
    qos: str | None = Field(None, description="Quality of service (--qos).")
    max_running: Int = Field(
        64,
        gt=0,
        le=100_000,
        description="At most this many of the matrix's jobs run at once (array %N).",
    )
    sbatch_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra sbatch options without the dashes, e.g. {constraint: a100}.",
    )
    poll: Float = Field(5.0, gt=0, le=3600, description="Seconds between queue checks (sacct).")


class ExecutorSpec(BaseModel):
    """Where jobs run: here (`local`, the default) or on a Slurm cluster."""

    model_config = ConfigDict(extra="forbid")

    use: Literal["local", "slurm"] = Field(
        "local", description="local (this machine, the default) or slurm."
    )
    slurm: SlurmSpec = Field(default_factory=SlurmSpec, description="Slurm settings.")

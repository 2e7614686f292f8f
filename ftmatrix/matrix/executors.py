"""The `executor:` block of a matrix: where its jobs run (schema only; see slurm.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SlurmSpec(BaseModel):
    """Where and how matrix jobs run on Slurm (`executor.slurm` in a matrix, or flags)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="Partition (queue); default: the cluster's.")
    time: int = Field(60, gt=0, description="Time limit per job, in minutes.")
    gpus_per_job: int = Field(0, ge=0, description="GPUs per job (--gpus-per-node).")
    cpus_per_job: int = Field(1, gt=0, description="CPU cores per job (--cpus-per-task).")
    mem_gb: float | None = Field(None, gt=0, description="Memory per job in GB (--mem).")
    account: str | None = Field(None, description="Account to charge (--account).")
    qos: str | None = Field(None, description="Quality of service (--qos).")
    max_running: int = Field(
        64, gt=0, description="At most this many of the matrix's jobs run at once (array %N)."
    )
    sbatch_args: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra sbatch options without the dashes, e.g. {constraint: a100}.",
    )
    poll: float = Field(5.0, gt=0, description="Seconds between queue checks (sacct).")


class ExecutorSpec(BaseModel):
    """Where jobs run: here (`local`, the default) or on a Slurm cluster."""

    model_config = ConfigDict(extra="forbid")

    use: Literal["local", "slurm"] = Field(
        "local", description="local (this machine, the default) or slurm."
    )
    slurm: SlurmSpec = Field(default_factory=SlurmSpec, description="Slurm settings.")

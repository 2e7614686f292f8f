"""What a plan is made of: `Job` (id, label, settings, config) and `Plan`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftmatrix.config import JobConfig
from ftmatrix.identity import job_id
from ftmatrix.matrix.labels import short_names
from ftmatrix.matrix.search import Dist
from ftmatrix.matrix.spec import MatrixSpec
from ftmatrix.matrix.units import JobUnits, assemble
from ftmatrix.result import PlanEntry, PlanFile


class Header:
    """The varying keys of a plan and their short names, shared by all its jobs."""

    __slots__ = ("keys", "names")

    def __init__(self, keys: tuple[str, ...]):
        self.keys = keys  # dotted config keys, in axis order
        self.names = tuple(short_names(list(keys)).values())  # `lr` for `train.lr`


class Job:
    """One training job of a plan: id, label, the settings that vary, and its config.

    Label, settings and config are built on first use: a 100,000-job plan only pays
    for the ones it shows or runs."""

    __slots__ = ("_config", "_header", "_label", "_parts", "_values", "id")

    def __init__(
        self,
        id: str,
        header: Header,
        values: tuple[str, ...],
        config: JobConfig | None = None,
        *,
        parts: JobUnits | None = None,
    ):
        self.id = id  # 12 hex chars: hash of the normalised config, the job folder's name
        self._header = header
        self._values = values  # display of each varying setting, in header order
        self._config = config
        self._parts = parts  # what the config is assembled from, when not given
        self._label: str | None = None

    @property
    def label(self) -> str:
        """'lr=1e-4 lora=r8': the varying settings only ('' when nothing varies)."""
        if self._label is None:
            pairs = zip(self._header.names, self._values, strict=True)
            self._label = " ".join(f"{k}={v}" for k, v in pairs)
        return self._label

    @property
    def settings(self) -> dict[str, str]:
        """Varying dotted key -> display value, in axis order."""
        return dict(zip(self._header.keys, self._values, strict=True))

    @property
    def config(self) -> JobConfig:
        """The validated JobConfig (assembled on first use from validated parts)."""
        if self._config is None:
            assert self._parts is not None  # a job has one or the other
            self._config = assemble(self._parts.parts())
        return self._config

    def part(self, section: str) -> Any:
        """One validated top-level section, without assembling the whole config."""
        if self._config is None and self._parts is not None:
            parts = self._parts.parts()
            if section in parts:
                return parts[section]
        return getattr(self.config, section)

    def replace_config(self, config: JobConfig) -> Job:
        """The same job with another config (and so, another id)."""
        return Job(job_id(config), self._header, self._values, config)

    def with_search(self, config: JobConfig, searched: dict[str, str]) -> Job:
        """A trial of this grid point: `config`, labelled by the point's settings and
        then the searched ones (dotted path -> display value)."""
        header = Header((*self._header.keys, *searched))
        return Job(job_id(config), header, (*self._values, *searched.values()), config)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, label={self.label!r})"


@dataclass
class Plan:
    """A matrix expanded into jobs."""

    name: str
    description: str
    path: Path
    runs_dir: str | None
    jobs: list[Job]
    axes: list[str]  # varying dotted keys, in order
    points: int = 0  # matrix points before identical jobs were merged
    spec: MatrixSpec | None = None
    # with a `search:` block, each job above is a grid point whose trials are sampled
    # at run time over these distributions
    search: list[Dist] = field(default_factory=list)

    @property
    def axis_names(self) -> list[str]:
        """Short column names of the varying axes: `lr` for `train.lr`."""
        return list(short_names(self.axes).values())

    def to_planfile(self) -> PlanFile:
        return PlanFile(
            name=self.name,
            description=self.description,
            matrix_path=str(self.path),
            axes=self.axes,
            jobs=[PlanEntry(id=j.id, label=j.label, settings=j.settings) for j in self.jobs],
        )

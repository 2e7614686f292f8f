"""The `search:` block of a matrix: tuned search (random, TPE, evolution) over a space.

A space maps dotted config paths to distributions, written either in ftmatrix's form
(`train.lr: {loguniform: [1e-4, 0.1]}`) or in NNI's (`{_type: loguniform, _value: [...]}`,
inline or from an NNI search-space file), so NNI experiments carry across unchanged.
Every NNI `_type` is either supported or refused with a reason.

Validation needs no optuna; `Dist.suggest` takes a trial, and the sampler and pruner are
`ftmatrix.runner.sampling`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftmatrix import catalog
from ftmatrix.bounds import Int, Seed
from ftmatrix.matrix import paths

KINDS = ("choice", "uniform", "loguniform", "int", "quniform", "qloguniform")
# Drawn with optuna's suggest_int; `logint` (log-scaled) is what a loguniform over a
# whole-number setting becomes, never written in a matrix.
INTEGER_KINDS = ("int", "logint")
MAX_GRID = 100_000  # values strategy grid may enumerate for one setting
# NNI's documented _type values: what each becomes here, or why it is refused.
NNI_TYPES: dict[str, str] = {
    "choice": "choice",
    "randint": "int",  # [lower, upper): upper excluded
    "uniform": "uniform",
    "quniform": "quniform",
    "loguniform": "loguniform",
    "qloguniform": "qloguniform",
}
NNI_REFUSED = {
    t: "optuna's samplers have no unbounded normal distribution; bound it with "
    "uniform or loguniform (e.g. mu ± 3 sigma)"
    for t in ("normal", "qnormal", "lognormal", "qlognormal")
}


class SearchSpec(BaseModel):
    """Tuned search instead of (or on top of) the grid: each trial is a job."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["grid", "random", "tpe", "evolution"] = Field(
        "tpe", description="Sampler: grid (all choices), random, tpe, or evolution (NSGA-II)."
    )
    trials: Int = Field(20, gt=0, le=100_000, description="Trials per grid point (the budget).")
    metric: str = Field(
        "test.accuracy",
        description="What is optimised: test.accuracy, test.f1_macro, test.loss, or a "
        "validation metric's best value: val_accuracy, val_loss, val_f1.",
    )
    direction: Literal["maximize", "minimize"] = Field(
        "maximize", description="Whether larger or smaller metric values are better."
    )
    seed: Seed = Field(0, description="Seed of the sampler: the same seed, the same trials.")
    prune: Literal["median", "asha"] | None = Field(
        None, description="Stop trials whose per-epoch validation metric is clearly worse."
    )
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted path -> distribution: {choice: [...]}, {uniform: [lo, hi]}, "
        "{loguniform: [lo, hi]}, {int: [lo, hi], step: 1}, {quniform: [lo, hi, q]}, "
        "{qloguniform: [lo, hi, q]}, or NNI's {_type: ..., _value: [...]}.",
    )
    space_file: str | None = Field(
        None, description="An NNI search-space file (JSON or YAML), relative to the matrix."
    )
    population_size: Int | None = Field(
        None,
        ge=2,
        le=10_000,
        description="strategy evolution: trials per generation, as NNI's evolution tuner's "
        "population_size (default: a quarter of the trials, between 2 and 50).",
    )

    @model_validator(mode="after")
    def _population_for_evolution(self) -> SearchSpec:
        if self.population_size is not None and self.strategy != "evolution":
            raise ValueError(
                f"population_size applies to strategy evolution, not {self.strategy}: "
                "remove it or write strategy: evolution"
            )
        return self


METRICS = (
    "test.accuracy",
    "test.f1_macro",
    "test.f1_weighted",
    "test.precision_macro",
    "test.recall_macro",
    "test.loss",
    "val_accuracy",
    "val_loss",
    "val_f1",
)


@dataclass(frozen=True)
class Dist:
    """One searched setting."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: float | None = None  # int step, or q of the quantized kinds
    values: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Draw a value with an optuna trial (ask/tell interface). A trial that already
        holds this parameter (a resumed one) gives it back unchanged."""
        name = self.path
        if self.kind == "choice":
            choices = list(self.values) if self.plain() else list(range(len(self.values)))
            return self.value(trial.suggest_categorical(name, choices))
        low, high = self.range()
        if self.kind in INTEGER_KINDS:
            step = int(self.step or 1)
            log = self.kind == "logint"
            return self.value(trial.suggest_int(name, int(low), int(high), step=step, log=log))
        log = self.kind in ("loguniform", "qloguniform")
        return self.value(trial.suggest_float(name, low, high, log=log))

    def describe(self) -> str:
        """How the setting is drawn, as `plan` shows it: `train.lr loguniform [0.0001,
        0.1]`, `train.epochs int [2, 6] step 2`, `train.batch_size choice [16, 32]`."""
        if self.kind == "choice":
            return f"{self.path} choice [{', '.join(map(str, self.values))}]"
        low, high = self.range()
        text = f"{self.path} {self.kind} [{low:g}, {high:g}]"
        if self.step is not None and self.step != 1:
            text += f" {'q' if self.kind.startswith('q') else 'step'} {self.step:g}"
        return text

    def range(self) -> tuple[float, float]:
        """[low, high] of a range (any kind but choice)."""
        assert self.low is not None and self.high is not None, self
        return self.low, self.high

    def value(self, param: Any) -> Any:
        """The setting for a parameter as optuna stores it: optuna keeps plain values
        only (a choice of mappings is stored as its index) and the quantized kinds are
        stored before rounding to their q."""
        if self.kind == "choice" and not self.plain():
            return self.values[param]
        if self.kind in ("quniform", "qloguniform"):
            return _quantize(param, self)
        return param

    def plain(self) -> bool:
        """Whether optuna can store the choices themselves (plain scalars)."""
        return all(v is None or isinstance(v, (bool, int, float, str)) for v in self.values)

    def grid_values(self) -> list[Any]:
        """Every value, for strategy: grid (choices and integer ranges only)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind in INTEGER_KINDS:
            low, high = self.range()
            step = int(self.step or 1)
            count = (int(high) - int(low)) // step + 1
            if count > MAX_GRID:
                raise ValueError(
                    f"{self.path}: strategy grid would try {count:,} values, more than "
                    f"{MAX_GRID:,}; narrow the range or list the choices"
                )
            return list(range(int(low), int(high) + 1, step))
        raise ValueError(f"{self.path}: strategy grid needs choice or int, not {self.kind}")

    def bounds(self) -> list[Any]:
        """Values that must be valid settings for the whole range to be: the choices,
        or the ends of the range (as drawn: whole numbers for the integer kinds)."""
        if self.kind == "choice":
            return list(self.values)
        low, high = self.range()
        if self.kind in INTEGER_KINDS:
            return [int(low), int(high)]
        return [self.value(low), self.value(high)]

    def middle(self) -> Any:
        """A value inside the range (the first choice), to try a trial with."""
        if self.kind == "choice":
            return self.values[0]
        low, high = self.range()
        if self.kind in INTEGER_KINDS:
            return int(low) + (int(high) - int(low)) // 2
        if self.kind in ("loguniform", "qloguniform"):
            return self.value(math.exp((math.log(low) + math.log(high)) / 2))
        return self.value(low / 2 + high / 2)


def _quantize(x: float, d: Dist) -> float:
    """NNI's definition: clip(round(x / q) * q, low, high)."""
    q = d.step or 1.0
    low, high = d.range()
    ratio = x / q
    value = min(max(round(ratio) * q if math.isfinite(ratio) else x, low), high)
    return float(f"{value:.12g}")  # 0.30000000000000004 -> 0.3


def parse_space(
    space: dict[str, Any], *, fixed: dict[str, str] | None = None
) -> tuple[list[Dist], list[tuple[str, str]]]:
    """Distributions and (key, message) problems. `fixed` maps the settings grid axes
    write to their axis, which a space may not also vary. A whole-number setting gets
    a whole-number distribution: `uniform` becomes `int`, `loguniform` a log-scaled
    int, and the quantized kinds need whole bounds and q."""
    fixed = fixed or {}
    dists, problems = [], []
    leaves = _leaf_index()
    for key, spec in space.items():
        path = str(key)
        if paths.check(path) is not None:
            matches = leaves.get(path, [])
            if len(matches) == 1:
                path = matches[0]  # an NNI name such as `lr` -> train.lr
            else:
                hint = f" (did you mean one of {', '.join(matches)}?)" if matches else ""
                problems.append((str(key), (paths.check(str(key)) or "") + hint))
                continue
        try:
            dist = _dist(path, spec)
            dist = _integer(dist) if paths.is_integer(path) else dist
        except ValueError as err:
            problems.append((str(key), str(err)))
            continue
        axis = _axis_of(dist, fixed)
        if axis is not None:
            where = "a grid axis" if axis == path else f"set by the grid axis '{axis}'"
            problems.append((str(key), f"'{path}' is both {where} and searched"))
            continue
        dists.append(dist)
    return dists, problems


def _axis_of(d: Dist, fixed: dict[str, str]) -> str | None:
    """The grid axis that writes a setting this distribution draws, if any."""
    written = {leaf for v in d.values or [None] for leaf in paths.leaves(d.path, v)}
    return next((a for s, a in fixed.items() for w in written if paths.overlap(w, s)), None)


def _integer(d: Dist) -> Dist:
    """The distribution of a whole-number setting: draws whole numbers only."""
    if d.kind in ("choice", *INTEGER_KINDS):
        return d
    low, high = d.range()
    if d.kind in ("quniform", "qloguniform"):
        if not all(float(v).is_integer() for v in (low, high, d.step or 1)):
            raise ValueError(
                f"{d.path} takes whole numbers: {d.kind} needs whole [low, high, q], "
                f"got [{low}, {high}, {d.step}]"
            )
        return d
    lo, hi = math.ceil(low), math.floor(high)
    if lo > hi:
        raise ValueError(f"{d.path} takes whole numbers, and [{low}, {high}] holds none")
    return _checked(Dist(d.path, "int" if d.kind == "uniform" else "logint", lo, hi, step=1))


def _leaf_index() -> dict[str, list[str]]:
    """Field name -> the dotted paths that end with it (for NNI's bare names)."""
    index: dict[str, list[str]] = {}
    for p in paths.all_paths():
        index.setdefault(p.rsplit(".", 1)[-1], []).append(p)
    return index


def _dist(path: str, spec: Any) -> Dist:
    if not isinstance(spec, dict) or not spec:
        raise ValueError(
            "a distribution is a mapping such as {loguniform: [1e-4, 0.1]} or "
            "{_type: choice, _value: [...]}"
        )
    if "_type" in spec:  # NNI
        extra = set(spec) - {"_type", "_value"}
        if extra:
            raise ValueError(f"unknown key(s) {sorted(map(str, extra))} beside _type/_value")
        kind, value = spec["_type"], spec.get("_value")
        if not isinstance(kind, str):
            raise ValueError(f"_type is a name such as choice or uniform, got {kind!r}")
        if kind in NNI_REFUSED:
            raise ValueError(f"NNI _type '{kind}' is not supported: {NNI_REFUSED[kind]}")
        if kind not in NNI_TYPES:
            known = [*NNI_TYPES, *NNI_REFUSED]
            raise ValueError(f"unknown NNI _type '{kind}'{catalog.did_you_mean(kind, known)}")
        return _nni(path, kind, value)
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        unknown = [k for k in spec if k not in (*KINDS, "step")]
        hint = catalog.did_you_mean(str(unknown[0]), KINDS) if unknown else ""
        raise ValueError(
            f"give exactly one distribution of: {', '.join(KINDS)}"
            + (f"; unknown '{unknown[0]}'{hint}" if unknown else "")
        )
    kind = kinds[0]
    extra = set(spec) - {kind, "step"}
    if extra or ("step" in spec and kind != "int"):
        raise ValueError(f"unknown key(s) {sorted(map(str, extra or {'step'}))} for {kind}")
    dist = _from_values(path, kind, spec[kind])
    if kind == "int" and "step" in spec:
        step = spec["step"]
        if not _number(step):
            raise ValueError(f"int's step is a whole number > 0, got {step!r}")
        dist = _checked(Dist(path, "int", low=dist.low, high=dist.high, step=step))
    return dist


def _number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nni(path: str, kind: str, value: Any) -> Dist:
    """An NNI distribution, read as NNI users write it: `_value` is [low, high] (plus q
    for the quantized kinds), and randint's upper bound is excluded. Bounds of the
    continuous kinds written the other way round ([0.1, 0.001]) mean the same interval:
    NNI's tuners sample between the two numbers, and its validator only logs the order.
    A reversed randint is refused: which end it excludes would be a guess."""
    if kind == "choice":
        dist = _from_values(path, "choice", value)
        if any(isinstance(v, dict) and "_name" in v for v in dist.values):
            raise ValueError("NNI nested search spaces (choices with _name) are not supported")
        return dist
    n = 3 if kind.startswith("q") else 2
    _check_numbers(value, n, kind)
    if kind == "randint":  # reversed, which end is excluded would be a guess: refused
        if not value[0] < value[1]:
            raise ValueError(
                f"randint's _value is [lower, upper) with upper excluded (NNI): "
                f"{value} holds no integer"
            )
        return _checked(Dist(path, "int", low=value[0], high=value[1] - 1, step=1))
    low, high = sorted(value[:2])
    if not low < high:
        raise ValueError(f"{kind}'s _value is [low, high, ...] with low < high (NNI), got {value}")
    return _from_values(path, NNI_TYPES[kind], [low, high, *value[2:]])


def _from_values(path: str, kind: str, value: Any) -> Dist:
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ValueError("choice needs a non-empty list of values")
        return Dist(path, "choice", values=tuple(value))
    if kind in ("quniform", "qloguniform"):
        _check_numbers(value, 3, kind)
        return _checked(Dist(path, kind, low=value[0], high=value[1], step=value[2]))
    _check_numbers(value, 2, kind)
    return _checked(
        Dist(path, kind, low=value[0], high=value[1], step=1 if kind == "int" else None)
    )


def _check_numbers(value: Any, n: int, kind: str) -> None:
    shape = "[low, high, q]" if n == 3 else "[low, high]"
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(f"{kind} needs {shape}, got {value!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{kind} needs numbers {shape}, got {value!r}")
    if not all(math.isfinite(v) for v in value):
        raise ValueError(f"{kind} bounds must be finite, got {value!r}")


def _checked(d: Dist) -> Dist:
    low, high = d.range()
    if not low < high and not (d.kind in INTEGER_KINDS and low == high):
        raise ValueError(f"{d.kind} needs low < high, got [{low}, {high}]")
    if d.kind in ("loguniform", "qloguniform", "logint") and low <= 0:
        raise ValueError(f"{d.kind} needs low > 0, got {low}")
    if d.step is not None and d.step <= 0:
        raise ValueError(f"the step/q of {d.kind} must be > 0, got {d.step}")
    if d.kind == "int" and not all(float(v).is_integer() for v in (low, high, d.step or 1)):
        raise ValueError(f"int needs whole numbers, got [{low}, {high}] step {d.step}")
    return d


def read_space_file(path: Path) -> dict[str, Any]:
    """An NNI search-space file, JSON or YAML of the same shape, read as matrices are
    (YAML 1.2, of which JSON is a part): `1e-4` is a number, `on`/`off` are text, and
    duplicate keys or tags are refused with the file's line."""
    from ftmatrix.matrix.load import MatrixError, read_yaml

    try:
        data, positions = read_yaml(path)
    except MatrixError as err:
        raise ValueError("; ".join(map(str, err.problems))) from None
    if not isinstance(data, dict):
        where = positions.problem((), "", "")
        raise ValueError(
            f"{where.file}:{where.line}:{where.col}: a search-space file must be a mapping "
            "of name -> distribution"
        )
    return data


def grid_size(dists: list[Dist]) -> int:
    """How many settings strategy: grid has (it never draws one twice)."""
    return math.prod(len(d.grid_values()) for d in dists)


def epoch_metric(metric: str) -> str:
    """The per-epoch validation metric that stands for `metric` while a trial trains
    (what pruning reads): val_loss for losses, val_f1 for F1 and the other macro
    scores, val_accuracy otherwise."""
    if metric.startswith("val_"):
        return metric
    if metric == "test.loss":
        return "val_loss"
    if metric == "test.accuracy":
        return "val_accuracy"
    return "val_f1"

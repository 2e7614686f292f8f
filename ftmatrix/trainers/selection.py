"""Ranking epochs: which epoch's weights are tested, and when early stopping stops.

Both follow a validation metric and a direction (`Rule`). The tested epoch is chosen by
`train.test`: the best epoch by its rule, or the last one; early stopping watches its own
rule. An epoch whose metric is NaN or infinite is never the best (and counts as no
improvement); when no epoch was ranked, the last epoch is tested and the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ftmatrix.config import TrainConfig
from ftmatrix.result import EpochMetrics


@dataclass(frozen=True)
class Rule:
    """Rank epochs by `metric`: smaller is better under mode min."""

    metric: str  # val_loss | val_accuracy | val_f1
    mode: str  # min | max
    min_delta: float = 0.0

    def __str__(self) -> str:
        return f"best {self.metric} ({self.mode})"


def picking_rule(train: TrainConfig) -> Rule | None:
    """The rule that picks the tested epoch; None: the last epoch."""
    test, stopping = train.test, train.early_stopping
    if test.epoch == "last":
        return None
    if test.metric is not None:
        return Rule(test.metric, test.mode)
    if stopping.enabled:  # the rule's default: what early stopping watches
        return Rule(stopping.metric, stopping.mode, stopping.min_delta)
    return Rule("val_loss", "min")


def stop_rule(train: TrainConfig) -> Rule | None:
    """What early stopping watches; None when it is off."""
    es = train.early_stopping
    return Rule(es.metric, es.mode, es.min_delta) if es.enabled else None


def fresh() -> dict:
    """A tracker's state before the first epoch (kept in the checkpoint as is)."""
    return {"value": None, "epoch": None, "bad": 0}


def value_of(row: EpochMetrics, metric: str) -> float | None:
    return {"val_loss": row.val_loss, "val_accuracy": row.val_accuracy, "val_f1": row.val_f1}[
        metric
    ]


def update(state: dict, rule: Rule, row: EpochMetrics) -> bool:
    """Rank one finished epoch; True when it is the new best. Without a validation
    split every epoch is better than the one before (the last is the best)."""
    value = value_of(row, rule.metric)
    if value is None:
        value = -float(row.epoch) if rule.mode == "min" else float(row.epoch)
    sign = 1.0 if rule.mode == "min" else -1.0
    finite = math.isfinite(value)
    if finite and (state["value"] is None or sign * (state["value"] - value) > rule.min_delta):
        state.update(value=value, epoch=row.epoch, bad=0)
        return True
    state["bad"] += 1
    return False


def unranked(history: list[EpochMetrics], rule: Rule | None) -> list[int]:
    """Epochs whose metric under `rule` was NaN or infinite."""
    if rule is None:
        return []
    values = [(m.epoch, value_of(m, rule.metric)) for m in history]
    return [epoch for epoch, v in values if v is not None and not math.isfinite(v)]


def tested(rule: Rule | None, best_epoch: int | None, last: int) -> tuple[int, str]:
    """(the epoch to test, the rule that chose it, in words)."""
    if rule is None:
        return last, "last"
    if best_epoch is None:
        return last, f"last (no epoch had a finite {rule.metric})"
    return best_epoch, str(rule)

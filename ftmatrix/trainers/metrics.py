"""Test and validation metrics, all from scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ftmatrix import components as names
from ftmatrix.result import TestMetrics
from ftmatrix.trainers import components


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def epoch_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """An epoch's validation scores: accuracy and macro F1, precision and recall."""
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    return {
        "val_accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "val_f1": float(f1),
        "val_precision": float(precision),
        "val_recall": float(recall),
    }


def test_metrics(
    *, y_true: np.ndarray, probs: np.ndarray, loss: float, class_names: list[str], k: int
) -> TestMetrics:
    """Every number result.json reports about the test split. Outputs that are NaN or
    infinite (a diverged model) count as no vote for their class: the metrics say how
    bad it is instead of failing the job."""
    labels = np.arange(len(class_names))
    probs = np.where(np.isfinite(probs), probs, 0.0)
    y_pred = probs.argmax(axis=1)
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = {
        name: float(cm[i, i] / support[i]) if support[i] else 0.0
        for i, name in enumerate(class_names)
    }
    k = min(k, len(class_names) - 1) if len(class_names) > 2 else None
    topk = float(skm.top_k_accuracy_score(y_true, probs, k=k, labels=labels)) if k else None
    return TestMetrics(
        loss=float(loss),
        accuracy=float(skm.accuracy_score(y_true, y_pred)),
        f1_macro=f1_macro(y_true, y_pred),
        f1_weighted=float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        precision_macro=float(
            skm.precision_score(y_true, y_pred, average="macro", zero_division=0)
        ),
        recall_macro=float(skm.recall_score(y_true, y_pred, average="macro", zero_division=0)),
        top1=float(skm.top_k_accuracy_score(y_true, probs, k=1, labels=labels))
        if len(class_names) > 2
        else float(skm.accuracy_score(y_true, y_pred)),
        topk=topk,
        k=k,
        per_class_accuracy=per_class,
        confusion_matrix=cm.tolist(),
        class_names=class_names,
        n=len(y_true),
    )


def with_extras(
    test: TestMetrics, factories: list[str], *, y_true: np.ndarray, probs: np.ndarray
) -> TestMetrics:
    """The test metrics plus each extra metric of `train.metrics`, called as
    function(y_true, y_pred) on the test split and kept under the function's name."""
    if not factories:
        return test
    y_pred = np.where(np.isfinite(probs), probs, 0.0).argmax(axis=1)
    extras = {names.metric_name(f): float(components.load(f)(y_true, y_pred)) for f in factories}
    return TestMetrics.model_validate({**test.model_dump(), **extras})

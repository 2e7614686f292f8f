"""Losses for classification. The regression losses (MSE, L1, smooth L1) compare one-hot
targets with the softmax probabilities, or with the raw outputs (`outputs: logits`, as
`nn.MSELoss()(model(x), one_hot)` would), so they work without converting labels."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ftmatrix.config import LossConfig
from ftmatrix.trainers import components
from ftmatrix.trainers.models import ConfigError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def class_weights(spec: LossConfig, train_labels: torch.Tensor, num_classes: int):
    """Per-class weights: as given, 'balanced' (n / (k * count)), or None."""
    if spec.class_weights is None:
        return None
    if spec.class_weights == "balanced":
        counts = torch.bincount(train_labels, minlength=num_classes).clamp(min=1).float()
        return len(train_labels) / (num_classes * counts)
    if len(spec.class_weights) != num_classes:
        raise ConfigError(
            f"train.loss.class_weights has {len(spec.class_weights)} values for "
            f"{num_classes} classes"
        )
    return torch.tensor(spec.class_weights, dtype=torch.float32)


def build(spec: LossConfig, *, weights: torch.Tensor | None, num_classes: int) -> Loss:
    if spec.factory is not None:  # your own loss(logits, targets), imported now
        return components.load(spec.factory)
    if spec.name == "cross_entropy":
        return lambda logits, y: F.cross_entropy(
            logits.float(), y, weight=_on(weights, logits), label_smoothing=spec.label_smoothing
        )
    if spec.name == "focal":
        return lambda logits, y: focal(
            logits, y, gamma=spec.gamma, alpha=spec.alpha, weights=weights
        )
    regression = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": None}[spec.name]
    raw = spec.outputs == "logits"

    def against_one_hot(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = logits.float() if raw else logits.float().softmax(dim=-1)
        target = F.one_hot(y, num_classes).float()
        if regression is None:
            return F.smooth_l1_loss(out, target, beta=spec.beta)
        return regression(out, target)

    return against_one_hot


def focal(
    logits: torch.Tensor,
    y: torch.Tensor,
    *,
    gamma: float,
    alpha: float | None,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """Multi-class focal loss (Lin et al. 2017): -alpha_t (1 - p_t)^gamma log p_t."""
    log_p = F.log_softmax(logits.float(), dim=-1).gather(1, y[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        loss = alpha * loss
    if weights is not None:
        loss = loss * _on(weights, logits)[y]
    return loss.mean()


def _on(weights: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if weights is None else weights.to(like.device)

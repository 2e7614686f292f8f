"""A data factory for the built-in trainer (`data.factory`): sklearn's digits as
tensors, already shaped and normalised for the model.

ftmatrix calls digits(**data.config) in the job process. It returns {"train": (x, y),
"test": (x, y)} (val is cut from train by data.val_fraction); x is float (N, 3, size,
size), used as given: ftmatrix neither resizes, normalises nor augments it."""

import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F


def digits(size: int = 8, test_share: float = 0.2) -> dict:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in 0..1
    x = (x - x.mean()) / x.std()
    x = x.expand(-1, 3, -1, -1)  # three channels, as an RGB model expects
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(bunch.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    n_test = int(len(y) * test_share)
    test, train = order[:n_test], order[n_test:]
    return {"train": (x[train].contiguous(), y[train]), "test": (x[test].contiguous(), y[test])}


def balanced_accuracy(y_true, y_pred) -> float:
    """An extra test metric (`train.metrics`): called as f(y_true, y_pred) on the test split."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


def cross_entropy(logits, targets):
    """An own loss (`train.loss.factory`): called as f(logits, targets) -> scalar tensor."""
    return F.cross_entropy(logits.float(), targets)

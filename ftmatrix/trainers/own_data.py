"""`data.factory`: your own data in the built-in trainer, imported here in the job
process only (`validate` checks only that its code can be found).

The factory is called as factory(**data.config) and returns a dict with a "train" split
and, if it has them, "val" and "test" (a missing one is cut from train, stratified, as
for any source, by data.val_fraction / data.test_fraction and data.split_seed). Each
split is either

- a pair (x, y): x a tensor or numpy array whose first axis is the examples, already
  shaped and normalised for the model (images float (N, C, H, W)); y integer class
  labels 0..K-1 (a tensor, array or list), or
- a torch Dataset whose items are (x, y) pairs; its items are stacked into one tensor.

Optionally "class_names": a list of K names (default "0".."K-1"). K is the largest
label plus one. The examples are used as given: ftmatrix neither resizes, normalises
nor augments them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ftmatrix.trainers import components
from ftmatrix.trainers.sources import SPLITS, DataError


def load(factory: str, config: dict[str, Any]) -> tuple[dict[str, tuple[Any, np.ndarray]], list]:
    """(split -> (float tensor x, int labels), class names) from the factory's return."""
    made = components.load(factory)(**config)
    if not isinstance(made, dict) or "train" not in made:
        raise DataError(f"data.factory {factory} must return a dict with a 'train' split")
    unknown = set(made) - {*SPLITS, "class_names"}
    if unknown:
        raise DataError(f"data.factory {factory} returned unknown keys: {sorted(unknown)}")
    given = {name: _split(factory, name, made[name]) for name in SPLITS if name in made}
    n_classes = 1 + max(int(y.max()) for _, y in given.values() if len(y))
    names = made.get("class_names") or [str(i) for i in range(n_classes)]
    if len(names) < n_classes:
        raise DataError(
            f"data.factory {factory}: {len(names)} class_names for labels 0..{n_classes - 1}"
        )
    return given, [str(n) for n in names]


def _split(factory: str, name: str, value: Any) -> tuple[torch.Tensor, np.ndarray]:
    where = f"data.factory {factory}, split '{name}'"
    if isinstance(value, torch.utils.data.Dataset) and not isinstance(value, tuple | list):
        items = [value[i] for i in range(len(value))]  # type: ignore[arg-type]
        if not items:
            raise DataError(f"{where}: the Dataset is empty")
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = np.asarray([int(item[1]) for item in items])
    elif isinstance(value, tuple | list) and len(value) == 2:
        x, y = torch.as_tensor(value[0]), np.asarray(torch.as_tensor(value[1]).cpu())
    else:
        raise DataError(f"{where}: expected (x, y) or a torch Dataset of (x, y)")
    x = x.float()  # as given: a float tensor is never normalised again (loop.Inputs)
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} examples but {len(y)} labels")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{where}: labels must be one integer class index >= 0 per example")
    return x, y.astype(np.int64)

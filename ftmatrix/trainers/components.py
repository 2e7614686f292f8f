"""Your own components in the built-in trainer, imported here, in the job process only
(`validate` only checks that their code can be found: ftmatrix/components.py).

`model.factory` is called as factory(num_classes=N, **model.config) and returns an
nn.Module mapping normalised images (N, 3, H, W) to logits. The trainer does the rest
as for any model: LoRA through `lora.target_modules` (the module's last Linear layer is
its head, trained in full), the loop, the test, the result."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ftmatrix import components
from ftmatrix.job import CODE_DIR


def load(factory: str) -> Any:
    """The function a factory names, its module imported now: a file relative to the
    matrix's folder (FTMATRIX_CODE_DIR), or a module found from there or on sys.path."""
    base = Path(os.environ.get(CODE_DIR, os.getcwd()))
    where, _, name = factory.rpartition(":")
    path = components.file_of(factory, base_dir=base)
    if path is not None:
        spec = importlib.util.spec_from_file_location(f"ftmatrix_own_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if str(base) not in sys.path:
            sys.path.insert(0, str(base))
        module = importlib.import_module(where)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ImportError(f"{factory}: {where} has no function '{name}'")
    return fn


def call(factory: str, **kwargs: Any) -> tuple[Any, str | None]:
    """What the factory returns, and the name of its last nn.Linear layer (its head,
    trained in full under LoRA); None when it is no nn.Module or has no Linear layer
    (models.build refuses it)."""
    model = load(factory)(**kwargs)
    if not isinstance(model, nn.Module):
        return model, None
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return model, (linear[-1] if linear else None)

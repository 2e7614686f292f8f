"""Epoch checkpoints (for resume) and exported weights (safetensors).

checkpoint/state.pt    model, optimizer, scheduler, RNG and early-stopping state after
                       the last finished epoch; replaced atomically, loaded with
                       weights_only=True.
checkpoint/best-<E>.safetensors
                       the best epoch's full model weights so far. Named by epoch and
                       written before state.pt, which names the one to use: a kill
                       between the two writes cannot pair a state with the wrong best
                       weights; the stale file goes at the next save.
weights/               what the job exports: model.safetensors, or for LoRA the peft
                       adapter (adapter_model.safetensors + adapter_config.json, with the
                       trained head) — loadable again.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE = "state.pt"


def _replace(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied weights): clone each
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}


def _best(folder: Path, epoch: int) -> Path:
    return folder / f"best-{epoch}.safetensors"


def save_best(folder: Path, model: torch.nn.Module, *, epoch: int) -> None:
    state = _cpu_state(model)
    _replace(_best(folder, epoch), lambda tmp: save_file(state, tmp))


def load_best(folder: Path, model: torch.nn.Module, *, epoch: int | None) -> bool:
    """Load the best epoch's weights into the model; False when there are none."""
    if epoch is None or not _best(folder, epoch).exists():
        return False
    model.load_state_dict(load_file(str(_best(folder, epoch))), strict=True)
    return True


def prune_best(folder: Path, *, keep: int | None) -> None:
    """Remove best-weight files of epochs other than `keep` (the one state.pt names)."""
    for path in folder.glob("best-*.safetensors"):
        if path != _best(folder, keep):
            path.unlink(missing_ok=True)


def rng_state() -> dict:
    """Every generator's state, as tensors and plain values (so weights_only loads it)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": list(random.getstate()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, state: dict) -> None:
    _replace(folder / STATE, lambda tmp: torch.save(state, tmp))


def load(folder: Path) -> dict | None:
    path = folder / STATE
    if not path.exists():
        return None
    return torch.load(path, weights_only=True, map_location="cpu")


def export(weights: Path, model: torch.nn.Module, *, lora: bool, pretrained: bool) -> None:
    """Write the model to weights/: for LoRA the peft adapter with the trained head, and
    the whole model too when its base was not pretrained (a random base cannot be
    fetched again)."""
    weights.mkdir(parents=True, exist_ok=True)
    if lora:
        model.save_pretrained(str(weights))
    if not lora or not pretrained:
        state = _cpu_state(model)
        _replace(weights / "model.safetensors", lambda tmp: save_file(state, tmp))

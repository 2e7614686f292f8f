"""Epoch checkpoints (for resume) and exported weights (safetensors).

checkpoint/state.pt    model, optimizer, scheduler, RNG and early-stopping state after
                       the last finished epoch; loaded with weights_only=True.
checkpoint/best-<E>.safetensors
                       the best epoch's full model weights so far. Named by epoch and
                       written before state.pt, which names the one to use: a kill
                       between the two writes cannot pair a state with the wrong best
                       weights; the stale file goes at the next save.
weights/               what the job exports: model.safetensors, or for LoRA the peft
                       adapter (adapter_model.safetensors + adapter_config.json, with the
                       trained head) — loadable again.

Every file here is written through `result.write_atomic` and weights/ through
`result.replace_folder`: a kill at any moment leaves the previous file (or folder)
whole, or none, never a half-written one that a resume or a reload would read.
Weights go through safetensors' `save_model`/`load_model`, which store tied tensors
once: no copy of the model is made on the host to save it.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ftmatrix.result import CHECKPOINT_STATE as STATE
from ftmatrix.result import STARTS, replace_folder, write_atomic
from ftmatrix.result import WEIGHTS_MODEL as MODEL
from ftmatrix.trainers import quantize


def _best(folder: Path, epoch: int) -> Path:
    return folder / f"best-{epoch}.safetensors"


def save_weights(path: Path, model: torch.nn.Module) -> None:
    """The model's weights as one safetensors file, atomically (of a quantised base,
    only what trains: `model_state`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if quantize.is_quantized(model):
        write_atomic(path, lambda tmp: save_file(model_state(model), tmp))
    else:
        write_atomic(path, lambda tmp: save_model(model, tmp, force_contiguous=True))


def load_weights(path: Path, model: torch.nn.Module) -> None:
    """Weights written by `save_weights` into the model (strict: every name must match)."""
    if quantize.is_quantized(model):
        load_model_state(model, load_file(str(path)))
    else:
        load_model(model, str(path), strict=True)


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint keeps of the model: its state dict, or of a quantised base
    (QLoRA) the trainable tensors only. That base is loaded again exactly as it was
    (the same pretrained weights, or the same seed), and bitsandbytes' 4-bit layers
    cannot load their own state dict back (the quantisation statistics are extra keys)."""
    if not quantize.is_quantized(model):
        return model.state_dict()
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """`model_state`'s tensors into the model; every name must match."""
    if not quantize.is_quantized(model):
        model.load_state_dict(state)
        return
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != trainable:
        raise RuntimeError(
            f"checkpoint does not match the model's trainable tensors: missing "
            f"{sorted(trainable - set(state))[:5]}, unexpected {sorted(set(state) - trainable)[:5]}"
        )
    model.load_state_dict(state, strict=False)


def save_best(folder: Path, model: torch.nn.Module, *, epoch: int) -> None:
    save_weights(_best(folder, epoch), model)


def load_best(folder: Path, model: torch.nn.Module, *, epoch: int | None) -> bool:
    """Load the best epoch's weights into the model; False when there are none."""
    if epoch is None or not _best(folder, epoch).exists():
        return False
    load_weights(_best(folder, epoch), model)
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
    """Write state.pt, last of an epoch's files; temp files that a killed write left
    are removed first (the job's lock makes this process the folder's only writer)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    write_atomic(folder / STATE, lambda tmp: torch.save(state, tmp))


def load(folder: Path) -> dict | None:
    path = folder / STATE
    if not path.exists():
        return None
    return torch.load(path, weights_only=True, map_location="cpu")


def export(weights: Path, model: torch.nn.Module, *, lora: bool, pretrained: bool) -> None:
    """Write the model to weights/, whole or not at all: for LoRA the peft adapter with
    the trained head, and the whole model too when its base was not pretrained (a
    random base cannot be fetched again)."""

    def fill(folder: Path) -> None:
        if lora:
            model.save_pretrained(str(folder))
        if not lora or not pretrained:
            save_model(model, str(folder / MODEL), force_contiguous=True)

    replace_folder(weights, fill)


def begin(job_dir: Path, state: dict | None, *, seed: int) -> int:
    """The epoch this start of the job begins at (after a checkpoint's, or 1): noted in
    starts.log (with the GPUs the runner's pool pinned), and every RNG seeded."""
    start = state["epoch"] + 1 if state else 1
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    with (job_dir / STARTS).open("a") as f:
        f.write(f"{now} start epoch={start} gpus={gpus} pid={os.getpid()}\n")
    seed_everything(seed)
    return start


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's generators (CUDA's with torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

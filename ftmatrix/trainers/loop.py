"""The training and evaluation passes.

No host synchronisation per step: losses and correct counts accumulate on the device
and are read every `log_every` steps; evaluation copies its predictions to the host
once, at the end. Batches are shuffled by a generator seeded from (seed, epoch), so an
epoch draws the same order whether or not the job was resumed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from ftmatrix.trainers.data import ImageBatches, Split, TextBatches
from ftmatrix.trainers.models import Built, logits


class NanLoss(Exception):
    """The loss became NaN or infinite (error class `nan_loss`)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: stop between steps, leave no result."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


@dataclass
class Inputs:
    """Turns stored batches into model inputs on the device.

    `transform` (training batches only): `augment.BatchAugment`, applied here to the
    uint8 batch already on the device, every image its own draw, in a few batched
    operations: on a GPU the CPU stays out of the step."""

    built: Built
    device: torch.device
    kind: str  # image | text
    transform: Callable | None = None

    def __post_init__(self):
        self.mean = torch.tensor(self.built.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(self.built.std, device=self.device).view(1, -1, 1, 1)

    def __call__(self, x):
        if self.kind == "text":
            return {k: v.to(self.device, non_blocking=True) for k, v in x.items()}
        x = x.to(self.device, non_blocking=True)
        if x.dtype != torch.uint8:  # normalised once up front (see normalize_once)
            return x
        x = self.transform(x) if self.transform is not None else x.float().div_(255)
        return (x - self.mean) / self.std

    def normalize_once(self, split: Split, *, limit_bytes: int = 1 << 30) -> None:
        """Store a small split's images already normalised (float32), so batches are
        only sliced; large splits stay uint8 (4x smaller) and are normalised per batch."""
        if self.kind != "image" or split.x.dtype != torch.uint8:
            return
        if split.x.numel() * 4 > limit_bytes:
            return
        mean, std = self.mean.cpu(), self.std.cpu()
        split.x = (split.x.float().div_(255) - mean) / std


class Sliced(Dataset):
    """A whole batch per index list: x[indices], y[indices] (texts: each tensor)."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[int]):
        index = torch.as_tensor(indices)
        x = self.split.x
        x = {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]
        return x, self.split.y[index]


def loader(
    split: Split,
    *,
    kind: str,
    batch_size: int,
    shuffle_seed: int | None = None,
    workers: int | None = None,
) -> DataLoader:
    """Batches of a split. Without `workers` (the default, 0) a batch is one slice of
    the decoded tensors in memory: worker processes would only add pickling. Pinned
    memory on CUDA (faster, asynchronous copies to the GPU); workers, where asked for,
    persist across the loader's epochs."""
    workers = workers or 0
    generator = None
    if shuffle_seed is not None:
        generator = torch.Generator().manual_seed(shuffle_seed)
    if workers == 0:
        # in-memory tensors: slice whole batches (no per-example indexing and collation)
        order = RandomSampler(split.y, generator=generator) if generator else range(len(split))
        return DataLoader(
            Sliced(split),
            sampler=BatchSampler(order, batch_size=batch_size, drop_last=False),
            batch_size=None,
            pin_memory=torch.cuda.is_available(),
        )
    dataset = TextBatches(split) if kind == "text" else ImageBatches(split)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    seconds: float
    samples: int


def train_epoch(
    *,
    model: torch.nn.Module,
    built: Built,
    data: DataLoader,
    inputs: Inputs,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    schedule,
    accumulation: int,
    grad_clip: float | None,
    autocast: torch.dtype | None,
    log_every: int,
    on_log: Callable[[int, int, float, float], None],
    check_stop: Callable[[], None],
    poison: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> EpochStats:
    """One pass over the training data. `poison` makes the loss NaN (fault injection);
    `scaler` scales fp16 losses so small gradients do not underflow."""
    model.train()
    device = inputs.device
    total = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps = len(data)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    for step, (x, y) in enumerate(data, 1):
        check_stop()
        x, y = inputs(x), y.to(device, non_blocking=True)
        with torch.autocast(
            device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            out = logits(built, model, x)
            loss = loss_fn(out, y, x)
        if poison:
            loss = loss * float("nan")
        scaled = loss / accumulation
        (scaler.scale(scaled) if scaler else scaled).backward()
        if step % accumulation == 0 or step == steps:
            if scaler:
                scaler.unscale_(optimizer)  # clip the true gradients
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if scaler:
                scaler.step(optimizer)  # skipped when the gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.after_step()
        total += loss.detach().float() * len(y)
        correct += (out.detach().argmax(dim=-1) == y).sum()
        seen += len(y)
        if step % log_every == 0 or step == steps:
            mean = total.item() / seen  # the one host sync, every log_every steps
            if not math.isfinite(mean):
                raise NanLoss(f"loss is {mean} at step {step}")
            on_log(step, steps, mean, seen / (time.perf_counter() - start))
    seconds = time.perf_counter() - start
    return EpochStats(total.item() / max(seen, 1), correct.item() / max(seen, 1), seconds, seen)


@torch.inference_mode()
def evaluate(
    *,
    model: torch.nn.Module,
    built: Built,
    data: DataLoader,
    inputs: Inputs,
    loss_fn: Callable,
    autocast: torch.dtype | None,
    check_stop: Callable[[], None] = lambda: None,
) -> tuple[float, np.ndarray, np.ndarray]:
    """(mean loss, class probabilities, labels) over a split.

    Probabilities and labels stay on the device until the pass ends and are copied to
    the host once: a copy per batch would wait for every batch's forward pass."""
    model.eval()
    device = inputs.device
    total = torch.zeros((), device=device)
    probs, labels = [], []
    for x, y in data:
        check_stop()
        x, y = inputs(x), y.to(device, non_blocking=True)
        with torch.autocast(
            device.type, dtype=autocast or torch.float32, enabled=autocast is not None
        ):
            out = logits(built, model, x)
            loss = loss_fn(out, y, None)
        total += loss.float() * len(y)
        probs.append(out.float().softmax(dim=-1))
        labels.append(y)
    n = sum(len(y) for y in labels)
    if n == 0:
        return float("nan"), np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return total.item() / n, torch.cat(probs).cpu().numpy(), torch.cat(labels).cpu().numpy()

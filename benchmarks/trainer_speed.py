"""Training throughput: ftmatrix's trainer vs transformers.Trainer vs a plain PyTorch
loop, on the same tiny ViT, the same digits and the same batch size, in one run.

Each side trains EPOCHS epochs; samples/s counts training examples over the time spent
in the training passes (ftmatrix: its own per-epoch figure, minus nothing; the plain
loop: timed around its epochs; transformers: `train_samples_per_second`).

Then evaluation: `loop.evaluate` (predictions kept on the device, copied to the host
once) vs the same pass copying each batch's predictions to the host (what it did
before). On a CPU the copy is free, so the two should be equal; on a GPU each per-batch
copy waits for the batch (benchmarks/gpu_speed.py measures that).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/trainer_speed.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.tiny

from tests.tiny import TINY_VIT  # the trainer tests' ViT

EPOCHS, BATCH, LR = 3, 64, 3e-3
CONFIG = {
    "task": "image-classification",
    "data": {"builtin": "digits"},
    "model": TINY_VIT,
    "train": {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "optimizer": "adamw"},
}


def ftmatrix_rate(tmp: Path) -> float:
    from ftmatrix.result import read_metrics
    from ftmatrix.trainers.job import main

    job = tmp / "ftmatrix"
    job.mkdir()
    (job / "config.json").write_text(json.dumps(CONFIG))
    assert main(job) == 0
    rows = read_metrics(job)
    # training time only (the trainer also validates each epoch; the others do not)
    return sum(r.samples_per_second for r in rows) / len(rows)


def setup():
    import torch

    from ftmatrix.config import JobConfig
    from ftmatrix.trainers import data, models

    cfg = JobConfig.model_validate(CONFIG)
    splits = data.load(cfg)
    torch.manual_seed(0)
    built = models.build(cfg, len(splits.class_names))
    mean = torch.tensor(built.mean).view(1, -1, 1, 1)
    std = torch.tensor(built.std).view(1, -1, 1, 1)
    x = (splits.train.x.float() / 255 - mean) / std
    return built.model, x, splits.train.y


def plain_rate() -> float:
    import torch

    model, x, y = setup()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    start = time.perf_counter()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(y), BATCH):
            idx = order[i : i + BATCH]
            loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return EPOCHS * len(y) / (time.perf_counter() - start)


def hf_rate(tmp: Path) -> float:
    import torch
    from transformers import Trainer, TrainingArguments

    model, x, y = setup()

    class Digits(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"pixel_values": x[i], "labels": y[i]}

    args = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=BATCH,
        num_train_epochs=EPOCHS,
        learning_rate=LR,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
    )
    out = Trainer(model=model, args=args, train_dataset=Digits()).train()
    return out.metrics["train_samples_per_second"]


def eval_rates(passes: int = 5) -> tuple[float, float]:
    """(samples/s of loop.evaluate, samples/s of the pass as it was before, copying every
    batch's predictions and labels to the host) over digits' training split; the best
    of `passes` interleaved passes each."""
    import torch
    from gpu_speed import per_batch_evaluate  # (benchmarks/ is on sys.path)

    from ftmatrix.config import JobConfig
    from ftmatrix.trainers import data, loop, models

    cfg = JobConfig.model_validate(CONFIG)
    splits = data.load(cfg)
    built = models.build(cfg, len(splits.class_names))
    inputs = loop.Inputs(built, torch.device("cpu"), "image")

    def loss_fn(out, y, x):
        return torch.nn.functional.cross_entropy(out, y)

    times: dict[str, list[float]] = {"once": [], "per_batch": []}
    order = [("once", loop.evaluate), ("per_batch", per_batch_evaluate)]
    for index in range(passes):
        for name, run in order if index % 2 else order[::-1]:  # each goes first in turn
            batches = loop.loader(splits.train, kind="image", batch_size=BATCH)
            start = time.perf_counter()
            run(
                model=built.model,
                built=built,
                data=batches,
                inputs=inputs,
                loss_fn=loss_fn,
                autocast=None,
            )
            times[name].append(time.perf_counter() - start)
    n = len(splits.train)
    return n / min(times["once"]), n / min(times["per_batch"])


ROUNDS = 3  # interleaved; the best round of each counts (this machine is shared)


def main() -> None:
    rates: dict[str, list[float]] = {"ours": [], "plain": [], "hf": []}
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            rates["ours"].append(ftmatrix_rate(tmp))
            rates["plain"].append(plain_rate())
            rates["hf"].append(hf_rate(tmp))
    ours, plain, hf = (max(rates[k]) for k in ("ours", "plain", "hf"))
    print(f"tiny ViT on digits, batch {BATCH}, {EPOCHS} epochs, CPU, best of {ROUNDS} rounds")
    print(f"ftmatrix trainer:       {ours:8.0f} samples/s")
    print(f"plain PyTorch loop:     {plain:8.0f} samples/s   ftmatrix / plain = {ours / plain:.2f}")
    print(f"transformers.Trainer:   {hf:8.0f} samples/s   ftmatrix / Trainer = {ours / hf:.2f}")
    once, per_batch = eval_rates()
    print(
        f"evaluation: loop.evaluate {once:8.0f} samples/s, a host copy per batch "
        f"{per_batch:8.0f} samples/s   ratio {once / per_batch:.2f}"
    )


if __name__ == "__main__":
    main()

"""Training-step throughput on a GPU: ftmatrix's settings vs a plain fp32 loop, on
ViT-Base/16 and ResNet-50 at 224 px, the same batch, measured in one run.

ftmatrix's side is the trainer's own code: `compute.autocast("auto")` (bf16 where the GPU
has it natively), `compute.tune_kernels` (cuDNN's algorithm search), channels_last for
the torchvision (convolutional) model as `job.train` sets it on CUDA,
`optim.build_optimizer` (fused AdamW on CUDA), and `loop.train_epoch` itself (batches
copied from pinned memory with non_blocking, losses kept on the device and read every
`log_every` = 10 steps). The plain loop is
the one most scripts write: fp32, contiguous memory, torch's default AdamW, a blocking
copy of each batch, `loss.item()` every step.

Both train on one fixed random batch (ImageNet-normalised noise, random labels), copied
from the host each step, so the data pipeline is not part of it. Models are built
from their configs (transformers `ViTConfig()` defaults, torchvision `resnet50`), with
the same initial weights on both sides, no download. Samples/s counts STEPS steps after
WARMUP steps (allocation, cuDNN algorithm choice, compilation); the best of ROUNDS
interleaved rounds counts.

Where no CUDA device is present the script says so and exits 0.

    .venv/bin/python benchmarks/gpu_speed.py [--batch 64] [--steps 30] [--compile]
    .venv/bin/python benchmarks/gpu_speed.py --cpu-check    (the code path, 2 tiny steps)
"""

from __future__ import annotations

import argparse
import copy
import time

BATCH, STEPS, WARMUP, ROUNDS, NUM_CLASSES, LR = 64, 30, 5, 3, 10, 1e-4


def vit_base():
    from transformers import ViTConfig, ViTForImageClassification

    from ftmatrix.trainers.models import Built

    model = ViTForImageClassification(ViTConfig(num_labels=NUM_CLASSES))  # ViT-B/16, 224 px
    return Built(model, "hf", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), head="classifier")


def resnet50():
    import torchvision

    from ftmatrix.trainers.models import IMAGENET_MEAN, IMAGENET_STD, Built

    model = torchvision.models.resnet50(weights=None, num_classes=NUM_CLASSES)
    return Built(model, "torchvision", IMAGENET_MEAN, IMAGENET_STD, head="fc")


class NoSchedule:
    def after_step(self) -> None:
        pass


def ftmatrix_rate(built, x, y, *, device, steps: int, warmup: int, compile_: bool) -> float:
    """Samples/s of `loop.train_epoch` with the settings `job.train` picks on `device`."""
    import torch

    from ftmatrix.config import TrainConfig
    from ftmatrix.trainers import compute, loop, optim

    spec = TrainConfig.model_validate({"lr": LR, "optimizer": "adamw"})
    autocast = compute.autocast(spec.precision, device)
    compute.tune_kernels(device)  # cuDNN's algorithm search, as job.train turns it on
    model = built.model.to(device)
    if device.type == "cuda" and built.source == "torchvision":
        model = model.to(memory_format=torch.channels_last)  # as job.train does
    forward = torch.compile(model) if compile_ else model
    optimizer = optim.build_optimizer(spec, model, device=device.type)
    pinned = (x.pin_memory(), y.pin_memory()) if device.type == "cuda" else (x, y)

    def epoch(n: int) -> float:
        stats = loop.train_epoch(
            model=forward,
            built=built,
            data=[pinned] * n,
            inputs=loop.Inputs(built, device, "image"),
            loss_fn=lambda out, y, x: torch.nn.functional.cross_entropy(out, y),
            optimizer=optimizer,
            schedule=NoSchedule(),
            accumulation=1,
            grad_clip=None,
            autocast=autocast,
            log_every=spec.log_every,
            on_log=lambda *_: None,
            check_stop=lambda: None,
        )
        return stats.samples / stats.seconds  # its clock stops after the last read-back

    epoch(warmup)
    return epoch(steps)


def plain_rate(built, x, y, *, device, steps: int, warmup: int) -> float:
    """Samples/s of a plain fp32 loop: what a script without these settings does."""
    import torch

    from ftmatrix.trainers.models import logits

    torch.backends.cudnn.benchmark = False  # torch's default (the ftmatrix side turns it on)
    model = built.model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()

    def run(n: int) -> float:
        seen, running = 0, 0.0
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            xb, yb = x.to(device), y.to(device)
            loss = torch.nn.functional.cross_entropy(logits(built, model, xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item()  # the usual running loss: a host sync every step
            seen += len(yb)
        return seen / (time.perf_counter() - start)

    run(warmup)
    return run(steps)


def per_batch_evaluate(*, model, built, data, inputs, loss_fn, autocast):
    """`loop.evaluate` as it was before: predictions and labels copied to the host after
    every batch (each copy waits for that batch on a GPU)."""
    import torch

    from ftmatrix.trainers.models import logits

    with torch.inference_mode():
        model.eval()
        device = inputs.device
        total = torch.zeros((), device=device)
        probs, labels = [], []
        for x, y in data:
            x, y = inputs(x), y.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                out = logits(built, model, x)
                loss = loss_fn(out, y, None)
            total += loss.float() * len(y)
            probs.append(out.float().softmax(dim=-1).cpu())
            labels.append(y.cpu())
        n = sum(len(y) for y in labels)
        return total.item() / n, torch.cat(probs).numpy(), torch.cat(labels).numpy()


def evaluate_rates(built, x, y, *, device, steps: int, warmup: int) -> dict[str, float]:
    """Samples/s of evaluation: `loop.evaluate` (one host copy at the end) vs the
    per-batch copy it replaced, with the autocast `job.train` picks on `device`."""
    import torch

    from ftmatrix.trainers import compute, loop

    autocast = compute.autocast("auto", device)
    model = built.model.to(device)
    batches = [(x.pin_memory(), y.pin_memory()) if device.type == "cuda" else (x, y)]
    inputs = loop.Inputs(built, device, "image")
    rates = {}
    for side, run in (("copied once", loop.evaluate), ("copied per batch", per_batch_evaluate)):
        for n in (warmup, steps):
            start = time.perf_counter()
            run(
                model=model,
                built=built,
                data=batches * n,
                inputs=inputs,
                loss_fn=lambda out, y, x: torch.nn.functional.cross_entropy(out, y),
                autocast=autocast,
            )  # returns numpy arrays: the device is done
            seconds = time.perf_counter() - start
        rates[side] = steps * len(y) / seconds
    return rates


def augment_rates(device, *, n: int = 2048, batch: int = 64) -> dict[str, float]:
    """Images/s of training-time augmentation (random resized crop 256 -> 224, flip,
    colour jitter) from uint8 images in memory to normalised batches on the device:
    ftmatrix's `augment.BatchAugment` (each step one batched operation, on the device)
    vs torchvision v2 per image, in DataLoader workers on the CPU (the usual script)
    and on the device in the training process (ftmatrix's way before BatchAugment)."""
    import os

    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    from ftmatrix.config import AugmentConfig
    from ftmatrix.trainers import loop
    from ftmatrix.trainers.augment import BatchAugment
    from ftmatrix.trainers.data import Split

    built = resnet50()
    spec = AugmentConfig(enabled=True, color_jitter=0.2)
    per_image = v2.Compose(
        [
            v2.RandomResizedCrop(224, scale=spec.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(spec.horizontal_flip),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    generator = torch.Generator().manual_seed(0)
    split = Split(
        x=torch.randint(0, 256, (n, 3, 256, 256), dtype=torch.uint8, generator=generator),
        y=torch.zeros(n, dtype=torch.long),
    )
    workers = max(2, min(8, (os.cpu_count() or 1) - 1))

    class PerImage(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return per_image(split.x[i]), split.y[i]

    def timed(batches, prepare) -> float:
        for x, _y in batches:  # warm-up: workers started, kernels loaded
            prepare(x)
            break
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for x, _y in batches:
            prepare(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - start)

    sliced = loop.loader(split, kind="image", batch_size=batch, shuffle_seed=0)
    batched = loop.Inputs(built, device, "image", transform=BatchAugment(spec, 224))
    mean = torch.tensor(built.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(built.std, device=device).view(1, -1, 1, 1)

    def on_device_per_image(x):
        x = x.to(device, non_blocking=True)
        return (torch.stack([per_image(image) for image in x]) - mean) / std

    cpu = DataLoader(
        PerImage(),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=True,
    )
    return {
        "ftmatrix, batched on the device": timed(sliced, batched),
        "v2 per image on the device": timed(sliced, on_device_per_image),
        f"v2 per image, {workers} CPU workers": timed(
            cpu, lambda x: (x.to(device, non_blocking=True) - mean) / std
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--compile", action="store_true", help="also time train.compile: true")
    parser.add_argument(
        "--cpu-check", action="store_true", help="run the code path on the CPU, 2 tiny steps"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu_check:
        print(
            f"gpu_speed: skipped: no CUDA device on this machine (torch {torch.__version__}); "
            "its ratios need a GPU"
        )
        return
    device = torch.device("cuda" if not args.cpu_check else "cpu")
    batch, steps, rounds = (2, 2, 1) if args.cpu_check else (args.batch, args.steps, ROUNDS)
    warmup = 1 if args.cpu_check else WARMUP
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (check only)"
    print(f"{name}, torch {torch.__version__}, batch {batch}, {steps} steps, best of {rounds}")
    for label, make in (("ViT-Base/16", vit_base), ("ResNet-50", resnet50)):
        torch.manual_seed(0)
        built = make()
        start = copy.deepcopy(built.model.state_dict())
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, 224, 224, generator=generator)
        y = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
        sides = {"plain fp32 loop": [], "ftmatrix": []}
        if args.compile:
            sides["ftmatrix + compile"] = []
        for _ in range(rounds):
            for side, rates in sides.items():
                built.model.load_state_dict(start)  # the same weights for every side
                built.model.to(memory_format=torch.contiguous_format)
                if side == "plain fp32 loop":
                    rates.append(plain_rate(built, x, y, device=device, steps=steps, warmup=warmup))
                else:
                    rate = ftmatrix_rate(
                        built,
                        x,
                        y,
                        device=device,
                        steps=steps,
                        warmup=warmup,
                        compile_=side.endswith("compile"),
                    )
                    rates.append(rate)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        plain = max(sides["plain fp32 loop"])
        print(f"{label}:")
        for side, rates in sides.items():
            best = max(rates)
            print(f"  {side:20s} {best:9.1f} samples/s   {best / plain:5.2f}x the plain loop")
        evaluated = [
            evaluate_rates(built, x, y, device=device, steps=steps, warmup=warmup)
            for _ in range(rounds)
        ]
        per_batch = max(r["copied per batch"] for r in evaluated)
        for side in evaluated[0]:
            best = max(r[side] for r in evaluated)
            print(f"  evaluation, {side:16s} {best:9.1f} samples/s   {best / per_batch:5.2f}x")
        del built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rates = augment_rates(device, n=128 if args.cpu_check else 2048)
    base = rates[next(reversed(rates))]
    print("Augmentation (crop, flip, colour jitter) to normalised batches on the device:")
    for side, value in rates.items():
        print(f"  {side:36s} {value:9.1f} images/s   {value / base:5.2f}x the CPU workers")


if __name__ == "__main__":
    main()

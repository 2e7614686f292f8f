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

Model FLOPs utilisation (MFU) = achieved FLOP/s / the GPU's dense bf16 peak (PEAK_TFLOPS
by device name, or --peak-tflops). For ViT and ResNet the FLOPs of one training sample
are three times the forward FLOPs of one batch counted by
`torch.utils.flop_counter.FlopCounterMode`, divided by the batch.

The SFT row: a Llama-style model of about 0.5B parameters (LLAMA_05B, built from its
config) at sequence length 1024, bf16 autocast, full fine-tuning and LoRA (r 16 on
q_proj/v_proj): tokens/s and MFU of the SFT trainer's own epoch (`sft_job._epoch`)
against `transformers.Trainer` (bf16, fused AdamW) on the same model, weights and
token rows, measured in the same run. Training FLOPs per token: 2N forward, 2N for the
input gradients, 2 x the trainable matmul parameters for the weight gradients (all N
in full fine-tuning: the usual 6N; almost none under LoRA), plus attention,
12 x layers x sequence x width (PaLM's appendix B); N counts the weights that take part
in matrix products (all but the input embedding).

Where no CUDA device is present the script says so and exits 0.

    .venv/bin/python benchmarks/gpu_speed.py [--batch 64] [--steps 30] [--compile]
        [--sft-batch 8] [--sft-steps 20] [--peak-tflops 989] [--only sft|vision]
    .venv/bin/python benchmarks/gpu_speed.py --cpu-check    (the code path, 2 tiny steps)
"""

from __future__ import annotations

import argparse
import copy
import time

BATCH, STEPS, WARMUP, ROUNDS, NUM_CLASSES, LR = 64, 30, 5, 3, 10, 1e-4
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a part of the device's name
PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "GH200": 989.0,
               "A100": 312.0, "L40S": 362.0, "L4": 121.0}  # fmt: skip
# A Llama-style model of 0.47B parameters (24 layers of width 1024, 32k vocabulary)
LLAMA_05B = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
             "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 32000,
             "max_position_embeddings": 2048}  # fmt: skip
LLAMA_CHECK = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 256,
               "max_position_embeddings": 64}  # fmt: skip
SFT_SEQ, SFT_BATCH, SFT_STEPS, SFT_WARMUP, SFT_LR = 1024, 8, 20, 3, 1e-5


def peak_flops(name: str, override: float | None) -> float | None:
    """The device's dense bf16 peak in FLOP/s: --peak-tflops, else PEAK_TFLOPS."""
    if override:
        return override * 1e12
    return next((t * 1e12 for part, t in PEAK_TFLOPS.items() if part in name), None)


def mfu(flops_per_second: float, peak: float | None) -> str:
    return f"MFU {100 * flops_per_second / peak:5.1f} %" if peak else "MFU n/a (--peak-tflops)"


def forward_flops(model, x) -> int:
    """FLOPs of one forward pass of `model` on the batch `x` (torch's own counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x) if not hasattr(model, "config") else model(pixel_values=x)
    return counter.get_total_flops()


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


# --------------------------------------------------------------------- the SFT row


def sft_cfg(config: dict, *, lora: bool, batch: int, seq: int, device):
    """The causal-lm JobConfig the SFT trainer reads (its data are the rows given)."""
    from ftmatrix.config import JobConfig

    return JobConfig.model_validate(
        {
            "task": "causal-lm",
            "data": {"builtin": "reverse-digits", "sft": {"answer_regex": r"(\d+)"}},
            "model": {"name": "llama-0.5b", "source": "hf", "pretrained": False,
                      "max_length": seq, "config": {"model_type": "llama", **config}},
            "lora": {"enabled": lora, "r": 16, "alpha": 32,
                     "target_modules": ["q_proj", "v_proj"]},
            "train": {"batch_size": batch, "lr": SFT_LR, "optimizer": "adamw", "epochs": 1,
                      "device": device.type, "precision": "bf16", "log_every": 10},
        }
    )  # fmt: skip


def sft_model(cfg):
    """The Llama of `cfg` (random weights) with its PEFT method, and its FLOPs per
    training token at the configured sequence length."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftmatrix.trainers import peft_methods

    config = dict(cfg.model.config)
    config.pop("model_type")
    c = LlamaConfig(**config, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(c)
    if cfg.lora.enabled:
        model = peft_methods.wrap(model, cfg.lora, head=None, task=cfg.task)
    embedding = model.get_input_embeddings().weight
    matmul = sum(p.numel() for p in model.parameters() if p is not embedding)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad and p is not embedding)
    attention = 12 * c.num_hidden_layers * cfg.model.max_length * c.hidden_size
    return model, 4 * matmul + 2 * trained + attention


def sft_rows(cfg, n: int):
    """`n` rows of random tokens, the loss on every one (the trainer's Example)."""
    import torch

    from ftmatrix.trainers.causal_lm import Example

    vocab, seq = cfg.model.config["vocab_size"], cfg.model.max_length
    ids = torch.randint(3, vocab, (n, seq), generator=torch.Generator().manual_seed(0))
    return [Example(row.tolist(), row.tolist()) for row in ids]


def ftmatrix_sft_rate(model, cfg, *, device, steps: int, warmup: int) -> float:
    """Tokens/s of the SFT trainer's own epoch (`sft_job._epoch`: bf16 autocast, the
    loss read every step for its NaN check, gradient accumulation 1)."""
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    from ftmatrix.trainers import compute, optim, sft_job

    model.to(device)
    optimizer = optim.build_optimizer(cfg.train, model, device=device.type)
    quiet = SimpleNamespace(emit=lambda *a, **k: None, say=lambda *a: None, check=lambda: None)
    rows = sft_rows(cfg, cfg.train.batch_size * (warmup + steps))
    p = sft_job.Parts(
        cfg=cfg, job_dir=Path(tempfile.mkdtemp()), device=device,
        autocast=compute.autocast(cfg.train.precision, device), progress=quiet, stop=quiet,
        tok=SimpleNamespace(pad_id=0), rows=rows[: cfg.train.batch_size * warmup], val=[],
        model=model, optimizer=optimizer,
        schedule=optim.Schedule(cfg.train, optimizer, n_train=len(rows)),
    )  # fmt: skip
    sft_job._epoch(p, 1, poison=False)  # allocation, kernel choice
    p.rows = rows[cfg.train.batch_size * warmup :]
    return sft_job._epoch(p, 1, poison=False).tokens_per_second or 0.0


def trainer_sft_rate(model, cfg, *, device, steps: int, warmup: int) -> float:
    """Tokens/s of `transformers.Trainer` on the same model and rows: bf16, fused AdamW
    on CUDA, no logging or saving; timed between step ends after `warmup` steps."""
    import tempfile

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if device.type == "cuda":
                torch.cuda.synchronize()
            ends.append(time.perf_counter())

    batch, seq = cfg.train.batch_size, cfg.model.max_length
    rows = sft_rows(cfg, batch * (warmup + steps))
    data = [{"input_ids": r.input_ids, "attention_mask": [1] * seq, "labels": r.labels}
            for r in rows]  # fmt: skip
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch,
        max_steps=warmup + steps, learning_rate=SFT_LR, bf16=device.type == "cuda",
        use_cpu=device.type == "cpu", report_to=[], save_strategy="no",
        logging_strategy="no", dataloader_num_workers=0, lr_scheduler_type="constant",
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        disable_tqdm=True,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=data, callbacks=[Clock()]).train()
    return steps * batch * seq / (ends[-1] - ends[warmup - 1])


def sft_report(*, device, sizes: dict, seq: int, batch: int, steps: int, warmup: int, peak):
    """The SFT row: full fine-tuning and LoRA, ftmatrix's epoch vs transformers.Trainer."""
    import torch

    for lora in (False, True):
        cfg = sft_cfg(sizes, lora=lora, batch=batch, seq=seq, device=device)
        torch.manual_seed(0)
        model, flops = sft_model(cfg)
        start = copy.deepcopy(model.state_dict())
        total = sum(p.numel() for p in model.parameters())
        label = "LoRA r16" if lora else "full fine-tuning"
        print(f"SFT, Llama {total / 1e9:.2f}B, seq {seq}, batch {batch}, {label}:")
        rates = {}
        for side, run in (("transformers.Trainer", trainer_sft_rate),
                          ("ftmatrix", ftmatrix_sft_rate)):  # fmt: skip
            model.load_state_dict(start)  # the same weights for both sides
            rates[side] = run(model, cfg, device=device, steps=steps, warmup=warmup)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        base = rates["transformers.Trainer"]
        for side, rate in rates.items():
            print(f"  {side:20s} {rate:9.0f} tokens/s   {mfu(rate * flops, peak)}"
                  f"   {rate / base:5.2f}x transformers.Trainer")  # fmt: skip
        del model, start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--compile", action="store_true", help="also time train.compile: true")
    parser.add_argument(
        "--cpu-check", action="store_true", help="run the code path on the CPU, 2 tiny steps"
    )
    parser.add_argument("--sft-batch", type=int, default=SFT_BATCH, help="rows of 1024 tokens")
    parser.add_argument("--sft-steps", type=int, default=SFT_STEPS)
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak for MFU"
    )
    parser.add_argument("--only", choices=["sft", "vision"], default=None, help="one part only")
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
    peak = peak_flops(name, args.peak_tflops)
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown (--peak-tflops)"
    print(f"{name}, torch {torch.__version__}, dense bf16 peak {peak_text}")
    if args.only != "vision":
        check = args.cpu_check
        sft_report(
            device=device, sizes=LLAMA_CHECK if check else LLAMA_05B,
            seq=32 if check else SFT_SEQ, batch=2 if check else args.sft_batch,
            steps=2 if check else args.sft_steps, warmup=1 if check else SFT_WARMUP, peak=peak,
        )  # fmt: skip
    if args.only == "sft":
        return
    print(f"Vision: batch {batch}, {steps} steps, best of {rounds}")
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
        per_sample = 3 * forward_flops(built.model.to(device), x.to(device)) / batch
        print(f"{label}: {per_sample / 1e9:.1f} GFLOPs per training sample")
        for side, rates in sides.items():
            best = max(rates)
            print(
                f"  {side:20s} {best:9.1f} samples/s   {mfu(best * per_sample, peak)}"
                f"   {best / plain:5.2f}x the plain loop"
            )
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

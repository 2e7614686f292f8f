"""End-to-end check of ftmatrix's CUDA paths, for a machine with a GPU.

CI has no GPU, so the test suite proves the CPU paths only. This script runs a real
matrix on the GPU through the CLI and checks what only a GPU can show:

- every job ran on `cuda` with bf16 autocast where the card has it natively (`precision`
  in result.json), on the GPU the pool pinned (`gpus=` in starts.log);
- a torchvision ResNet (channels_last, fused AdamW) with augmentation done on the device,
  the same with `train.compile: true`, a tiny ViT with LoRA, a tiny BERT on texts: each
  reaches a test accuracy well above chance;
- two jobs share the GPU (`--gpus all --jobs-per-gpu 2`): their progress.jsonl
  start/end times overlap;
- a job killed by `FTMATRIX_FAULT=exit@2` resumes from its epoch-1 checkpoint on the GPU
  (CUDA RNG state and optimizer state restored) with `--retry-failed`, and finishes;
- jobs forked by the warm server (`ftmatrix server start`, which never touches CUDA)
  train on the GPU like the others.

Data are generated here (coloured-square PNGs, a two-topic CSV); nothing is downloaded.

    python scripts/gpu-check.py [--workdir DIR]     exit 0 when every check holds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MATRIX = """
name: gpucheck
base:
  data:
    path: images
    augment: {enabled: true, horizontal_flip: 0.5, color_jitter: 0.2}
  model: {name: resnet18, pretrained: false, image_size: 64}
  train: {epochs: 3, batch_size: 64, lr: 3.0e-3, optimizer: adamw, log_every: 5}
grid:
  model.name: [resnet18]
  train.compile: [false, true]
include:
  - model.name: google/vit-base-patch16-224
    model.config: {hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4,
                   intermediate_size: 128, patch_size: 8}
    lora.enabled: true
    lora.r: 8
    lora.target_modules: [query, value]
    train.lr: 1.0e-2
  - task: text-classification
    data.path: texts.csv
    model.name: google-bert/bert-base-uncased
    model.max_length: 16
    model.config: {hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2,
                   intermediate_size: 64}
    train.lr: 1.0e-3
    train.epochs: 4
"""

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "grey": (128,) * 3}


def write_data(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 150), ("val", 30), ("test", 50)):
        for name, colour in COLOURS.items():
            out = folder / "images" / split / name
            out.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (80, 80, 3))
                y, x = rng.integers(0, 40, 2)
                pixels[y : y + 40, x : x + 40] = colour
                Image.fromarray(pixels.astype("uint8")).save(out / f"{i}.png")
    sport = ["the team won the match", "a great goal in the final", "the striker scored"]
    food = ["bake the bread slowly", "add salt to the soup", "the cake needs sugar"]
    rows = ["text,label"]
    for i in range(200):
        rows += [f"{sport[i % 3]} {i},sport", f"{food[i % 3]} {i},food"]
    (folder / "texts.csv").write_text("\n".join(rows) + "\n")


def ftmatrix(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ftmatrix", *args]
    print("$ ftmatrix", " ".join(args), flush=True)
    done = subprocess.run(command, env={**os.environ, **(env or {})}, text=True)
    print(f"  exit {done.returncode}", flush=True)
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--on-cpu", action="store_true", help="run the flow here anyway (the cuda checks fail)"
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.on_cpu:
        print("gpu-check: skipped: no CUDA device here")
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ftmatrix-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    write_data(work)
    (work / "gpucheck.yaml").write_text(MATRIX)
    os.environ["HF_HUB_OFFLINE"] = "1"
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported(including_emulation=False)
    name = torch.cuda.get_device_name(0) if gpu else "no GPU"
    print(f"{name}, torch {torch.__version__}, native bf16 {bf16}", flush=True)

    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        if not ok:
            failures.append(what)

    matrix = str(work / "gpucheck.yaml")
    runs_dir = ["--runs-dir", str(work / "runs")]
    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "ftmatrix", "plan", matrix, "--json", *runs_dir],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    names = {}
    for job in plan["jobs"]:
        s = job["settings"]
        names[job["id"]] = (
            "bert"
            if s["task"] == "text-classification"
            else "vit-lora"
            if s["lora.enabled"] == "true"
            else "resnet-compiled"
            if s["train.compile"] == "true"
            else "resnet"
        )
    bert = next(i for i, n in names.items() if n == "bert")
    pool = ["--gpus", "all", "--jobs-per-gpu", "2"] if gpu else ["--workers", "2"]
    t0 = time.time()
    first = ftmatrix(
        "run",
        matrix,
        *runs_dir,
        *pool,
        env={"FTMATRIX_FAULT": f"exit@2:{bert}"},
    )
    check(first.returncode == 1, "the run with one planted failure exits 1")
    retry = ftmatrix("run", matrix, *runs_dir, "--retry-failed", *pool)
    check(retry.returncode == 0, "--retry-failed finishes the matrix")
    print(f"  matrix wall time {time.time() - t0:.1f} s")

    runs = work / "runs" / "gpucheck"
    spans = {}
    for job_id, name in names.items():
        job = runs / job_id
        result = json.loads((job / "result.json").read_text())
        acc = (result.get("test") or {}).get("accuracy", 0.0)
        chance = 0.5 if name == "bert" else 0.25
        starts = (job / "starts.log").read_text().splitlines()
        print(f"  {name}: {result['status']}, test accuracy {acc:.3f}, device {result['device']}")
        print(f"    precision {result.get('precision')}, timing {result.get('timing')}")
        print(f"    starts.log: {starts}")
        check(result["status"] == "done", f"{name} done")
        check(str(result["device"]).startswith("cuda"), f"{name} ran on cuda")
        want = "bf16" if bf16 else "fp32"
        check(result.get("precision") == want, f"{name} trained in {want}")
        check(acc > chance + 0.25, f"{name} test accuracy {acc:.3f} > chance {chance} + 0.25")
        check(all("gpus=0" in line for line in starts), f"{name} pinned to GPU 0")
        events = [json.loads(line) for line in (job / "progress.jsonl").read_text().splitlines()]
        times = [e["time"] for e in events if e.get("event") in ("start", "end")]
        spans[name] = (min(times), max(times))
        if name == "bert":
            check(
                len(starts) == 2 and "start epoch=2" in starts[1],
                "bert resumed at epoch 2 after its planted exit",
            )
            check(result.get("resumed_from_epoch") == 1, "bert resumed_from_epoch == 1")
    overlap = any(
        a != b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
        for a in spans
        for b in spans
    )
    check(overlap, "two jobs ran on the GPU at the same time (--jobs-per-gpu 2)")
    os.environ["FTMATRIX_SERVER_DIR"] = str(work / "servers")
    started = ftmatrix("server", "start", "--idle", "5")
    check(started.returncode == 0, "the warm server started")
    warm_dir = ["--runs-dir", str(work / "runs-warm")]
    served = ftmatrix(
        "run", matrix, *warm_dir, "--launcher", "server", "--only", "compile=false", *pool
    )
    check(served.returncode == 0, "a run forked by the warm server finishes")
    for job_id, name in names.items():
        if name == "resnet-compiled":
            continue
        job = work / "runs-warm" / "gpucheck" / job_id
        result = json.loads((job / "result.json").read_text())
        first = (job / "log.txt").read_text().splitlines()[0]
        acc = (result.get("test") or {}).get("accuracy", 0.0)
        print(f"  warm {name}: {first!r}, {result['device']}, accuracy {acc:.3f}")
        check(
            "(warm server)" in first and str(result["device"]).startswith("cuda" if gpu else "cpu"),
            f"{name} forked by the warm server, trained on {'cuda' if gpu else 'cpu'}",
        )
    ftmatrix("server", "stop")
    report = ftmatrix("report", matrix, *runs_dir)
    check(report.returncode == 0 and (runs / "report.md").exists(), "report written")
    print("gpu-check:", "all checks hold" if not failures else f"{len(failures)} FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

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
  train on the GPU like the others;
- instruction fine-tuning: matrices/llm-sft.yaml in bf16 (full fine-tuning and LoRA r16
  of a tiny Llama) and QLoRA (the same LoRA on the base loaded in 4-bit NF4 through
  bitsandbytes): every job done on the GPU, its training loss falling, perplexity below
  12 (uniform guessing: about 18), full fine-tuning's exact match at least 0.5, QLoRA
  training exactly LoRA's parameters; the figures printed.

The tiny ViT and BERT are those of tests/tiny.py. Data are generated here
(coloured-square PNGs, a two-topic CSV, digit strings); nothing is downloaded.

    python scripts/gpu-check.py [--workdir DIR]     exit 0 when every check holds
    python scripts/gpu-check.py --dry-run           data and matrices written and planned
                                                    (no torch, no GPU)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/tiny.py: the shared tiny models
from tests.tiny import TINY_BERT, TINY_VIT  # noqa: E402


def vision_matrix() -> dict:
    """ResNet-18 (with and without train.compile), the tiny ViT with LoRA, the tiny BERT."""
    return {
        "name": "gpucheck",
        "base": {
            "data": {
                "path": "images",
                "augment": {"enabled": True, "horizontal_flip": 0.5, "color_jitter": 0.2},
            },
            "model": {"name": "resnet18", "pretrained": False, "image_size": 64},
            "train": {
                "epochs": 3,
                "batch_size": 64,
                "lr": 3.0e-3,
                "optimizer": "adamw",
                "log_every": 5,
            },
        },
        "grid": {"model.name": ["resnet18"], "train.compile": [False, True]},
        "include": [
            {
                "model.name": TINY_VIT["name"],
                "model.image_size": TINY_VIT["image_size"],
                "model.config": TINY_VIT["config"],
                "lora.enabled": True,
                "lora.r": 8,
                "lora.target_modules": ["query", "value"],
                "train.lr": 1.0e-2,
            },
            {
                "task": "text-classification",
                "data.path": "texts.csv",
                "model.name": TINY_BERT["name"],
                "model.max_length": TINY_BERT["max_length"],
                "model.config": TINY_BERT["config"],
                "train.lr": 1.0e-3,
                "train.epochs": 4,
            },
        ],
    }


def sft_matrix(*, quantized: bool) -> dict:
    """matrices/llm-sft.yaml (full fine-tuning, LoRA r16) in bf16, with QLoRA: the same
    LoRA on the base loaded in 4 bits (NF4) through bitsandbytes."""
    import yaml

    matrix = yaml.safe_load((ROOT / "matrices" / "llm-sft.yaml").read_text())
    matrix["name"] = "gpucheck-sft"
    matrix["base"]["train"]["precision"] = "bf16"
    if quantized:
        matrix["grid"]["lora"]["q4"] = {**matrix["grid"]["lora"]["r16"], "quantize": "4bit"}
    return matrix


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
    parser.add_argument(
        "--dry-run", action="store_true",
        help="write the data and matrices and plan them (no torch, no GPU), then stop",
    )  # fmt: skip
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ftmatrix-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = "1"
    write_data(work)
    quantized = importlib.util.find_spec("bitsandbytes") is not None
    for name, matrix in (
        ("gpucheck", vision_matrix()),
        ("gpucheck-sft", sft_matrix(quantized=True)),
    ):
        (work / f"{name}.yaml").write_text(json.dumps(matrix, indent=1))  # JSON is YAML
    if args.dry_run:
        return dry_run(work)
    import torch

    if not torch.cuda.is_available() and not args.on_cpu:
        print("gpu-check: skipped: no CUDA device here")
        return 0
    if not quantized:
        sft = sft_matrix(quantized=False)
        (work / "gpucheck-sft.yaml").write_text(json.dumps(sft, indent=1))
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
    check(
        quantized, "bitsandbytes is installed for the QLoRA job (pip install 'bitsandbytes>=0.48')"
    )
    sft_checks(work, check=check, gpu=gpu)
    print("gpu-check:", "all checks hold" if not failures else f"{len(failures)} FAILED")
    return 1 if failures else 0


def plan(matrix: Path, runs: Path) -> dict:
    """`ftmatrix plan --json` of a matrix file."""
    done = subprocess.run(
        [sys.executable, "-m", "ftmatrix", "plan", str(matrix), "--json", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"gpu-check: ftmatrix plan {matrix.name} failed:\n{done.stdout}{done.stderr}"
        )
    return json.loads(done.stdout)


def dry_run(work: Path) -> int:
    """Plan both matrices as they would run (pre-flight aside: it needs the GPU)."""
    for name, expected in (("gpucheck", 4), ("gpucheck-sft", 3)):
        jobs = plan(work / f"{name}.yaml", work / "runs")["jobs"]
        labels = [job["label"] for job in jobs]
        print(f"{name}: {len(jobs)} jobs: {labels}")
        if len(jobs) != expected:
            print(f"gpu-check: dry run: {name} planned {len(jobs)} jobs, not {expected}")
            return 1
    print(f"gpu-check: dry run: data and matrices in {work}, both planned")
    return 0


def sft_checks(work: Path, *, check, gpu: bool) -> None:
    """matrices/llm-sft.yaml in bf16 and a QLoRA job, end to end on the GPU."""
    matrix, runs = work / "gpucheck-sft.yaml", work / "runs"
    run = ftmatrix("run", str(matrix), "--runs-dir", str(runs))
    check(run.returncode == 0, "the LLM SFT matrix (full, LoRA, QLoRA 4-bit) finishes")
    results = {}
    for job in plan(matrix, runs)["jobs"]:
        folder = runs / "gpucheck-sft" / job["id"]
        if not (folder / "result.json").exists():
            check(False, f"sft {job['label']} wrote result.json")
            continue
        r = results[job["label"]] = json.loads((folder / "result.json").read_text())
        test = r.get("test") or {}
        epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        params, memory = r.get("params") or {}, (r.get("peak_memory_bytes") or 0) / 2**20
        print(
            f"  sft {job['label']}: {r['status']}, exact match {test.get('exact_match')}, "
            f"perplexity {test.get('perplexity')}, trainable {params.get('trainable')}, "
            f"{r.get('tokens_per_second') or 0:.0f} tokens/s, peak memory {memory:.0f} MiB, "
            f"adapter {r.get('adapter_bytes')} B, {r.get('device')}, {r.get('precision')}, "
            f"train losses {[round(e['train_loss'], 3) for e in epochs]}"
        )
        check(r["status"] == "done", f"sft {job['label']} done")
        check(
            str(r["device"]).startswith("cuda" if gpu else "cpu"), f"sft {job['label']} on the GPU"
        )
        check(r.get("precision") == "bf16", f"sft {job['label']} in bf16")
        check(epochs[-1]["train_loss"] < epochs[0]["train_loss"], f"sft {job['label']} loss falls")
        # uniform guessing over the ~18 tokens of the character tokenizer: perplexity ~18
        check((test.get("perplexity") or 99) < 12, f"sft {job['label']} perplexity < 12")
    labels = {label.split("=")[-1]: r for label, r in results.items()}
    full = (labels.get("full", {}).get("test") or {}).get("exact_match") or 0.0
    check(full >= 0.5, f"sft full fine-tuning exact match {full} >= 0.5 (chance 1e-4)")
    if "q4" in labels and "r16" in labels:
        same = labels["q4"]["params"]["trainable"] == labels["r16"]["params"]["trainable"]
        check(same, "QLoRA trains exactly LoRA's parameters (the same adapter)")


if __name__ == "__main__":
    sys.exit(main())

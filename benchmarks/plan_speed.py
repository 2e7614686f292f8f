"""Planning speed: expand a 100,000-point matrix.

Baseline (measured in the same run): the naive planner — build each job's dict and
validate it with `JobConfig.model_validate`, then hash it — timed on a sample of points
and scaled to the full matrix. ftmatrix validates each distinct config section once.

    .venv/bin/python benchmarks/plan_speed.py
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path

MATRIX = """
name: plan-speed
base:
  data: {builtin: digits}
  model: {name: resnet18, pretrained: false}
grid:
  train.lr: [0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001, 0.000005]
  train.batch_size: [8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
  train.epochs: [1, 2, 3, 4, 5, 10, 20, 40, 80, 100]
  train.loss: [cross_entropy, focal, mse, l1, smooth_l1]
  lora.enabled: [false, true]
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
"""
# the same size without seeds: a sixth axis instead
NO_SEEDS = MATRIX.replace("seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "") + (
    "  train.topk: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
)
POINTS = 10 * 10 * 10 * 5 * 2 * 10
SAMPLE = 2_000


def naive(n: int) -> float:
    from ftmatrix.config import JobConfig
    from ftmatrix.identity import job_id

    lrs = [0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001, 0.000005]
    bss = [8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    grid = itertools.product(lrs, bss, range(1, 11), ["cross_entropy", "focal"], [0, 1])
    start = time.perf_counter()
    for lr, bs, ep, loss, seed in itertools.islice(grid, n):
        cfg = JobConfig.model_validate(
            {
                "data": {"builtin": "digits"},
                "model": {"name": "resnet18", "pretrained": False},
                "train": {"lr": lr, "batch_size": bs, "epochs": ep, "loss": loss, "seed": seed},
            }
        )
        job_id(cfg)
    return time.perf_counter() - start


def main() -> None:
    from ftmatrix.matrix import plan

    baseline = naive(SAMPLE) * POINTS / SAMPLE
    print(f"naive per-job validation:        {baseline:.2f} s (scaled from {SAMPLE:,} jobs)")
    for name, text in (("5 axes x 10 seeds", MATRIX), ("6 axes, no seeds", NO_SEEDS)):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.yaml"
            path.write_text(text)
            start = time.perf_counter()
            p = plan.load_plan(path, max_jobs=POINTS)
            ours = time.perf_counter() - start
        assert p.points == POINTS == len(p.jobs), p.points
        print(f"ftmatrix, {name}:  {ours:.2f} s for {POINTS:,} jobs")
        print(f"  ratio naive / ftmatrix:        {baseline / ours:.1f}x")
        if ours >= 2.0:
            print(f"WARNING: planning {POINTS:,} points took 2 s or more", file=sys.stderr)


if __name__ == "__main__":
    main()

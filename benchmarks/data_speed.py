"""Data loading: ftmatrix's decoded-once cache vs torchvision's ImageFolder, which
decodes every JPEG with PIL and resizes it again in every epoch.

2,000 generated 256 px JPEGs in 4 class folders, resized to 128 px, batches of 64.
Each epoch only touches its batches (a mean over each), so the time is the data's.

- baseline: `ImageFolder` + `Resize(128)` + `PILToTensor`, a DataLoader with 2
  workers (this machine's cores), persistent across epochs: the strongest form of it.
- ftmatrix, as a job runs it: `data.load` with an empty cache (epoch 1 decodes and
  writes the cache), then the job's own loader on the same splits (epochs 2 on), and
  a later job: `data.load` finding the cache (checked by its checksum) + one epoch.
  The later job's `data.load` alone is shown too: it is the cache check.
- also ftmatrix's loader forced to 2 workers, to show why it defaults to none.

ROUNDS rounds, interleaved; each figure is the best round (the machine is shared).

    .venv/bin/python benchmarks/data_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

N, CLASSES, SOURCE, SIZE, BATCH, EPOCHS, WORKERS = 2000, 4, 256, 128, 64, 4, 2
ROUNDS = 3


def make_images(root: Path) -> None:
    """Photo-like JPEGs (smooth colour fields plus grain), not pure noise, so that
    their size and decoding cost are those of real pictures."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(N):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((SOURCE, SOURCE), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-12, 12, smooth.shape, dtype=np.int16)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def epoch(batches) -> float:
    start = time.perf_counter()
    seen = 0
    for x, _ in batches:
        x.float().mean()  # touch every pixel
        seen += len(x)
    assert seen == N, seen
    return time.perf_counter() - start


def baseline(root: Path) -> dict[str, float]:
    import torch
    from torchvision import datasets, transforms

    folder = datasets.ImageFolder(
        str(root), transform=transforms.Compose([transforms.Resize(SIZE), transforms.PILToTensor()])
    )
    loader = torch.utils.data.DataLoader(
        folder, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True
    )
    times = [epoch(loader) for _ in range(EPOCHS)]
    return {"first": times[0], "later": sum(times[1:]) / len(times[1:])}


def ftmatrix(root: Path, cache_dir: Path) -> dict[str, float]:
    from ftmatrix.config import JobConfig
    from ftmatrix.trainers import data, loop

    cfg = JobConfig.model_validate(
        {
            "task": "image-classification",
            # every image in train: the benchmark measures reading, not splitting
            "data": {"path": str(root), "val_fraction": 0, "test_fraction": 0},
            "model": {"name": "resnet18", "image_size": SIZE},
        }
    )

    def batches(splits, e, workers=None):
        return loop.loader(
            splits.train, kind="image", batch_size=BATCH, shuffle_seed=e, workers=workers
        )

    start = time.perf_counter()
    splits = data.load(cfg, cache_dir=cache_dir)
    load = time.perf_counter() - start
    first = load + epoch(batches(splits, 1))
    later = [epoch(batches(splits, e)) for e in range(2, EPOCHS + 1)]
    start = time.perf_counter()
    again = data.load(cfg, cache_dir=cache_dir)
    check = time.perf_counter() - start
    next_job = check + epoch(batches(again, 1))
    workers = [epoch(batches(again, e, WORKERS)) for e in range(2, EPOCHS + 1)]
    return {
        **checksums(cache_dir),
        "first": first,
        "later": sum(later) / len(later),
        "next_job": next_job,
        "check": check,
        "workers": sum(workers) / len(workers),
    }


def checksums(cache_dir: Path) -> dict[str, float]:
    """Seconds to checksum the entry's images: the cache's xxh3_128 vs sha256 (what
    format 1 used), on the same mapped bytes."""
    import hashlib

    import numpy as np

    from ftmatrix.trainers import cache

    [entry] = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    images = np.load(entry / "images.npy", mmap_mode="r")
    flat = np.ascontiguousarray(images).reshape(-1).view(np.uint8)
    start = time.perf_counter()
    cache.checksum(images)
    xxh3 = time.perf_counter() - start
    start = time.perf_counter()
    hashlib.sha256(flat).hexdigest()
    return {"xxh3": xxh3, "sha256": time.perf_counter() - start, "mib": flat.nbytes / 2**20}


def main() -> None:
    import torch

    from ftmatrix.trainers import cache

    print(f"torch threads: {torch.get_num_threads()}; cache format {cache.FORMAT}")
    base: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        start = time.perf_counter()
        make_images(root)
        size = sum(f.stat().st_size for f in root.rglob("*.jpg")) / N / 1024
        print(
            f"{N} JPEGs of {SOURCE} px ({size:.0f} KiB each) in {time.perf_counter() - start:.1f} s"
        )
        for round_ in range(ROUNDS):
            base.append(baseline(root))
            ours.append(ftmatrix(root, Path(tmp) / f"cache-{round_}"))

    def best(runs: list[dict[str, float]], key: str) -> float:
        return min(r[key] for r in runs)

    rows = [
        ("epoch 1", best(base, "first"), best(ours, "first")),
        ("epochs 2+ (mean)", best(base, "later"), best(ours, "later")),
        ("a later job's epoch 1", best(base, "first"), best(ours, "next_job")),
        (
            f"epochs 2+, ftmatrix with {WORKERS} workers",
            best(base, "later"),
            best(ours, "workers"),
        ),
    ]
    print(f"best of {ROUNDS} rounds")
    print(f"{'':42} {'ImageFolder':>12} {'ftmatrix':>10} {'ratio':>8}")
    for name, b, o in rows:
        print(f"{name:42} {b:11.3f}s {o:9.3f}s {b / o:7.1f}x")
    print(f"a later job's data.load (the cache check): {best(ours, 'check'):.3f} s")
    print(
        f"checksum of the entry ({ours[0]['mib']:.0f} MiB): xxh3_128 {best(ours, 'xxh3'):.3f} s,"
        f" sha256 {best(ours, 'sha256'):.3f} s"
    )
    print("target: epochs 2+ at least 3x (ratio = ImageFolder time / ftmatrix time)")


if __name__ == "__main__":
    main()

"""Report (and status) speed over 10,000 finished jobs.

Baseline (same run, same folders): only reading and parsing every result.json with
json.loads — the least any report has to do. Prints both and the ratio.

    .venv/bin/python benchmarks/report_speed.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "reports"))

JOBS = 10_000


def build(root: Path) -> None:
    from test_report import make_run

    jobs = []
    for i in range(JOBS):
        settings = {
            "train.lr": str([0.1, 0.01, 0.001, 0.0001][i % 4]),
            "train.batch_size": str([16, 32, 64, 128, 256][(i // 4) % 5]),
            "train.seed": str(i // 20),
        }
        jobs.append(
            {"id": f"{i:012x}", "settings": settings, "state": "done", "acc": 0.5 + (i % 97) / 200}
        )
    make_run(root, jobs, ["train.lr", "train.batch_size", "train.seed"])


def main() -> None:
    from ftmatrix.reports.report import write

    tmp = Path(tempfile.mkdtemp())
    try:
        root = tmp / "runs" / "big"
        build(root)
        start = time.perf_counter()
        for folder in root.iterdir():
            if folder.is_dir():
                json.loads((folder / "result.json").read_text())
        baseline = time.perf_counter() - start
        start = time.perf_counter()
        write(root, plots=False)
        tables_only = time.perf_counter() - start
        start = time.perf_counter()
        write(root, plots=True)
        full = time.perf_counter() - start
        from ftmatrix.runner.status import collect

        start = time.perf_counter()
        collect(root)
        status = time.perf_counter() - start
    finally:
        shutil.rmtree(tmp)
    print(f"jobs:                                 {JOBS:,}")
    print(f"baseline, json.loads every result:    {baseline:.2f} s")
    print(
        f"ftmatrix report, tables + CSV:        {tables_only:.2f} s "
        f"({tables_only / baseline:.1f}x the baseline)"
    )
    print(f"ftmatrix report, with plots:          {full:.2f} s ({full / baseline:.1f}x)")
    print(f"ftmatrix status (all rows):           {status:.2f} s ({status / baseline:.1f}x)")


if __name__ == "__main__":
    main()

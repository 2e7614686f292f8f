"""The README's quickstart figures are what `make demo` writes: the same commands, run
here on a fresh run folder, give the same report, cell for cell (peak memory and times
excepted: they are the machine's). Also the console excerpt: the job id and the first
epoch of the first job, and the best job's closing line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
MACHINE_COLUMNS = {"peak memory", "s/epoch", "time (s)"}  # the machine's, not the study's
DEMO = ["matrices/quickstart.yaml"]


def readme_block(fence: str, after: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"```{fence}\n", text.index(after)) + len(fence) + 4
    return text[start : text.index("```\n", start)].rstrip("\n").splitlines()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def study_cells(lines: list[str]) -> list[list[str]]:
    """Each line as cells, with the machine's columns of a comparison table blanked."""
    out, blank = [], set()
    for line in lines:
        if not line.startswith("|"):
            out.append([line])
            blank = set()
            continue
        row = cells(line)
        if MACHINE_COLUMNS & set(row):  # a header row names the columns below it
            blank = {i for i, name in enumerate(row) if name in MACHINE_COLUMNS}
            out.append(row)
            continue
        out.append(["" if i in blank and not set(c) <= set("-:") else c for i, c in enumerate(row)])
    return out


def ftmatrix(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ftmatrix", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.slow
def test_the_readme_quickstart_report_is_what_make_demo_writes(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    assert "OMP_NUM_THREADS=2 $(BIN)/ftmatrix run matrices/quickstart.yaml" in makefile
    assert "ftmatrix report matrices/quickstart.yaml --rows lora.enabled --cols train.lr" in (
        makefile
    )
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    runs = ["--runs-dir", str(tmp_path)]
    log = ftmatrix("run", *DEMO, *runs, env=env, cwd=ROOT)
    ftmatrix(
        "report", *DEMO, *runs, "--rows", "lora.enabled", "--cols", "train.lr", env=env, cwd=ROOT
    )

    report = (tmp_path / "quickstart" / "report.md").read_text().splitlines()
    shown = readme_block("markdown", "The report `make demo` writes")
    first = report.index(shown[0])
    console = readme_block("console", "Nothing needs a GPU or the network.")
    start, epoch, done = console[3], console[4], console[6]
    assert start in log  # the job id and its settings
    if not same_kernels():
        # other CPU kernels round differently: the figures may differ in their last
        # digits, the study may not (who wins, the columns, the parameter counts)
        ours, theirs = study_cells(report[first : first + 8]), study_cells(shown[:8])
        assert ours[2] == theirs[2]  # the header: every column
        assert [r[1:3] + r[10:12] for r in ours[4:]] == [r[1:3] + r[10:12] for r in theirs[4:]]
        return
    assert study_cells(report[first : first + len(shown)]) == study_cells(shown)
    loss_and_val = re.sub(r" \(\d+ samples/s\)$", "", epoch)
    assert loss_and_val in log
    closing = re.sub(r" \([\d.]+ s\)$", "", done)
    assert closing in log


def same_kernels() -> bool:
    """Whether torch runs this CPU's arithmetic with the kernels that made the README's
    figures (the README says which: an AVX-512 machine)."""
    import torch

    return torch.backends.cpu.get_cpu_capability() == "AVX512"

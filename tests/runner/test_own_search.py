"""A script job and a function job under a tuned search with pruning: each reports its
per-epoch val_loss through `from ftmatrix import job`, the median pruner stops the
clearly worse trial through `job.should_stop()`, and the search ends with its budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ftmatrix
from ftmatrix.result import read_metrics, read_result

pytestmark = pytest.mark.slow

# val_loss = quality / epoch: the trial with quality 9 is clearly worse than the first,
# which has 5. The grid's order for seed 0 is 5, 9, 1.1, 1 (the same seed, the same order).
FUNCTION = """
import time
from ftmatrix import job

def fit(cfg):
    q = cfg["params"]["quality"]
    for e in range(1, cfg["train"]["epochs"] + 1):
        time.sleep(0.3)
        job.log_epoch(e, val_loss=q / e)
        if job.should_stop():  # pruned: the runner records it
            return None
    return {"loss": q / cfg["train"]["epochs"]}
"""

SCRIPT = """
import sys, time
from ftmatrix import job

cfg = job.config()
q = float(sys.argv[1])
for e in range(1, cfg["train"]["epochs"] + 1):
    time.sleep(0.3)
    job.log_epoch(e, val_loss=q / e)
    if job.should_stop():
        sys.exit(130)
job.log_test(loss=q / cfg["train"]["epochs"])
"""

SEARCH = """search:
  strategy: grid
  trials: 4            # median pruning after min(5, 4 // 4) = 1 finished trial
  metric: test.loss
  direction: minimize
  seed: 0
  prune: median
  space:
    params.quality: {choice: [1.0, 1.1, 5.0, 9.0]}
"""


@pytest.mark.parametrize(
    "how",
    [
        "  function: 'mytrain:fit'\n",
        "  script:\n    command: [python, train.py, '{params.quality}']\n",
    ],
    ids=["function", "script"],
)
def test_own_code_under_a_tuned_search_is_pruned_through_should_stop(tmp_path: Path, how: str):
    (tmp_path / "mytrain.py").write_text(FUNCTION)
    (tmp_path / "train.py").write_text(SCRIPT)
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        f"# test\nname: own\nbase:\n{how}  params: {{quality: 1.0}}\n"
        f"  train: {{epochs: 6}}\n{SEARCH}"
    )
    out = subprocess.run(
        [sys.executable, "-m", "ftmatrix", "run", str(matrix)],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "search: 4/4 trials (3 complete, 1 pruned)" in out.stdout
    assert "epoch 1: val loss 9.0000" in out.stdout  # the display shows own-code epochs

    runs = ftmatrix.load(tmp_path / "runs" / "own")
    states = {j.config["params"]["quality"]: j.state for j in runs}
    assert states == {5.0: "done", 9.0: "pruned", 1.1: "done", 1.0: "done"}
    best = next(j for j in runs if j.config["params"]["quality"] == 1.0)
    assert best.test == {"loss": pytest.approx(1 / 6)}
    assert [round(e["val_loss"], 4) for e in best.epochs()] == [1.0, 0.5, 0.3333, 0.25, 0.2, 0.1667]

    worse = next(j for j in runs if j.config["params"]["quality"] == 9.0)
    result = read_result(worse.folder)
    assert result.error_message.startswith("pruned at epoch")
    epochs = [m.epoch for m in read_metrics(worse.folder)]
    assert 1 <= len(epochs) < 6  # stopped before its last epoch, not run out
    assert "val loss 9.0000" in out.stdout and "pruned" in out.stdout
    assert runs.problems == []

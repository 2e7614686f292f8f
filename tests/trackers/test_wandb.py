"""W&B offline runs read back with wandb's own reader of its run files
(`wandb leet inspect`, which parses the .wandb transaction log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("wandb", reason="the wandb extra is not installed")

from ftmatrix.trackers import export, track
from tests.trackers.runs import grid

WANDB = Path(sys.executable).with_name("wandb")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tracker's default: offline
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def inspect(run_dir: Path, *flags: str) -> str:
    env = {**os.environ, "WANDB_CONFIG_DIR": str(run_dir.parent / ".config")}
    out = subprocess.run(
        [str(WANDB), "leet", "inspect", "--json", *flags, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
        check=True,
    )
    return out.stdout


def offline_runs(root: Path) -> dict[str, Path]:
    return {p.name.rsplit("-", 1)[-1]: p for p in (root / "wandb").glob("offline-run-*")}


def test_export_writes_an_offline_run_per_job_with_config_history_and_summary(tmp_path):
    root = grid(tmp_path)
    done = export(root, to="wandb")
    assert done.ok and len(done.sent) == 4
    assert done.opens == f"wandb sync {root / 'wandb'}/offline-run-*"
    runs = offline_runs(root)
    assert sorted(runs) == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"]
    summary = json.loads(inspect(runs["bbbbbbbbbbbb"], "--summary"))
    assert summary["run_id"] == "bbbbbbbbbbbb" and summary["name"] == "lora=r8 lr=0.1"
    assert summary["project"] == "ftmatrix" and summary["exit_code"] == 0
    assert summary["config"]["train.lr"] == 0.1 and summary["config"]["setting.lora"] == "r8"
    assert summary["summary"]["test/accuracy"] == pytest.approx(0.9)
    assert summary["summary"]["status"] == "done"
    records = [json.loads(line) for line in inspect(runs["bbbbbbbbbbbb"]).splitlines()]
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    assert run["run_group"] == "study"
    history = [r["history"] for r in records if r["type"] == "history"]
    assert [h["step"]["num"] for h in history] == [1, 2, 3]
    assert [round(h["item"]["val/accuracy"], 4) for h in history] == [0.3, 0.6, 0.9]
    failed = json.loads(inspect(runs["cccccccccccc"], "--summary"))
    assert failed["exit_code"] == 1 and failed["summary"]["status"] == "failed"


def test_sending_a_job_again_leaves_one_offline_run(tmp_path):
    root = grid(tmp_path)
    job = root / "aaaaaaaaaaaa"
    assert track(job, trackers=["wandb"], run_root=root) == []
    assert track(job, trackers=["wandb"], run_root=root) == []
    assert list(offline_runs(root)) == ["aaaaaaaaaaaa"]

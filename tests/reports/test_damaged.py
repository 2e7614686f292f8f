"""Damaged run folders (issue 12, class 8): a report names every damaged file and still
reports every healthy job; random truncations and byte flips never make `report` (or
`status`) crash."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.reports.report import write
from ftmatrix.result import DamagedFile, read_metrics, read_plan, read_result
from tests.trackers.runs import grid

DONE = {"aaaaaaaaaaaa": "0.8", "bbbbbbbbbbbb": "0.9", "dddddddddddd": "0.85"}
FAILED = "cccccccccccc"


def finished(parent: Path) -> Path:
    """The `grid` study (three done, one failed, one pending), each job folder with the
    progress.jsonl a job leaves."""
    root = grid(parent)
    for job_id in [*DONE, FAILED]:
        events = [{"event": "start", "epochs": 3}, {"event": "end", "status": "done"}]
        (root / job_id / "progress.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return root


def rows(root: Path) -> dict[str, dict[str, str]]:
    with (root / "results.csv").open(newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (b'{"status": "done", "te', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (
            b'{"status": "done", "test": {"accuracy": []}}',
            "test.accuracy: Input should be a valid number",
        ),
    ],
)
def test_a_damaged_result_is_named_and_the_other_jobs_reported(tmp_path, damage, problem):
    root = finished(tmp_path)
    (root / "bbbbbbbbbbbb" / "result.json").write_bytes(damage)
    text = write(root, plots=False).read_text()
    assert f"- damaged: {root / 'bbbbbbbbbbbb' / 'result.json'}: {problem}" in text
    assert "- **Jobs:** 2 done, 1 failed, 1 damaged, 1 pending" in text
    found = rows(root)
    assert found["bbbbbbbbbbbb"]["state"] == "damaged"
    assert {i: found[i]["test.accuracy"] for i in ("aaaaaaaaaaaa", "dddddddddddd")} == {
        "aaaaaaaaaaaa": "0.8",
        "dddddddddddd": "0.85",
    }


def test_a_damaged_plan_lists_the_job_folders_instead(tmp_path):
    root = finished(tmp_path)
    (root / "plan.json").write_bytes(b'{"name": "study", "jobs": [{"id": "aaa')
    text = write(root, plots=False).read_text()
    assert f"- damaged: {root / 'plan.json'}: not valid JSON" in text
    assert "listing the job folders on disk instead" in text
    found = rows(root)
    assert sorted(found) == sorted([*DONE, FAILED])  # the pending job had no folder
    assert {i: found[i]["test.accuracy"] for i in DONE} == DONE


def test_damaged_metrics_and_config_lose_only_their_curves_and_settings(tmp_path):
    root = finished(tmp_path)
    metrics = root / "aaaaaaaaaaaa" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().replace('"train_loss":1.5', '"train_loss":"x"', 1))
    (root / "dddddddddddd" / "config.json").write_bytes(b"\x00\x01")
    out = write(root, plots=True)
    text = out.read_text()
    assert f"damaged: {metrics}: line 1: train_loss: Input should be a valid number" in text
    assert f"damaged: {root / 'dddddddddddd' / 'config.json'}: not valid JSON" in text
    assert "![curves-1](plots/curves-1.png)" in text  # the other jobs' curves
    found = rows(root)
    assert {i: found[i]["test.accuracy"] for i in DONE} == DONE
    assert found["dddddddddddd"].get("config.train.lr", "") == ""


# --------------------------------------------------------------------------- fuzz

TARGETS = [
    "plan.json",
    "aaaaaaaaaaaa/result.json",
    "bbbbbbbbbbbb/result.json",
    f"{FAILED}/result.json",
    "aaaaaaaaaaaa/metrics.jsonl",
    "dddddddddddd/metrics.jsonl",
    "bbbbbbbbbbbb/progress.jsonl",
    "dddddddddddd/config.json",
]
MUTATION = st.tuples(
    st.sampled_from(TARGETS),
    st.sampled_from(["truncate", "flip", "insert"]),
    st.floats(0, 1),
    st.integers(1, 255),
)


def mutate(path: Path, kind: str, where: float, byte: int) -> None:
    data = bytearray(path.read_bytes())
    at = min(int(where * len(data)), max(len(data) - 1, 0))
    if kind == "truncate":
        del data[at:]
    elif kind == "flip" and data:
        data[at] ^= byte
    else:
        data[at:at] = bytes([byte, 0xFF, byte])
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return finished(tmp_path_factory.mktemp("template"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_report_and_status_never_crash_on_a_damaged_run_folder(template, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        root = runs / "study"
        shutil.copytree(template, root)
        for target, kind, where, byte in mutations:
            mutate(root / target, kind, where, byte)
        plots = ["--plots"] if len(mutations) == 1 else ["--no-plots"]
        report = CliRunner().invoke(app, ["report", "study", "--runs-dir", str(runs), *plots])
        assert report.exit_code == 0, (report.output, report.exception)
        status = CliRunner().invoke(app, ["status", "study", "--runs-dir", str(runs)])
        assert status.exception is None or isinstance(status.exception, SystemExit), (
            status.output,
            status.exception,
        )
        text = (root / "report.md").read_text()
        expect_named(root, text, mutated={t for t, *_ in mutations}, plots=plots == ["--plots"])
        expect_healthy_jobs(root, mutated={t for t, *_ in mutations})


def expect_named(root: Path, text: str, *, mutated: set[str], plots: bool) -> None:
    """Every mutated file that its reader refuses is named in the report."""
    readers = {
        "plan.json": lambda p: read_plan(p.parent),
        "result.json": lambda p: read_result(p.parent),
        "metrics.jsonl": lambda p: read_metrics(p.parent),
    }
    for target in mutated:
        path = root / target
        reader = readers.get(path.name)
        if reader is None:
            continue
        if path.name == "metrics.jsonl":
            try:  # curves are read for jobs done and drawn only
                drawn = plots and read_result(path.parent).status == "done"
            except DamagedFile:
                drawn = False
            if not drawn:
                continue
        try:
            reader(path)
        except DamagedFile as err:
            assert f"damaged: {path}" in text, err


def expect_healthy_jobs(root: Path, *, mutated: set[str]) -> None:
    """Every done job whose result.json is untouched is in results.csv with its accuracy
    (when plan.json still reads, as long as it still lists the job)."""
    try:
        plan = read_plan(root)
        listed = {e.id for e in plan.jobs} if plan else set(DONE)
    except DamagedFile:
        listed = set(DONE)
    found = rows(root)
    for job_id, accuracy in DONE.items():
        if f"{job_id}/result.json" not in mutated and job_id in listed:
            assert found[job_id]["state"] == "done" and found[job_id]["test.accuracy"] == accuracy

"""The run-folder contract (ftmatrix/result.py): each reader returns None for an absent
file and raises DamagedFile naming the file and the problem for a damaged one; the
atomic writers leave the old content or the whole new one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftmatrix.result import (
    DamagedFile,
    read_config,
    read_metrics,
    read_plan,
    read_progress,
    read_result,
    read_search,
    replace_folder,
    write_atomic,
)

EPOCH = {
    "epoch": 1,
    "train_loss": 0.5,
    "train_accuracy": 0.8,
    "lr": 0.01,
    "seconds": 1.0,
    "samples_per_second": 100.0,
}
SUMMARY = {
    "strategy": "tpe",
    "metric": "val_accuracy",
    "direction": "maximize",
    "seed": 0,
    "prune": None,
    "trials": 2,
    "space": {"train.lr": "loguniform"},
    "points": [
        {
            "id": "p1",
            "label": "",
            "study": "p1-abc",
            "budget": 2,
            "best": 0,
            "trials": [
                {
                    "number": 0,
                    "state": "complete",
                    "value": 0.9,
                    "job": "j1",
                    "label": "lr=0.01",
                    "settings": {"train.lr": "0.01"},
                    "epochs": 3,
                    "message": None,
                    "retried": False,
                }
            ],
        }
    ],
}


def test_absent_files_are_none_or_empty(tmp_path):
    assert read_result(tmp_path) is None
    assert read_config(tmp_path) is None
    assert read_plan(tmp_path) is None
    assert read_search(tmp_path) is None
    assert read_metrics(tmp_path) == []
    assert read_progress(tmp_path / "progress.jsonl", 7) == ([], 7)


def test_whole_files_read_as_their_records(tmp_path):
    (tmp_path / "result.json").write_text(json.dumps({"status": "done", "epochs_run": 3}))
    plan = {"name": "m", "jobs": [{"id": "a", "label": ""}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "search.json").write_text(json.dumps({**SUMMARY, "future_field": 1}))
    (tmp_path / "metrics.jsonl").write_text(json.dumps(EPOCH) + "\n")
    assert read_result(tmp_path).epochs_run == 3
    assert [e.id for e in read_plan(tmp_path).jobs] == ["a"]
    summary = read_search(tmp_path)
    assert summary["points"][0]["trials"][0]["value"] == 0.9 and summary["future_field"] == 1
    assert [m.epoch for m in read_metrics(tmp_path)] == [1]


RESULT_DAMAGE = {
    "truncated": (b'{"status": "done", "epo', "not valid JSON (Unterminated string"),
    "not UTF-8": (b'{"status": "d\xffne"}', "not UTF-8 (byte 13)"),
    "a list": (b'["done"]', "holds a JSON list, not an object"),
    "empty": (b"", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    "a wrong status": (b'{"status": "finished"}', "status: Input should be 'done', 'failed'"),
    "a metric of the wrong type": (
        b'{"status": "done", "test": {"loss": 1, "accuracy": "high", "f1_macro": 1, '
        b'"f1_weighted": 1, "precision_macro": 1, "recall_macro": 1, "top1": 1}}',
        "test.accuracy: Input should be a valid number",
    ),
    "nested too deeply": (b"[" * 100_000, "not valid JSON (nested too deeply)"),
}


@pytest.mark.parametrize("damage", list(RESULT_DAMAGE))
def test_a_damaged_result_json_raises_damaged_file_naming_it(tmp_path, damage):
    content, problem = RESULT_DAMAGE[damage]
    (tmp_path / "result.json").write_bytes(content)
    with pytest.raises(DamagedFile) as err:
        read_result(tmp_path)
    assert err.value.path == tmp_path / "result.json"
    assert err.value.problem.startswith(problem), err.value.problem
    assert str(err.value) == f"damaged: {tmp_path / 'result.json'}: {err.value.problem}"


def test_a_damaged_plan_search_or_config_names_its_file(tmp_path):
    (tmp_path / "plan.json").write_text('{"name": "m", "jobs": [{"label": "x"}]}')
    (tmp_path / "search.json").write_text(json.dumps({**SUMMARY, "points": "none"}))
    (tmp_path / "config.json").write_text("null")
    with pytest.raises(DamagedFile, match=r"plan\.json: jobs\.0\.id: Field required$"):
        read_plan(tmp_path)
    with pytest.raises(DamagedFile, match=r"search\.json: points: Input should be a valid list"):
        read_search(tmp_path)
    with pytest.raises(DamagedFile, match=r"config\.json: holds a JSON NoneType, not an object"):
        read_config(tmp_path)


def test_metrics_skip_only_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = json.dumps(EPOCH) + "\n"
    path.write_text(good + json.dumps({**EPOCH, "epoch": 2})[:30])  # the writer was killed
    assert [m.epoch for m in read_metrics(tmp_path)] == [1]
    path.write_text(good + '{"epoch": 2, "tr\n' + good)
    with pytest.raises(DamagedFile, match=r"metrics\.jsonl: line 2: not valid JSON"):
        read_metrics(tmp_path)
    path.write_text(good + json.dumps({**EPOCH, "train_loss": "low"}) + "\n")
    with pytest.raises(DamagedFile, match=r"line 2: train_loss: Input should be a valid number"):
        read_metrics(tmp_path)
    path.write_bytes(good.encode() + b"\xfe\n")
    with pytest.raises(DamagedFile, match=r"metrics\.jsonl: not UTF-8"):
        read_metrics(tmp_path)


def test_progress_events_are_read_from_an_offset_and_bad_lines_skipped(tmp_path):
    path = tmp_path / "progress.jsonl"
    lines = [b'{"event": "start", "epochs": 2}', b"garbage", b"[1, 2]", b'{"event": 3}']
    path.write_bytes(b"\n".join(lines) + b'\n{"event": "step"')  # a line being written
    events, offset = read_progress(path)
    assert events == [{"event": "start", "epochs": 2}]
    assert offset == path.stat().st_size - len(b'{"event": "step"')
    with path.open("ab") as f:
        f.write(b', "step": 1}\n')
    assert read_progress(path, offset) == ([{"event": "step", "step": 1}], path.stat().st_size)


def test_write_atomic_takes_text_bytes_or_a_writer_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    write_atomic(path, "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_atomic(path, lambda tmp: Path(tmp).write_text("by a writer"))
    assert path.read_text() == "by a writer"

    def fails(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fails)
    assert path.read_text() == "by a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_replace_folder_swaps_whole_folders_and_keeps_the_old_one_on_failure(tmp_path):
    folder = tmp_path / "weights"
    replace_folder(folder, lambda d: (d / "a").write_text("1"))
    assert sorted(p.name for p in folder.iterdir()) == ["a"]
    replace_folder(folder, lambda d: (d / "b").write_text("2"))
    assert sorted(p.name for p in folder.iterdir()) == ["b"]  # the old content is gone

    def fails(d):
        (d / "c").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replace_folder(folder, fails)
    assert sorted(p.name for p in folder.iterdir()) == ["b"]
    (tmp_path / ".weights.dead.tmp").mkdir()  # what a SIGKILL leaves: swept next time
    replace_folder(folder, lambda d: (d / "c").write_text("3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
    assert oct(folder.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

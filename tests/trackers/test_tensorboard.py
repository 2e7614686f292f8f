"""TensorBoard events read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from ftmatrix.trackers import export, track
from tests.trackers.runs import grid


def accumulator(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def hparams_data(acc: EventAccumulator, tag: str) -> plugin_data_pb2.HParamsPluginData:
    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(acc.PluginTagToContent(metadata.PLUGIN_NAME)[tag])
    return data


def test_export_writes_one_run_per_finished_job_with_scalars_and_hparams(tmp_path):
    root = grid(tmp_path)
    done = export(root, to="tensorboard")
    assert done.ok and sorted(done.sent) == [
        "aaaaaaaaaaaa",
        "bbbbbbbbbbbb",
        "cccccccccccc",
        "dddddddddddd",
    ]
    folders = sorted(p.name for p in (root / "tensorboard").iterdir())
    assert folders == [
        "lora=off lr=0.01 (cccccccccccc)",
        "lora=off lr=0.1 (aaaaaaaaaaaa)",
        "lora=r8 lr=0.01 (dddddddddddd)",
        "lora=r8 lr=0.1 (bbbbbbbbbbbb)",
    ]
    acc = accumulator(root / "tensorboard" / "lora=r8 lr=0.1 (bbbbbbbbbbbb)")
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "val/f1", "lr"} <= tags
    assert {"test/accuracy", "test/f1_macro", "test/loss"} <= tags
    val = acc.Scalars("val/accuracy")
    assert [e.step for e in val] == [1, 2, 3]
    assert [round(e.value, 4) for e in val] == [0.3, 0.6, 0.9]
    assert [round(e.value, 4) for e in acc.Scalars("lr")] == [0.1, 0.05, 0.0333]
    (test,) = acc.Scalars("test/accuracy")
    assert test.step == 3 and test.value == pytest.approx(0.9)

    start = hparams_data(acc, metadata.SESSION_START_INFO_TAG).session_start_info
    assert start.hparams["lora"].string_value == "r8"
    assert start.hparams["train.lr"].number_value == pytest.approx(0.1)
    assert start.group_name == "lora=r8 lr=0.1"
    end = hparams_data(acc, metadata.SESSION_END_INFO_TAG).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS

    failed = accumulator(root / "tensorboard" / "lora=off lr=0.01 (cccccccccccc)")
    end = hparams_data(failed, metadata.SESSION_END_INFO_TAG).session_end_info
    assert end.status == api_pb2.STATUS_FAILURE
    assert "test/accuracy" not in failed.Tags()["scalars"]


def test_sending_again_replaces_a_jobs_events_instead_of_adding(tmp_path):
    root = grid(tmp_path)
    export(root, to="tensorboard")
    job = root / "bbbbbbbbbbbb"
    assert track(job, trackers=["tensorboard"], run_root=root) == []
    assert export(root, to="tensorboard").ok
    folder = root / "tensorboard" / "lora=r8 lr=0.1 (bbbbbbbbbbbb)"
    assert len(list(folder.iterdir())) == 1  # one event file
    assert len(list((root / "tensorboard").iterdir())) == 4
    assert [e.step for e in accumulator(folder).Scalars("val/loss")] == [1, 2, 3]


def test_a_pending_job_is_not_sent(tmp_path):
    root = grid(tmp_path)
    assert track(root / "eeeeeeeeeeee", trackers=["tensorboard"], run_root=root) == []
    assert not (root / "tensorboard").exists()

"""A whole job in this process: what it writes, and that the numbers are right."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from ftmatrix.result import read_metrics, read_result
from ftmatrix.trainers import job as job_mod
from ftmatrix.trainers import loop
from ftmatrix.trainers.job import main
from tests.tiny import image_job, make_job, text_job, write_texts


def test_lora_vit_writes_every_output_and_learns(lora_vit_job):
    result = read_result(lora_vit_job)
    assert result.status == "done" and result.job_id == "lora-vit"
    assert result.test.accuracy > 0.5  # ten classes: chance is 0.1
    assert result.epochs_run == 6 and result.best_epoch is not None
    assert len(read_metrics(lora_vit_job)) == 6
    assert (lora_vit_job / "weights" / "adapter_model.safetensors").exists()
    assert not (lora_vit_job / "checkpoint").exists()  # done: resume state dropped
    events = [json.loads(line)["event"] for line in (lora_vit_job / "progress.jsonl").open()]
    assert events[0] == "start" and events[-1] == "end"
    assert events.count("epoch") == 6 and "step" in events
    assert result.versions["torch"] and result.timing["train"] > 0
    if result.device == "cpu":
        assert result.precision == "fp32"  # no autocast on a CPU
    else:  # a GPU machine: bf16 where the card has it natively
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        assert result.precision == ("bf16" if native else "fp32")
    assert set(result.test.per_class_accuracy) == {str(d) for d in range(10)}
    assert result.test.k == 5 and result.test.topk >= result.test.top1


def test_trainable_parameters_match_peft_exactly(lora_vit_job):
    from ftmatrix.config import JobConfig
    from ftmatrix.trainers import lora, models

    cfg = JobConfig.model_validate_json((lora_vit_job / "config.json").read_text())
    built = models.build(cfg, 10)
    peft_model = lora.wrap(built.model, cfg.lora, head=built.head)
    trainable, total = peft_model.get_nb_trainable_parameters()
    params = read_result(lora_vit_job).params
    assert (params.trainable, params.total) == (trainable, total)
    assert params.trainable_percent == pytest.approx(100 * trainable / total)
    # r=8 on q and v of 2 layers (64 -> 64): 2 * 2 * 8 * (64 + 64), plus the head 64*10+10
    assert trainable == 2 * 2 * 8 * 128 + 650


def test_reported_metrics_equal_scikit_learn_on_the_saved_predictions(lora_vit_job):
    saved = np.load(lora_vit_job / "predictions.npz")
    y, pred = saved["y_true"], saved["probs"].argmax(axis=1)
    test = read_result(lora_vit_job).test
    assert test.accuracy == skm.accuracy_score(y, pred)
    assert test.f1_macro == skm.f1_score(y, pred, average="macro")
    assert test.f1_weighted == skm.f1_score(y, pred, average="weighted")
    assert test.precision_macro == skm.precision_score(y, pred, average="macro", zero_division=0)
    assert test.recall_macro == skm.recall_score(y, pred, average="macro")
    assert np.array_equal(np.array(test.confusion_matrix), skm.confusion_matrix(y, pred))
    assert test.n == len(y) == 360  # 20% of 1,797, stratified


LOSSES = ["cross_entropy", "focal", "mse", "l1", "smooth_l1"]


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_an_image_model(tmp_path, loss):
    job = make_job(tmp_path / "j", image_job(loss=loss, epochs=2))
    assert main(job) == 0
    rows = read_metrics(job)
    assert len(rows) == 2 and all(np.isfinite(r.train_loss) for r in rows)
    assert read_result(job).test.n > 0


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_a_text_model(tmp_path, loss):
    job = make_job(tmp_path / "j", text_job(write_texts(tmp_path), loss=loss))
    assert main(job) == 0
    result = read_result(job)
    assert result.test.class_names == ["food", "sport"]
    assert np.isfinite(result.test.loss)


def test_tiny_bert_learns_the_two_topics(tmp_path):
    job = make_job(tmp_path / "j", text_job(write_texts(tmp_path), epochs=4))
    assert main(job) == 0
    assert read_result(job).test.accuracy >= 0.75


def test_torchvision_resnet18_from_scratch_trains(tmp_path):
    config = image_job(epochs=1)
    config["model"] = {"name": "resnet18", "pretrained": False, "image_size": 32}
    job = make_job(tmp_path / "j", config)
    assert main(job) == 0
    result = read_result(job)
    assert result.params.trainable == result.params.total == 11_181_642  # 10-class head
    assert (job / "weights" / "model.safetensors").exists()


def test_early_stopping_stops_at_the_right_epoch(tmp_path, monkeypatch):
    planted = iter([1.0, 0.8, 0.85, 0.9, 0.95, 0.7, 0.6])  # best at 2, patience 2 -> stop at 4
    real = loop.evaluate

    def evaluate(**kw):
        loss, probs, y = real(**kw)
        if kw["data"].dataset.split is validation[0]:
            return next(planted), probs, y
        return loss, probs, y

    validation = []
    real_load = job_mod.data.load

    def load(*a, **kw):
        splits = real_load(*a, **kw)
        validation.append(splits.val)
        return splits

    monkeypatch.setattr(job_mod.data, "load", load)
    monkeypatch.setattr(job_mod.loop, "evaluate", evaluate)
    config = image_job(epochs=7, early_stopping={"enabled": True, "patience": 2})
    job = make_job(tmp_path / "j", config)
    assert main(job) == 0
    result = read_result(job)
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (2, 4, True)


def test_a_job_killed_after_epoch_2_resumes_to_identical_metrics(tmp_path, monkeypatch):
    config = image_job(epochs=4, scheduler={"name": "cosine", "warmup_fraction": 0.2})
    config["data"]["augment"] = {"enabled": True, "horizontal_flip": 0.5}
    config["model"]["head_dropout"] = 0.1
    whole = make_job(tmp_path / "whole", config)
    assert main(whole) == 0

    killed = make_job(tmp_path / "killed", config)
    real_fault = job_mod.fault

    def interrupt_at_3(epoch, stop, job_id=""):
        if epoch == 3:
            raise loop.Interrupted(15)
        return real_fault(epoch, stop, job_id)

    monkeypatch.setattr(job_mod, "fault", interrupt_at_3)
    assert main(killed) == 143
    assert read_result(killed) is None and len(read_metrics(killed)) == 2
    monkeypatch.setattr(job_mod, "fault", real_fault)
    assert main(killed) == 0
    resumed, full = read_result(killed), read_result(whole)
    assert resumed.resumed_from_epoch == 2
    assert resumed.test.model_dump() == full.test.model_dump()
    strip = [
        {**m.model_dump(), "seconds": 0, "samples_per_second": 0} for m in read_metrics(killed)
    ]
    assert strip == [
        {**m.model_dump(), "seconds": 0, "samples_per_second": 0} for m in read_metrics(whole)
    ]
    assert (killed / "starts.log").read_text().count("start") == 2


def test_distillation_from_a_finished_jobs_weights(lora_vit_job):
    runs = lora_vit_job.parent
    config = image_job(epochs=3, lr=0.003, batch_size=32)
    config["data"] = {"builtin": "digits"}
    config["distill"] = {"enabled": True, "teacher_job": lora_vit_job.name, "alpha": 0.7}
    student = make_job(runs / "student", config)
    assert main(student) == 0
    assert read_result(student).test.accuracy > 0.3


@pytest.mark.parametrize(("fault", "error"), [("raise@1", "crash"), ("nan@1", "nan_loss")])
def test_faults_are_recorded_with_their_class(tmp_path, monkeypatch, fault, error):
    monkeypatch.setenv("FTMATRIX_FAULT", fault)
    job = make_job(tmp_path / "j", image_job())
    assert main(job) == 1
    result = read_result(job)
    assert (result.status, result.error_class) == ("failed", error)


def test_missing_data_is_a_data_error(tmp_path):
    job = make_job(tmp_path / "j", text_job(tmp_path / "absent.csv"))
    assert main(job) == 1
    assert read_result(job).error_class == "data_error"


def test_lora_targets_that_match_nothing_list_the_models_layers(tmp_path):
    config = image_job()
    config["lora"] = {"enabled": True, "target_modules": ["qkv"]}
    job = make_job(tmp_path / "j", config)
    assert main(job) == 1
    result = read_result(job)
    assert result.error_class == "config_error"
    assert "q_proj" in result.error_message and "v_proj" in result.error_message

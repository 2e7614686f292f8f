"""What a job leaves behind can be used again, and every training option takes effect."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ftmatrix.config import JobConfig
from ftmatrix.result import read_metrics, read_result
from ftmatrix.trainers import data, loop, models
from ftmatrix.trainers.job import main
from ftmatrix.trainers.models import IMAGENET_MEAN, IMAGENET_STD
from tests.tiny import TINY_VIT, image_job, make_job, text_job, write_texts


def test_saved_lora_weights_load_again_through_peft_and_predict_the_same(lora_vit_job):
    from peft import PeftModel

    cfg = JobConfig.model_validate_json((lora_vit_job / "config.json").read_text())
    splits = data.load(cfg)
    torch.manual_seed(cfg.train.seed)  # the job's random base (pretrained: false)
    built = models.build(cfg, len(splits.class_names))
    model = PeftModel.from_pretrained(built.model, str(lora_vit_job / "weights"))
    # where the job ran (a GPU machine: cuda, in bf16), so the same arithmetic
    result = read_result(lora_vit_job)
    device = torch.device(result.device.split()[0])
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(result.precision)
    _, probs, y = loop.evaluate(
        model=model.to(device),
        built=built,
        data=loop.loader(splits.test, kind="image", batch_size=cfg.train.batch_size),
        inputs=loop.Inputs(built, device, "image"),
        loss_fn=lambda out, y, x: out.sum(),
        autocast=autocast,
    )
    saved = np.load(lora_vit_job / "predictions.npz")
    assert np.array_equal(y, saved["y_true"])
    # bf16 keeps about 3 significant digits: what it explains, on any batch split
    np.testing.assert_allclose(probs, saved["probs"], atol=1e-5 if autocast is None else 1e-2)


@pytest.mark.parametrize("which", ["best", "last", "none"])
def test_save_weights_keeps_the_best_the_last_or_nothing(tmp_path, which):
    planted = [0.5, 0.9, 0.7]  # validation losses: epoch 1 is the best
    config = image_job(epochs=3, early_stopping={"enabled": False})
    config["output"] = {"save_weights": which, "keep_checkpoint": True}
    job = make_job(tmp_path / "j", config)
    real = loop.evaluate
    calls = []

    def evaluate(**kw):
        loss, probs, y = real(**kw)
        calls.append(1)
        return (planted[len(calls) - 1] if len(calls) <= 3 else loss), probs, y

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "evaluate", evaluate)
        assert main(job) == 0
    assert read_result(job).best_epoch == 1
    if which == "none":
        assert not (job / "weights").exists()
        return
    saved = load_file(str(job / "weights" / "model.safetensors"))
    if which == "best":
        expected = load_file(str(job / "checkpoint" / "best-1.safetensors"))
    else:
        expected = torch.load(job / "checkpoint" / "state.pt", weights_only=True)["model"]
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k].cpu()) for k in saved)
    assert list((job / "checkpoint").glob("best-*")) == [job / "checkpoint" / "best-1.safetensors"]


def test_distillation_from_a_teacher_spec_trains_on_its_soft_targets(tmp_path):
    # alpha 1: the loss is the soft-target term alone, T^2 KL(teacher || student), which
    # a random (near-uniform) teacher makes small, and the labels teach nothing
    config = image_job(epochs=2, lr=0.003, batch_size=32)
    teacher = {**TINY_VIT, "config": {**TINY_VIT["config"], "hidden_size": 32}}
    config["distill"] = {"enabled": True, "teacher": teacher, "alpha": 1.0, "temperature": 2}
    job = make_job(tmp_path / "distilled", config)
    assert main(job) == 0
    alone = make_job(tmp_path / "alone", image_job(epochs=2, lr=0.003, batch_size=32))
    assert main(alone) == 0
    assert all(r.train_loss < 0.05 for r in read_metrics(job))
    assert all(r.train_loss > 2.0 for r in read_metrics(alone))  # cross-entropy, ~ln 10
    assert read_result(job).test.accuracy < 0.2
    # validation and test losses stay the hard loss; the teacher's weights are not counted
    assert read_metrics(job)[0].val_loss > 2.0
    assert read_result(job).params == read_result(alone).params


def test_accumulation_and_piecewise_schedules_take_effect(tmp_path):
    # clipping, augmentation, balanced weights and smoothing ride along: they must run
    config = image_job(
        epochs=2,
        batch_size=32,
        batch_size_schedule={1: 32, 2: 64},
        weight_decay_schedule={1: 0.0, 2: 0.05},
        grad_accumulation=2,
        grad_clip=1.0,
        scheduler="linear",
        loss={"name": "cross_entropy", "class_weights": "balanced", "label_smoothing": 0.1},
        log_every=1,
    )
    config["output"] = {"keep_checkpoint": True}
    config["data"]["augment"] = {
        "enabled": True,
        "horizontal_flip": 0.5,
        "affine_degrees": 10,
        "affine_translate": 0.1,
        "grayscale": 0.2,
        "color_jitter": 0.2,
    }
    job = make_job(tmp_path / "j", config)
    assert main(job) == 0
    events = [json.loads(line) for line in (job / "progress.jsonl").open()]
    start = events[0]
    assert (start["event"], start["steps_per_epoch"]) == ("start", 9)  # 280 / 32 batches
    steps = {e["epoch"]: e["steps"] for e in events if e["event"] == "step"}
    assert steps == {1: 9, 2: 5}  # the batch size doubled in epoch 2
    # linear decay over 5 + 3 optimizer steps (two batches each): 3/8 of lr left, then 0
    rows = read_metrics(job)
    assert rows[0].lr == pytest.approx(0.01 * 3 / 8) and rows[1].lr == 0.0
    state = torch.load(job / "checkpoint" / "state.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 0.05


def test_a_text_model_with_a_small_vocabulary_and_no_validation_split(tmp_path):
    config = text_job(write_texts(tmp_path), epochs=2)
    config["data"]["val_fraction"] = 0
    config["model"] = {**config["model"], "config": {**config["model"]["config"], "vocab_size": 20}}
    job = make_job(tmp_path / "j", config)
    assert main(job) == 0
    result = read_result(job)
    assert result.best_epoch == 2  # with nothing to validate on, the last epoch counts
    assert all(r.val_loss is None for r in read_metrics(job))


def test_class_weights_of_the_wrong_length_are_a_config_error(tmp_path):
    job = make_job(tmp_path / "j", image_job(loss={"name": "focal", "class_weights": [1, 2]}))
    assert main(job) == 1
    result = read_result(job)
    assert result.error_class == "config_error"
    assert "2 values for 10 classes" in result.error_message


def test_sigterm_stops_the_job_without_a_result_and_restores_the_handlers(tmp_path, monkeypatch):
    monkeypatch.setenv("FTMATRIX_FAULT", "sleep@2")
    job = make_job(tmp_path / "j", image_job(epochs=3))
    state = job / "checkpoint" / "state.pt"

    def kill_when_epoch_1_is_saved():
        while not state.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=kill_when_epoch_1_is_saved, daemon=True).start()
    started = time.monotonic()
    assert main(job) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 30
    assert read_result(job) is None and len(read_metrics(job)) == 1
    assert signal.getsignal(signal.SIGTERM) is before
    events = [json.loads(line) for line in (job / "progress.jsonl").open()]
    assert events[-1] == {**events[-1], "event": "end", "status": "interrupted"}


def test_a_teacher_sees_images_in_its_own_normalisation_and_size():
    from ftmatrix.trainers import distill

    student = build_model(TINY_VIT)  # 32 px, mean = std = 0.5
    teacher_model = {"name": "resnet18", "pretrained": False, "image_size": 64}
    spec = {"enabled": True, "teacher": teacher_model}
    cfg = JobConfig.model_validate({**image_job(), "model": TINY_VIT, "distill": spec})
    teacher = distill.teacher(
        cfg.distill, job_dir=None, cfg=cfg, student=student, class_names=list("0123456789")
    )
    grey = torch.full((2, 3, 32, 32), 0.4)  # pixels at 0.4 in the student's normalisation
    seen = teacher._inputs((grey - 0.5) / 0.5)
    expected = (0.4 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert seen.shape == (2, 3, 64, 64)
    torch.testing.assert_close(seen[0, :, 10, 10], expected)
    assert teacher.logits((grey - 0.5) / 0.5).shape == (2, 10)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def build_model(model: dict) -> models.Built:
    cfg = JobConfig.model_validate({**image_job(), "model": model})
    return models.build(cfg, 10)


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory"), RuntimeError("MPS backend out of memory")],
)
def test_running_out_of_memory_is_recorded_as_oom(tmp_path, monkeypatch, error):
    def exhausted(**kw):
        raise error

    monkeypatch.setattr(loop, "train_epoch", exhausted)
    job = make_job(tmp_path / "j", image_job())
    assert main(job) == 1
    result = read_result(job)
    assert (result.status, result.error_class) == ("failed", "oom")
    assert "out of memory" in result.error_message

"""Which epoch is tested: the best by a named validation metric, or the last; a NaN or
infinite validation metric never crashes a job; a done job keeps no resume state."""

from __future__ import annotations

import numpy as np
import pytest

from ftmatrix.config import TrainConfig
from ftmatrix.result import EpochMetrics, read_metrics, read_result
from ftmatrix.trainers import job as job_mod
from ftmatrix.trainers import metrics, selection
from ftmatrix.trainers.job import main
from tests.tiny import image_job, make_job

NAN = float("nan")


def planted(monkeypatch, losses: list[float], *, probs_nan_at: int | None = None) -> None:
    """Validation losses of epochs 1, 2, ... as given (accuracy and F1 stay real);
    `probs_nan_at`: that evaluation (1-based, validation and test counted) returns NaN
    class probabilities, as a diverged model would."""
    real = job_mod.loop.evaluate
    calls = []

    def evaluate(**kw):
        loss, probs, y = real(**kw)
        calls.append(1)
        if probs_nan_at is not None and len(calls) == probs_nan_at:
            probs = np.full_like(probs, NAN)
        if len(calls) <= len(losses):
            return losses[len(calls) - 1], probs, y
        return loss, probs, y

    monkeypatch.setattr(job_mod.loop, "evaluate", evaluate)


def run(tmp_path, monkeypatch, losses, **train):
    planted(monkeypatch, losses)
    job = make_job(tmp_path / "j", image_job(epochs=len(losses), **train))
    assert main(job) == 0
    return job, read_result(job)


def test_by_default_the_best_validation_loss_is_tested_and_the_rule_recorded(tmp_path, monkeypatch):
    _, result = run(tmp_path, monkeypatch, [1.0, 0.6, 0.8, 0.9])
    assert (result.tested_epoch, result.best_epoch) == (2, 2)
    assert result.tested_by == "best val_loss (min)"
    assert result.unranked_epochs == []


def test_a_last_epoch_job_tests_its_last_epoch_and_keeps_no_best_weights(tmp_path, monkeypatch):
    _, result = run(tmp_path, monkeypatch, [1.0, 0.6, 0.8, 0.9], test="last")
    assert (result.tested_epoch, result.tested_by, result.best_epoch) == (4, "last", None)
    # what was tested is the model after epoch 4: the same job with keep_checkpoint shows
    # that no best-<E> file was ever needed
    config = image_job(epochs=4, test="last")
    config["output"] = {"keep_checkpoint": True}
    kept = make_job(tmp_path / "kept", config)
    assert main(kept) == 0
    assert list((kept / "checkpoint").glob("best-*")) == []
    assert (kept / "checkpoint" / "state.pt").exists()


def test_each_rule_tests_the_weights_of_the_epoch_it_names(tmp_path, monkeypatch):
    """Same seed, constant lr: epoch E of a longer job is the same model as an E-epoch
    job. So `best` at epoch 1 tests what a 1-epoch job tests, and `last` what a job
    whose best is its last epoch tests."""

    def test_of(name, losses, epochs, **train):
        planted(monkeypatch, losses)
        job = make_job(tmp_path / name, image_job(epochs=epochs, **train))
        assert main(job) == 0
        return read_result(job)

    best = test_of("best", [0.1, 0.9, 0.95], 3)  # epoch 1 is the best
    last = test_of("last", [0.1, 0.9, 0.95], 3, test="last")
    one_epoch = test_of("one", [0.1], 1)
    third_is_best = test_of("third", [0.9, 0.5, 0.1], 3)
    assert (best.tested_epoch, last.tested_epoch) == (1, 3)
    assert best.test.model_dump() == one_epoch.test.model_dump()
    assert last.test.model_dump() == third_is_best.test.model_dump()
    assert best.test.model_dump() != last.test.model_dump()


def test_a_named_metric_picks_the_epoch_even_with_early_stopping_off(tmp_path, monkeypatch):
    job, result = run(tmp_path, monkeypatch, [0.5, 0.6, 0.7], test={"metric": "val_accuracy"})
    accuracies = [m.val_accuracy for m in read_metrics(job)]
    assert result.tested_epoch == 1 + accuracies.index(max(accuracies))
    assert result.tested_by == "best val_accuracy (max)"


def test_the_default_rule_follows_early_stopping_when_it_is_on():
    on = TrainConfig(early_stopping={"enabled": True, "metric": "val_f1", "min_delta": 0.01})
    assert selection.picking_rule(on) == selection.Rule("val_f1", "max", 0.01)
    off = TrainConfig(early_stopping={"enabled": False, "metric": "val_f1"})
    assert selection.picking_rule(off) == selection.Rule("val_loss", "min")
    named = TrainConfig(test={"metric": "val_accuracy"}, early_stopping={"enabled": True})
    assert selection.picking_rule(named) == selection.Rule("val_accuracy", "max")
    assert selection.picking_rule(TrainConfig(test="last")) is None


def test_nan_validation_losses_are_never_the_best_and_are_named(tmp_path, monkeypatch):
    _, result = run(tmp_path, monkeypatch, [NAN, 0.9, float("inf"), 0.7, NAN])
    assert result.status == "done"
    assert (result.tested_epoch, result.unranked_epochs) == (4, [1, 3, 5])


def test_no_finite_validation_loss_tests_the_last_epoch_and_says_so(tmp_path, monkeypatch):
    job, result = run(
        tmp_path, monkeypatch, [NAN, NAN, NAN], early_stopping={"enabled": True, "patience": 2}
    )
    assert result.status == "done"
    assert result.stopped_early and result.epochs_run == 2  # NaN is no improvement
    assert result.tested_epoch == 2 and result.best_epoch is None
    assert result.tested_by == "last (no epoch had a finite val_loss)"
    assert result.unranked_epochs == [1, 2]
    assert [m.val_loss for m in read_metrics(job)] == [None, None]  # JSON has no NaN


def test_nan_outputs_on_the_test_split_give_metrics_not_a_crash(tmp_path, monkeypatch):
    planted(monkeypatch, [0.5], probs_nan_at=2)  # the 2nd evaluation is the test
    job = make_job(tmp_path / "j", image_job(epochs=1))
    assert main(job) == 0
    test = read_result(job).test
    assert 0 <= test.accuracy <= 1 and test.topk is not None


def test_test_metrics_ignore_non_finite_outputs():
    probs = np.array([[0.1, 0.8, 0.1], [NAN, NAN, NAN], [0.7, np.inf, 0.1]])
    got = metrics.test_metrics(
        y_true=np.array([1, 0, 1]), probs=probs, loss=NAN, class_names=["a", "b", "c"], k=2
    )
    # rows 2 and 3: NaN/inf count as no vote; row 2 falls to class a, row 3 to class a
    assert got.accuracy == pytest.approx(2 / 3)
    assert np.isnan(got.loss)


def test_epoch_ranking_skips_non_finite_values():
    rule, state = selection.Rule("val_loss", "min"), selection.fresh()
    rows = [
        EpochMetrics(
            epoch=e,
            train_loss=1,
            train_accuracy=0,
            val_loss=v,
            lr=1,
            seconds=1,
            samples_per_second=1,
        )
        for e, v in enumerate([NAN, 2.0, -float("inf"), 1.0], 1)
    ]
    assert [selection.update(state, rule, r) for r in rows] == [False, True, False, True]
    assert state == {"value": 1.0, "epoch": 4, "bad": 0}
    assert selection.unranked(rows, rule) == [1, 3]


def test_a_done_job_drops_its_resume_checkpoint_unless_asked(tmp_path):
    dropped = make_job(tmp_path / "dropped", image_job(epochs=2))
    assert main(dropped) == 0
    assert read_result(dropped).status == "done"
    assert not (dropped / "checkpoint").exists()
    assert (dropped / "weights" / "model.safetensors").exists()  # exported weights stay
    config = image_job(epochs=2)
    config["output"] = {"keep_checkpoint": True}
    kept = make_job(tmp_path / "kept", config)
    assert main(kept) == 0
    assert (kept / "checkpoint" / "state.pt").exists()


def test_a_failed_job_keeps_its_checkpoint_for_a_retry(tmp_path, monkeypatch):
    monkeypatch.setenv("FTMATRIX_FAULT", "raise@2")
    job = make_job(tmp_path / "j", image_job(epochs=2))
    assert main(job) == 1
    assert (job / "checkpoint" / "state.pt").exists()

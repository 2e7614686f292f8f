"""Own data, loss and extra metrics in the built-in trainer (`data.factory`,
`train.loss.factory`, `train.metrics`): validate finds the code without importing it,
ids of jobs without them stand, and the job process trains on the factory's tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

import ftmatrix
from ftmatrix.config import JobConfig
from ftmatrix.identity import job_id, normalized
from tests.tiny import cli

ROOT = Path(__file__).parents[2]
DATA = ROOT / "examples" / "own-model" / "digits_data.py"
MODEL = f"{ROOT / 'examples' / 'own-model' / 'models.py'}:build"


def test_missing_data_loss_and_metric_code_is_refused_at_its_line(tmp_path: Path):
    (tmp_path / "boom.py").write_text("raise SystemExit('imported!')\ndef g(): pass\n")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "# t\nname: own\nbase:\n"
        "  data: {factory: 'missing_data.py:digits'}\n"  # line 4
        "  model: {name: resnet18, pretrained: false}\n"
        "  train:\n"
        "    loss: {factory: 'no_such_pkg_xyz:loss'}\n"  # line 7
        "    metrics: ['boom:g', 'gone.py:f']\n"  # line 8
    )
    out = cli("validate", str(matrix), cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert f"{matrix}:4:" in text and "missing_data.py does not exist" in text
    assert f"{matrix}:7:" in text and "module 'no_such_pkg_xyz' cannot be found" in text
    assert f"{matrix}:8:" in text and "gone.py does not exist" in text
    assert "imported!" not in text and "Traceback" not in text


def test_two_data_sources_and_a_metric_with_a_builtin_name_are_refused():
    with pytest.raises(ValueError, match="exactly one of"):
        JobConfig.model_validate(
            {"data": {"builtin": "digits", "factory": "m:f"}, "model": {"name": "resnet18"}}
        )
    with pytest.raises(ValueError, match="task image-classification only"):
        JobConfig.model_validate(
            {"task": "text-classification", "data": {"factory": "m:f"},
             "model": {"name": "google/bert_uncased_L-2_H-128_A-2"}}
        )  # fmt: skip
    with pytest.raises(ValueError, match="built-in metric's name"):
        JobConfig.model_validate(
            {"data": {"builtin": "digits"}, "model": {"name": "resnet18"},
             "train": {"metrics": ["mine:accuracy"]}}
        )  # fmt: skip


def test_unset_factories_leave_ids_unchanged():
    plain = {"data": {"builtin": "digits"}, "model": {"name": "resnet18"}}
    cfg = JobConfig.model_validate(plain)
    norm = normalized(cfg)
    assert "factory" not in norm["data"] and "config" not in norm["data"]
    assert "factory" not in norm["train"]["loss"] and "metrics" not in norm["train"]
    own = JobConfig.model_validate(
        {"data": {"factory": "m:d"}, "model": {"name": "resnet18"},
         "train": {"loss": {"factory": "m:l"}, "metrics": ["m:bal"]}}
    )  # fmt: skip
    assert normalized(own)["data"]["factory"] == "m:d"
    assert normalized(own)["train"]["loss"]["factory"] == "m:l"
    assert normalized(own)["train"]["metrics"] == ["m:bal"]
    assert job_id(own) != job_id(cfg)


def test_the_factory_splits_are_used_as_given(monkeypatch):
    from ftmatrix.trainers import data, own_data

    monkeypatch.setenv("FTMATRIX_CODE_DIR", str(DATA.parent))
    given, names = own_data.load("digits_data.py:digits", {"size": 8})
    assert names == [str(i) for i in range(10)]
    assert given["train"][0].shape == (1438, 3, 8, 8) and given["test"][0].shape == (359, 3, 8, 8)
    cfg = JobConfig.model_validate(
        {"data": {"factory": "digits_data.py:digits"}, "model": {"name": "resnet18"}}
    )
    splits = data.load(cfg)
    # val cut from train (10%), test as given; values untouched (float, not re-normalised)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    assert splits.train.x.dtype == torch.float32
    assert torch.equal(splits.test.x, given["test"][0])


def test_extra_metric_and_own_loss_give_the_library_values(monkeypatch):
    from ftmatrix.config import LossConfig
    from ftmatrix.trainers import losses, metrics

    monkeypatch.setenv("FTMATRIX_CODE_DIR", str(DATA.parent))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.random((200, 4))
    test = metrics.test_metrics(y_true=y, probs=probs, loss=1.0, class_names=list("abcd"), k=2)
    got = metrics.with_extras(
        test, ["digits_data.py:balanced_accuracy"], y_true=y, probs=probs
    ).model_dump()
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, probs.argmax(1)))
    assert got["accuracy"] == test.accuracy
    logits, targets = torch.randn(16, 4), torch.randint(0, 4, (16,))
    own = losses.build(
        LossConfig(factory="digits_data.py:cross_entropy"), weights=None, num_classes=4
    )
    builtin = losses.build(LossConfig(), weights=None, num_classes=4)
    assert own(logits, targets).item() == pytest.approx(builtin(logits, targets).item())


@pytest.mark.slow
def test_factory_data_trains_above_chance_with_own_and_torchvision_models(tmp_path: Path):
    head = (
        f"  data: {{factory: '{DATA}:digits', config: {{size: 16}}}}\n"
        "  train:\n    epochs: 6\n    batch_size: 32\n    lr: 0.003\n"
        f"    metrics: ['{DATA}:balanced_accuracy']\n"
    )
    own = tmp_path / "own.yaml"  # own model, built-in loss against an own cross-entropy
    own.write_text(
        f"# t\nname: own\nbase:\n{head}"
        f"  model: {{name: cnn, factory: '{MODEL}', config: {{width: 16}}, image_size: 16}}\n"
        f"grid:\n  train.loss.factory: [null, '{DATA}:cross_entropy']\n"
    )
    tv = tmp_path / "tv.yaml"
    tv.write_text(
        f"# t\nname: tv\nbase:\n{head}"
        "  model: {name: resnet18, pretrained: false, image_size: 16}\n"
    )
    for matrix in (own, tv):
        out = cli("run", str(matrix), cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
    builtin, mine = sorted(
        ftmatrix.load(tmp_path / "runs" / "own"),
        key=lambda j: j.config["train"]["loss"].get("factory") is not None,
    )
    (resnet,) = ftmatrix.load(tmp_path / "runs" / "tv")
    for job in (builtin, mine, resnet):
        assert job.state == "done"
        assert job.test["accuracy"] > 0.4, job.test  # chance: 0.1
        saved = np.load(job.folder / "predictions.npz")
        expected = balanced_accuracy_score(saved["y_true"], saved["probs"].argmax(axis=1))
        assert job.test["balanced_accuracy"] == pytest.approx(expected)
    # an own loss equal to cross-entropy trains as the built-in one does
    assert mine.config["train"]["loss"]["factory"] == f"{DATA}:cross_entropy"
    assert mine.test["accuracy"] == builtin.test["accuracy"]
    assert mine.test["loss"] == pytest.approx(builtin.test["loss"], rel=1e-4)


@pytest.mark.slow
def test_the_shipped_own_data_matrix_trains_above_chance(tmp_path: Path):
    matrix = ROOT / "matrices" / "own-data.yaml"
    out = cli("run", str(matrix), "--runs-dir", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = sorted(
        ftmatrix.load(tmp_path / "own-data"), key=lambda j: j.config["data"]["config"]["size"]
    )
    assert [j.config["data"]["config"]["size"] for j in jobs] == [8, 16]
    for job in jobs:
        assert job.state == "done"
        assert job.test["accuracy"] > 0.5, job.test  # chance: 0.1
        saved = np.load(job.folder / "predictions.npz")
        assert saved["y_true"].shape == (359,)  # the factory's own test split, as given
        expected = balanced_accuracy_score(saved["y_true"], saved["probs"].argmax(axis=1))
        assert job.test["balanced_accuracy"] == pytest.approx(expected)

"""Pre-flight: what contradicts the data or the model's architecture is refused before
the first job, every problem at once, located in the matrix file, nothing written."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.config import JobConfig
from ftmatrix.matrix import plan
from ftmatrix.runner import preflight
from tests.tiny import TINY_VIT


def matrix(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    p = plan.load_plan(path)
    return preflight.check(p.jobs, root=path.parent / "runs", base_dir=path.parent, matrix=path)


def image_folder(root: Path, classes: list[str], splits=("train",)) -> Path:
    """Class folders, each with one image file (pre-flight reads names, never pixels)."""
    for split in splits:
        for name in classes:
            (root / split / name).mkdir(parents=True)
            (root / split / name / "0.png").write_bytes(b"")
    return root


@pytest.fixture
def no_model_process(monkeypatch):
    """Fail the test if pre-flight starts the architecture process."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected process: {args}")

    monkeypatch.setattr(preflight.subprocess, "run", refuse)


def test_class_weights_of_the_wrong_length_for_digits_are_located(tmp_path, no_model_process):
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          data: {builtin: digits}
          model: {name: resnet18, pretrained: false}
        grid:
          train.loss.class_weights: [[1, 2, 3], balanced]
        """,
    )
    assert problems(path) == [
        f"{path}:6:3: train.loss.class_weights: 3 weights for the 10 classes of digits: "
        "give one weight per class, or 'balanced'"
    ]


@pytest.mark.parametrize(("weights", "bad"), [([1, 2], True), ([1, 2, 3], False)])
def test_class_weights_are_counted_against_the_class_folders(
    tmp_path, no_model_process, weights, bad
):
    image_folder(tmp_path / "imgs", ["cat", "dog", "owl"], splits=("train", "test"))
    path = matrix(
        tmp_path,
        f"""\
        name: t
        base:
          data: {{path: imgs}}
          model: {{name: resnet18, pretrained: false}}
          train:
            loss: {{name: focal, class_weights: {weights}}}
        """,
    )
    found = problems(path)
    assert bool(found) is bad
    if bad:
        assert found[0].startswith(f"{path}:6:")
        assert "2 weights for the 3 classes" in found[0]


def test_no_test_split_in_an_image_folder_is_refused(tmp_path, no_model_process):
    image_folder(tmp_path / "flat", ["a", "b"], splits=("train",))
    image_folder(tmp_path / "split", ["a", "b"], splits=("train", "test"))
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          model: {name: resnet18, pretrained: false}
          data: {test_fraction: 0}
        grid:
          data.path: [flat, split]
        """,
    )
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(f"{path}:4:")
    assert "data.test_fraction: test_fraction 0 leaves no test examples" in found[0]
    assert "flat" in found[0] and "no test/ folder" in found[0]


def test_a_saved_dataset_without_a_test_split_is_refused(tmp_path, no_model_process):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          model: {name: resnet18, pretrained: false}
          data: {path: saved, test_fraction: 0}
        """,
    )
    assert ["leaves no test examples" in p for p in problems(path)] == [True]
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert problems(path) == []


def test_split_folders_without_train_are_refused(tmp_path, no_model_process):
    image_folder(tmp_path / "imgs", ["a", "b"], splits=("val", "test"))
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          model: {name: resnet18, pretrained: false}
          data: {path: imgs}
        """,
    )
    found = problems(path)
    assert len(found) == 1 and "has val/, test/ but no train/" in found[0]


def test_which_models_need_their_architecture_checked(tmp_path, monkeypatch):
    def job(**model):
        return JobConfig.model_validate({"data": {"builtin": "digits"}, "model": model})

    assert not preflight.needs_architecture(job(name="resnet18", pretrained=False))
    assert preflight.needs_architecture(job(name="org/model", pretrained=False))
    # pretrained: are its weights there? (trainers/architecture.py asks, once per model)
    assert preflight.needs_architecture(job(name="resnet18"))
    assert preflight.needs_architecture(job(name="org/model"))
    lora = {"enabled": True, "target_modules": ["conv1"]}
    cfg = JobConfig.model_validate(
        {"data": {"builtin": "digits"}, "model": {"name": "resnet18"}, "lora": lora}
    )
    assert preflight.needs_architecture(cfg)


def test_a_failing_model_process_is_reported_and_does_not_block(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, stdout="", stderr="Boom\nImportError: x")

    monkeypatch.setattr(preflight.subprocess, "run", broken)
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          data: {builtin: digits}
          model: {name: resnet18, pretrained: false}
          lora: {enabled: true, target_modules: [conv1]}
        """,
    )
    assert problems(path) == []
    assert "models not checked: ImportError: x" in capsys.readouterr().err


def test_run_refuses_what_the_architecture_contradicts_before_any_job(tmp_path, monkeypatch):
    """One process builds both models on the meta device: a config-key typo, an image
    smaller than a patch and LoRA targets the ViT lacks; the valid model passes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    good = json.dumps(TINY_VIT)
    bad = dict(TINY_VIT, image_size=4, config={**TINY_VIT["config"], "hidden_szie": 32})
    path = matrix(
        tmp_path,
        f"""\
        name: t
        runs_dir: runs
        base:
          data: {{builtin: digits}}
          lora: {{enabled: true, target_modules: [query, attn]}}
        grid:
          model:
            good: {good}
            bad: {json.dumps(bad)}
        """,
    )
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    out = result.output.replace("\n", " ")
    assert f"{path}:8:" in out and "model.config.hidden_szie: a vit config has no key" in out
    assert "did you mean 'hidden_size'?" in out
    assert "model.image_size: 4 is smaller than one 8x8 patch" in out
    assert f"{path}:5:25: lora.target_modules: ['attn'] match no layer of this model" in out
    assert out.count("['attn'] match no layer") == 1  # the same problem, said once
    assert "q_proj" in out  # what the model does have
    assert not (tmp_path / "runs").exists()


def test_the_fork_server_checks_the_models_as_a_process_of_its_own_does(tmp_path):
    """The runner's fork server has torch imported already: the same problems, found in
    a forked child instead of a fresh interpreter (several seconds a run)."""
    from ftmatrix.runner.launchers.forkserver import ForkServerLauncher

    bad = dict(TINY_VIT, image_size=4, config={**TINY_VIT["config"], "hidden_szie": 32})
    path = matrix(
        tmp_path,
        f"""\
        name: t
        base:
          data: {{builtin: digits}}
          model: {json.dumps(bad)}
          lora: {{enabled: true, target_modules: [query, attn]}}
        """,
    )
    p = plan.load_plan(path)
    where = {"root": tmp_path / "runs", "base_dir": tmp_path, "matrix": path}
    forked = preflight.check(p.jobs, models=ForkServerLauncher().check_models, **where)
    assert len(forked) == 3 and any("hidden_szie" in f for f in forked), forked
    assert forked == preflight.check(p.jobs, **where)


def test_a_model_check_that_cannot_answer_falls_back_to_a_process(tmp_path, monkeypatch, capsys):
    def answer(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, stdout='[[["lora.r", "seen"]]]', stderr="")

    def broken(payload, *, timeout):
        raise EOFError("the child died")

    monkeypatch.setattr(preflight.subprocess, "run", answer)
    path = matrix(
        tmp_path,
        """\
        name: t
        base:
          data: {builtin: digits}
          model: {name: org/model, source: hf, pretrained: false}
        """,
    )
    p = plan.load_plan(path)
    found = preflight.check(p.jobs, root=tmp_path / "runs", base_dir=tmp_path, models=broken)
    assert found == ["lora.r: seen"]
    assert "checking models in a process of its own (the child died)" in capsys.readouterr().err


@pytest.fixture
def models_fine(monkeypatch):
    """The architecture process answers "no problem" at once (these tests are about data)."""

    def answer(args, **kwargs):
        return subprocess.CompletedProcess(args, 0, stdout="[]", stderr="")

    monkeypatch.setattr(preflight.subprocess, "run", answer)


IMAGE_MATRIX = """\
name: t
base:
  data: {path: data}
  model: {name: resnet18, pretrained: false, image_size: 32}
"""


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: (d / "train" / "cat" / "0.png").unlink(), "holds no images"),
        (lambda d: image_folder(d, ["bird"], splits=("test",)), "class folders that"),
        (lambda d: (d / "val").mkdir(), None),  # an empty val/ is no problem
    ],
    ids=["empty class folder", "test class absent from train", "empty val"],
)
def test_an_image_folder_that_cannot_mean_what_it_says_stops_the_run_before_any_job(
    tmp_path, damage, expected
):
    image_folder(tmp_path / "data", ["cat", "dog"], splits=("train", "test"))
    damage(tmp_path / "data")
    path = matrix(tmp_path, IMAGE_MATRIX)
    found = problems(path)
    if expected is None:
        assert found == []
        return
    assert len(found) == 1 and expected in found[0] and "data.path" in found[0]
    done = CliRunner().invoke(app, ["run", str(path)])
    assert done.exit_code == 2 and expected in done.output
    assert not (tmp_path / "runs").exists()


TEXT_MATRIX = """\
name: t
base:
  task: text-classification
  data: {path: texts.FORMAT}
  model: {name: google-bert/bert-base-uncased, pretrained: false}
"""


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("csv", "text,label\na,x\nb,x\nc,x\n", "at least two classes"),
        (
            "jsonl",
            '{"text": "a", "label": 1}\n{"text": "b", "label": "1"}\n',
            "differ only in how they are written",
        ),
        ("jsonl", '{"text": "a", "label": 0}\nnot json\n{"text": "c", "label": 1}\n', ":2"),
        ("csv", "text,label\na,x\nb,\nc,y\n", ":3"),
    ],
    ids=["single class", "labels 1 and '1'", "a line that is not JSON", "a row without label"],
)
def test_a_text_file_that_cannot_mean_what_it_says_is_refused_at_pre_flight(
    tmp_path, models_fine, name, text, expected
):
    (tmp_path / f"texts.{name}").write_text(text)
    found = problems(matrix(tmp_path, TEXT_MATRIX.replace("FORMAT", name)))
    assert len(found) == 1 and "data.path" in found[0] and f"texts.{name}" in found[0]
    assert expected in found[0]

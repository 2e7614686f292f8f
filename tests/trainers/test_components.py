"""Own components in the built-in trainer (`model.factory`): validate finds the code
without importing it, the job process builds, trains and LoRA-wraps the module."""

from __future__ import annotations

from pathlib import Path

import pytest

import ftmatrix
from ftmatrix.config import JobConfig
from ftmatrix.identity import normalized
from tests.tiny import cli

ROOT = Path(__file__).parents[2]
FACTORY = f"{ROOT / 'examples' / 'own-model' / 'models.py'}:build"


def test_a_factory_that_cannot_be_found_is_refused_without_importing(tmp_path: Path):
    # a module that exists but would fail if imported: validate must not import it
    (tmp_path / "boom.py").write_text("raise SystemExit('imported!')\ndef build(): pass\n")
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "# t\nname: own\nbase:\n  data: {builtin: digits}\n"
        "  model: {name: mine, factory: 'no_such_pkg_xyz.models:build'}\n"
        "grid:\n  model.factory: ['boom:build', 'missing.py:build']\n"
    )
    out = cli("validate", str(matrix), cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert f"{matrix}:5:" in text and "missing.py does not exist" in text  # base key: line 5
    assert "imported!" not in text and "Traceback" not in text
    matrix.write_text(
        "# t\nname: own\nbase:\n  data: {builtin: digits}\n"
        "  model: {name: mine, factory: 'no_such_pkg_xyz.models:build'}\n"
    )
    out = cli("validate", str(matrix), cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2
    assert f"{matrix}:5:" in text
    assert "module 'no_such_pkg_xyz.models' cannot be found" in text
    matrix.write_text("# t\nname: own\nbase:\n  model: {name: mine, factory: 'not a path'}\n")
    out = cli("validate", str(matrix), cwd=tmp_path)
    assert out.returncode == 2 and "is not 'module:function'" in out.stdout + out.stderr


def test_an_unset_factory_leaves_ids_unchanged():
    cfg = JobConfig.model_validate({"data": {"builtin": "digits"}, "model": {"name": "resnet18"}})
    own = cfg.model_copy(update={"model": cfg.model.model_copy(update={"factory": "m:build"})})
    assert "factory" not in normalized(cfg)["model"]  # so every existing id stands
    assert normalized(own)["model"]["factory"] == "m:build"


@pytest.mark.slow
def test_own_model_trains_with_and_without_lora(tmp_path: Path):
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "# t\nname: own\nbase:\n  data: {builtin: digits, limit: 400}\n"
        f"  model: {{name: cnn, factory: '{FACTORY}', config: {{width: 8}}, image_size: 8}}\n"
        "  lora: {r: 4, alpha: 8, target_modules: [hidden]}\n"
        "  train: {epochs: 2, batch_size: 64, lr: 0.01}\n"
        "grid:\n  lora.enabled: [false, true]\n"
    )
    out = cli("run", str(matrix), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    full, lora = ftmatrix.load(tmp_path / "runs" / "own")
    assert (full.state, lora.state) == ("done", "done")
    # width 8: conv 3->8 (224) + conv 8->16 (1,168) + hidden 16x16 (272) + head 16->10 (170)
    assert full.trainable == full.result.params.total == 224 + 1168 + 272 + 170
    # LoRA on `hidden` (r 4: 16x4 + 4x16) and the head in full
    assert lora.trainable == 128 + 170
    # peft's modules_to_save keeps the original head beside its trained copy
    assert lora.result.params.total == 1834 + 128 + 170
    assert 0 <= lora.test["accuracy"] <= 1 and len(full.epochs()) == 2

"""Every shipped matrix loads and plans, and says what it studies and how to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftmatrix.matrix import plan

MATRICES = sorted((Path(__file__).parent.parent / "matrices").glob("*.yaml"))


def test_the_studies_of_the_foundation_issue_are_shipped():
    names = {p.stem for p in MATRICES}
    assert {"quickstart", "hw4", "loss-functions", "bert-text", "transfer-distill"} <= names
    assert "optimizers" in names


@pytest.mark.parametrize("path", MATRICES, ids=[p.stem for p in MATRICES])
def test_matrix_plans_and_opens_with_what_and_how(path: Path):
    p = plan.load_plan(path)
    assert p.jobs
    head = path.read_text().splitlines()
    assert head[0].startswith("# ")  # what it studies
    assert any(f"ftmatrix run matrices/{path.name}" in line for line in head[:12])
    assert p.name == path.stem


def test_hw4_is_two_models_times_three_lora_settings():
    p = plan.load_plan("matrices/hw4.yaml")
    assert len(p.jobs) == 6
    assert p.axes == ["model.name", "lora"]
    r24 = [j.config for j in p.jobs if j.settings["lora"] == "r24"]
    assert {(c.lora.r, c.lora.alpha, c.lora.dropout) for c in r24} == {(24, 48, 0.1)}
    assert all(c.model.image_size == 128 and c.train.epochs == 3 for c in r24)
    assert {c.model.name for c in r24} == {
        "google/vit-base-patch16-224",
        "google/vit-base-patch16-224-in21k",
    }


def test_loss_functions_is_the_full_product():
    p = plan.load_plan("matrices/loss-functions.yaml")
    assert len(p.jobs) == 3 * 2 * 3 * 5
    assert {j.config.train.loss.name for j in p.jobs} == {
        "cross_entropy",
        "focal",
        "l1",
        "mse",
        "smooth_l1",
    }


def test_quickstart_is_lora_on_off_at_two_learning_rates():
    p = plan.load_plan("matrices/quickstart.yaml")
    assert [j.label for j in p.jobs] == [
        "lora=false lr=0.01",
        "lora=false lr=0.003",
        "lora=true lr=0.01",
        "lora=true lr=0.003",
    ]
    assert all(j.config.data.builtin == "digits" and not j.config.model.pretrained for j in p.jobs)

"""Pretrained weights that cannot be had are found before the first job, once per
model, with the reason: not cached while offline, no such hub id, a gated model, no
network. Nothing here touches the network: the hub and the download are stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from typer.testing import CliRunner

from ftmatrix.cli import app
from ftmatrix.config import JobConfig
from ftmatrix.trainers import architecture
from tests.tiny import TINY_VIT

HUB_ID = "google/vit-base-patch16-224"


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """An empty Hugging Face cache and torch hub, and nothing remembered of earlier asks."""
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    monkeypatch.setattr(architecture, "_asked", {})


def job(**model) -> JobConfig:
    return JobConfig.model_validate({"data": {"builtin": "digits"}, "model": model})


def cache_weights(tmp_path: Path, name: str, file: str = "model.safetensors") -> None:
    """The hub cache's layout: models--org--name/{refs/main, snapshots/<rev>/<file>}."""
    repo = tmp_path / "hub" / f"models--{name.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / file).write_bytes(b"x")


def test_offline_and_not_cached_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    [(key, message)] = architecture.check(job(name=HUB_ID, image_size=128))
    assert key == "model.name"
    assert message.startswith(f"{HUB_ID}: pretrained weights cannot be had: ")
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE=1" in message


@pytest.mark.parametrize("file", ["model.safetensors", "pytorch_model.bin.index.json"])
def test_cached_weights_pass_offline(monkeypatch, tmp_path, file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_weights(tmp_path, HUB_ID, file)
    assert architecture.weights_problem("hf", HUB_ID) is None


def test_a_model_folder_without_weights_is_refused(tmp_path):
    folder = tmp_path / "my-vit"
    folder.mkdir()
    assert "holds none of model.safetensors" in architecture.weights_problem("hf", str(folder))
    (folder / "model.safetensors").write_bytes(b"x")
    architecture._asked.clear()  # (a run asks once per model)
    assert architecture.weights_problem("hf", str(folder)) is None


def hub_answers(monkeypatch, error: Exception | None) -> list[str]:
    """The hub's answer to the HEAD request for config.json; the urls asked."""
    asked = []

    def metadata(url, timeout=None):
        asked.append(url)
        if error is not None:
            raise error
        return object()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", metadata)
    return asked


def http(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("HEAD", "https://huggingface.co/x"))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RepositoryNotFoundError("404", response=http(404)), "no such model on the Hugging"),
        (GatedRepoError("401", response=http(401)), "a gated model: accept its terms"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "cannot be reached"),
        (None, None),
    ],
)
def test_online_the_hub_says_why(monkeypatch, error, reason):
    asked = hub_answers(monkeypatch, error)
    got = architecture.weights_problem("hf", "someone/some-vit")
    assert asked == ["https://huggingface.co/someone/some-vit/resolve/main/config.json"]
    assert got is None if reason is None else reason in got


def test_each_model_is_asked_once(monkeypatch):
    asked = hub_answers(monkeypatch, RepositoryNotFoundError("404", response=http(404)))
    configs = [
        job(name="someone/vit-typo"),
        job(name="someone/vit-typo", image_size=64),
        job(name="someone/vit-typo", head_dropout=0.1),
    ]
    problems = [architecture.check(c) for c in configs]
    assert len(asked) == 1
    assert problems[0] == problems[1] == problems[2] != []


def test_torchvision_weights_from_the_cache_or_their_url(monkeypatch, tmp_path):
    probed = []

    def probe(url):
        probed.append(url)
        return f"{url}: Name or service not known"

    monkeypatch.setattr(architecture, "probe", probe)
    [(key, message)] = architecture.check(job(name="resnet18", image_size=32))
    assert key == "model.name" and probed == [
        "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    ]
    assert "resnet18-f37072fd.pth is not in " in message and "cannot be downloaded" in message
    (tmp_path / "torch" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"x")
    monkeypatch.setattr(architecture, "_asked", {})
    assert architecture.check(job(name="resnet18", image_size=32)) == []
    assert len(probed) == 1  # the cached file needs no network


def test_models_built_empty_need_no_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert architecture.check(job(**TINY_VIT)) == []
    assert architecture.check(job(name="resnet18", pretrained=False)) == []


@pytest.mark.slow
def test_run_stops_before_any_job_with_the_model_and_the_reason(tmp_path, monkeypatch):
    """`ftmatrix run` offline with an empty cache: exit 2, one line per model, nothing
    written — where every job used to fail as a crash, one after another."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # the model process's cache
    base = {
        "data": {"builtin": "digits"},
        "model": {"pretrained": True, "image_size": 32},
        "train": {"epochs": 1},
    }
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: w\n"
        "runs_dir: runs\n"
        f"base: {json.dumps(base)}\n"
        "grid:\n"
        f"  model.name: [{HUB_ID}, google/vit-base-patch16-224-in21k]\n"
        "  train.lr: [0.1, 0.01]\n"
    )
    result = CliRunner().invoke(app, ["run", str(matrix)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if "cannot be had" in line]
    assert len(lines) == 2  # one per model, not one per job
    assert f"{matrix}:" in lines[0] and f"model.name: {HUB_ID}: pretrained weights" in lines[0]
    assert not (tmp_path / "runs").exists()

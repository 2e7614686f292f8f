"""Building models: image sizes, normalisation, LoRA names, parameter counts."""

from __future__ import annotations

import pytest
import torch
import torchvision

from ftmatrix.config import JobConfig
from ftmatrix.trainers import lora, models
from ftmatrix.trainers.models import IMAGENET_MEAN, IMAGENET_STD, ConfigError
from tests.tiny import TINY_BERT, TINY_VIT, image_job


def build(model: dict, task: str = "image-classification", **extra) -> models.Built:
    config = image_job()
    config.update(task=task, model=model, **extra)
    if task == "text-classification":
        config["data"] = {"path": "unused.csv"}
    return models.build(JobConfig.model_validate(config), 10)


def test_a_torchvision_vit_from_scratch_takes_the_configured_image_size():
    built = build({"name": "vit_b_32", "pretrained": False, "image_size": 64})
    assert built.model.encoder.pos_embedding.shape == (1, 1 + 2 * 2, 768)
    assert built.model(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert (built.mean, built.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_pretrained_torchvision_vit_at_another_size_interpolates_its_weights(monkeypatch):
    weights = torchvision.models.ViT_B_32_Weights
    torch.manual_seed(0)
    official = torchvision.models.vit_b_32().state_dict()  # stands in for the download
    monkeypatch.setattr(weights, "get_state_dict", lambda self, **kw: official)
    built = build({"name": "vit_b_32", "pretrained": True, "image_size": 64})
    state = built.model.state_dict()
    # a 2x2 patch grid instead of 7x7; the class token's embedding and the encoder kept
    position = state["encoder.pos_embedding"]
    assert position.shape == (1, 5, 768)
    assert torch.equal(position[:, 0], official["encoder.pos_embedding"][:, 0])
    key = "encoder.layers.encoder_layer_0.self_attention.in_proj_weight"
    assert torch.equal(state[key], official[key])
    assert built.model.heads.head.out_features == 10
    mean, std = weights.DEFAULT.transforms().mean, weights.DEFAULT.transforms().std
    assert (list(built.mean), list(built.std)) == (mean, std)


def test_a_hf_vit_from_its_config_uses_its_processors_normalisation():
    built = build(TINY_VIT)
    assert built.mean == built.std == (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults
    assert built.model.config.image_size == 32 and not built.interpolate


def test_a_name_that_says_nothing_needs_a_model_type():
    with pytest.raises(ConfigError, match=r"model\.config\.model_type"):
        build({"name": "someone/mystery-net", "pretrained": False})
    built = build({"name": "someone/mystery-net", "pretrained": False, "config": TINY_VIT_TYPED})
    assert built.model.config.model_type == "vit"


TINY_VIT_TYPED = {**TINY_VIT["config"], "model_type": "vit", "image_size": 32}


def test_familiar_lora_names_map_to_each_architecture():
    vit = build(TINY_VIT)
    assert lora.resolve_targets(vit.model, ["query", "key", "value"], head=vit.head) == [
        "q_proj",
        "k_proj",
        "v_proj",
    ]
    bert = build(TINY_BERT, task="text-classification")
    assert lora.resolve_targets(bert.model, ["q_proj", "value"], head=bert.head) == [
        "query",
        "value",
    ]


def test_freezing_the_backbone_leaves_exactly_the_head_trainable():
    built = build({**TINY_VIT, "freeze_backbone": True})
    trainable, total = models.count_parameters(built.model)
    assert trainable == 64 * 10 + 10  # the new head: hidden 64 -> 10 classes
    assert total > 50 * trainable
    built = build({"name": "resnet18", "pretrained": False, "freeze_backbone": True})
    assert models.count_parameters(built.model)[0] == 512 * 10 + 10


def test_head_dropout_sits_before_the_new_head():
    built = build({"name": "mobilenet_v3_small", "pretrained": False, "head_dropout": 0.3})
    head = built.model.classifier[-1]
    assert isinstance(head[0], torch.nn.Dropout) and head[0].p == 0.3
    assert head[1].out_features == 10

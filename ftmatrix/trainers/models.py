"""Models: torchvision classifiers and Hugging Face models, with a fresh head.

`pretrained: true` loads the official weights (torchvision's DEFAULT weights, or
`from_pretrained`); `false` builds the same architecture from its config, offline.

Building a Hugging Face model with `pretrained: false` never touches the network: a
cached config is used when there is one, otherwise the config class of the model type,
given as `model.config.model_type` or read from the name (a name containing "vit"
means vit, "bert" bert, ...; see `_TYPE_HINTS`), with the `model.config` overrides.
It is the architecture the pretrained path builds: a ViT keeps the position embeddings
of its config's image size (224 for vit-base) and interpolates them to
`model.image_size` on every call, exactly as it does with the pretrained weights, so
both report the same parameter counts. To build a ViT for another size, set
`model.config.image_size`.

Normalisation follows the model: the mean/std of the pretrained weights' transforms
(torchvision) or of the model's image processor (Hugging Face; for a model built from
its config, the defaults of that model type's processor); ImageNet's otherwise.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from ftmatrix.config import JobConfig
from ftmatrix.result import Params
from ftmatrix.trainers import quantize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Model types that a hub id names, for building from config when the hub cannot be
# reached (pretrained: false and HF_HUB_OFFLINE=1). Checked in order.
_TYPE_HINTS = (
    ("deit", "deit"),
    ("vit", "vit"),
    ("distilbert", "distilbert"),
    ("roberta", "roberta"),
    ("bert", "bert"),
    ("convnext", "convnext"),
    ("swin", "swin"),
)


class ConfigError(Exception):
    """The config cannot be realised for this model (error class `config_error`)."""


@dataclass
class Built:
    model: nn.Module
    source: str  # "torchvision" | "hf" | "own" (model.factory)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    head: str  # name of the classification head module (trained fully under LoRA)
    interpolate: bool = False  # ViT at another image size than it was trained at


def build(cfg: JobConfig, num_classes: int, class_names: list[str] | None = None) -> Built:
    if cfg.model.factory is not None:  # your own network (trainers/components.py)
        from ftmatrix.trainers import components

        made, head = components.call(cfg.model.factory, num_classes=num_classes, **cfg.model.config)
        if head is None:
            raise ConfigError(f"{cfg.model.factory} gave no nn.Module with an nn.Linear head")
        return Built(made, "own", IMAGENET_MEAN, IMAGENET_STD, head)
    if cfg.model.source == "torchvision":
        return _torchvision(cfg, num_classes)
    return _hf(cfg, num_classes, class_names or [str(i) for i in range(num_classes)])


def _torchvision(cfg: JobConfig, num_classes: int) -> Built:
    import torchvision

    spec = cfg.model
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    # torchvision's ViTs are built for one input size (position embeddings per patch)
    sized = spec.name.startswith("vit_")
    if not spec.pretrained:
        kwargs = {"image_size": spec.image_size} if sized else {}
        model = torchvision.models.get_model(spec.name, weights=None, **kwargs)
    else:
        weights = torchvision.models.get_model_weights(spec.name).DEFAULT
        native = weights.meta["min_size"][0]
        if sized and native != spec.image_size:
            model = _resized_vit(spec.name, weights, spec.image_size)
        elif spec.name.startswith("maxvit") and native != spec.image_size:
            raise ConfigError(f"{spec.name} takes {native}-pixel images; set model.image_size")
        else:
            model = torchvision.models.get_model(spec.name, weights=weights)
        transform = weights.transforms()
        mean, std = tuple(transform.mean), tuple(transform.std)
    head = _replace_head(model, num_classes, spec.head_dropout)
    if spec.freeze_backbone:
        _freeze_all_but(model, head)
    return Built(model, "torchvision", mean, std, head)


def _resized_vit(name: str, weights, size: int) -> nn.Module:
    """A torchvision ViT for `size`-pixel images with the pretrained weights, its
    position embeddings interpolated to the new number of patches (torchvision's own
    `interpolate_embeddings`)."""
    import torchvision
    from torchvision.models.vision_transformer import interpolate_embeddings

    model = torchvision.models.get_model(name, weights=None, image_size=size)
    if size % model.patch_size:
        raise ConfigError(f"model.image_size {size} is not a multiple of {name}'s patch size")
    state = interpolate_embeddings(size, model.patch_size, weights.get_state_dict(progress=False))
    model.load_state_dict(state)
    return model


def _replace_head(model: nn.Module, num_classes: int, dropout: float) -> str:
    """Swap the last Linear layer of the classifier for one with num_classes outputs."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:  # squeezenet: a 1x1 conv head
        conv = model.classifier[1]
        model.classifier[1] = nn.Conv2d(conv.in_channels, num_classes, kernel_size=1)
        return "classifier"
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child) if not child.isdigit() else parent[int(child)]
    new: nn.Module = nn.Linear(old.in_features, num_classes)
    if dropout > 0:
        new = nn.Sequential(nn.Dropout(dropout), new)
    if child.isdigit():
        parent[int(child)] = new
    else:
        setattr(parent, child, new)
    return last.split(".")[0]


def _freeze_all_but(model: nn.Module, head: str) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(head + ".")


def _hf(cfg: JobConfig, num_classes: int, class_names: list[str]) -> Built:
    import transformers as tf

    spec = cfg.model
    image = cfg.task == "image-classification"
    labels = {
        "num_labels": num_classes,
        "id2label": dict(enumerate(class_names)),
        "label2id": {n: i for i, n in enumerate(class_names)},
    }
    overrides = dict(spec.config)
    model_type = overrides.pop("model_type", None)
    if spec.pretrained:
        config = tf.AutoConfig.from_pretrained(spec.name, **labels, **overrides)
    else:
        # no weights wanted: use a cached config if there is one, never the network
        try:
            config = tf.AutoConfig.from_pretrained(
                spec.name, local_files_only=True, **labels, **overrides
            )
        except OSError:
            model_type = model_type or _guess_type(spec.name)
            config = tf.AutoConfig.for_model(model_type, **labels, **overrides)
    if spec.head_dropout and hasattr(config, "classifier_dropout"):
        config.classifier_dropout = spec.head_dropout
    auto = tf.AutoModelForImageClassification if image else tf.AutoModelForSequenceClassification
    native = getattr(config, "image_size", None) if image else None
    resized = native is not None and native != spec.image_size
    if not spec.pretrained and resized and not _interpolates(config):
        config.image_size = spec.image_size  # no other way to take this size
    if quantize.wanted(cfg):  # a 4-bit or 8-bit base (QLoRA) on the job's device
        model = quantize.load(auto, cfg, config, skip=quantize.HEADS, ignore_mismatched_sizes=True)
    elif spec.pretrained:
        model = auto.from_pretrained(spec.name, config=config, ignore_mismatched_sizes=True)
    else:
        model = auto.from_config(config)
    head = next(
        (n for n in ("classifier", "score", "classification_head") if hasattr(model, n)),
        "classifier",
    )
    if spec.head_dropout and not hasattr(config, "classifier_dropout"):
        linear = getattr(model, head)
        setattr(model, head, nn.Sequential(nn.Dropout(spec.head_dropout), linear))
    if spec.freeze_backbone:
        _freeze_all_but(model, head)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if image:
        mean, std = _image_stats(spec.name, config, pretrained=spec.pretrained)
    # a ViT at another size than its config's: interpolate its position embeddings
    interpolate = (
        resized
        and getattr(config, "image_size", None) != spec.image_size
        and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    )
    return Built(model, "hf", mean, std, head, interpolate)


def _interpolates(config) -> bool:
    """Whether the image classifier of this config can interpolate its position
    embeddings to another image size (ViT, DeiT, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    try:
        cls = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        return False
    return "interpolate_pos_encoding" in inspect.signature(cls.forward).parameters


def tokenizer(cfg: JobConfig):
    """The text model's own tokenizer; None when it is built from its config and no
    tokenizer is cached (the data then fits one to the training texts)."""
    if cfg.task != "text-classification" or cfg.model.source != "hf":
        return None
    from transformers import AutoTokenizer

    if cfg.model.pretrained:
        return AutoTokenizer.from_pretrained(cfg.model.name)
    try:
        return AutoTokenizer.from_pretrained(cfg.model.name, local_files_only=True)
    except (OSError, ValueError):
        return None


def _guess_type(name: str) -> str:
    lowered = name.lower()
    for hint, model_type in _TYPE_HINTS:
        if hint in lowered:
            return model_type
    raise ConfigError(
        f"cannot build '{name}' offline: its config is not cached; give "
        f"model.config.model_type (e.g. vit, bert)"
    )


def _image_stats(name: str, config, *, pretrained: bool) -> tuple[tuple, tuple]:
    """The model's processor's normalisation: its saved processor config when it can be
    read (from the cache only without pretrained weights), else the defaults of the
    processor of its model type, else ImageNet's."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name, local_files_only=not pretrained)
        return tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

        found = IMAGE_PROCESSOR_MAPPING[type(config)]
        # one class, or (slow, fast) / {backend: class} depending on the version
        if isinstance(found, dict | tuple):
            options = found.values() if isinstance(found, dict) else found
            found = next(c for c in options if c is not None)
        processor = found()
        return tuple(processor.image_mean), tuple(processor.image_std)
    except (ImportError, KeyError, StopIteration, AttributeError, TypeError, ValueError):
        return IMAGENET_MEAN, IMAGENET_STD


def logits(built: Built, model: nn.Module, x) -> torch.Tensor:
    """Forward pass for either family: images (float tensor) or texts (dict of ids)."""
    if built.source in ("torchvision", "own"):  # (own: a model.factory's module)
        return model(x)
    if isinstance(x, dict):
        return model(**x).logits
    if built.interpolate:
        return model(pixel_values=x, interpolate_pos_encoding=True).logits
    return model(pixel_values=x).logits


def count_parameters(model: nn.Module) -> tuple[int, int]:
    if quantize.is_quantized(model):  # peft's count: a 4-bit weight packs two values a byte
        return model.get_nb_trainable_parameters()  # type: ignore[operator]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def params_record(model: nn.Module) -> Params:
    """Trainable and total parameters, as result.json records them."""
    trainable, total = count_parameters(model)
    return Params(
        trainable=trainable, total=total, trainable_percent=100.0 * trainable / max(total, 1)
    )

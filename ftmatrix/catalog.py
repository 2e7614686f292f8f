"""The names a matrix may use: models, losses, optimizers, schedulers, tasks.

Kept apart from the trainers so that validation (which must not import torch) can
check a name and suggest the nearest one. `tests/trainers/test_catalog.py` checks that
the torchvision list matches what the installed torchvision offers.
"""

from __future__ import annotations

import difflib

TASKS = ("image-classification", "text-classification", "causal-lm")

# name -> accepted spellings (compared after lower-casing and mapping "-" and " " to "_"),
# PyTorch's class names among them (CrossEntropyLoss -> crossentropyloss).
LOSSES = {
    "cross_entropy": (
        "cross_entropy",
        "crossentropy",
        "ce",
        "cross_entropy_loss",
        "crossentropyloss",
    ),
    "focal": ("focal", "focal_loss", "focalloss"),
    "mse": ("mse", "l2", "mse_loss", "mseloss"),
    "l1": ("l1", "mae", "l1_loss", "l1loss"),
    "smooth_l1": ("smooth_l1", "smoothl1", "smooth_l1_loss", "smoothl1loss", "huber", "huberloss"),
}
OPTIMIZERS = {
    "sgd": ("sgd",),
    "adam": ("adam",),
    "adamw": ("adamw", "adam_w"),
}
SCHEDULERS = {
    "none": ("none", "constant", "off", "constantlr"),
    "step": ("step", "steplr", "step_lr"),
    "cosine": ("cosine", "cosineannealing", "cosine_annealing", "cosineannealinglr"),
    "linear": ("linear", "linear_warmup", "linear_with_warmup"),
    "plateau": ("plateau", "reduce_on_plateau", "reducelronplateau", "reduce_lr_on_plateau"),
}
DATASETS = ("digits", "reverse-digits")

# tracker -> the package its code imports (absent: not installed; the extra of the same
# name installs it, `pip install 'ftmatrix[mlflow]'`).
TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}

# torchvision.models.list_models(module=torchvision.models) for torchvision 0.29: the
# image classifiers that `source: torchvision` (or auto) accepts by name.
TORCHVISION_CLASSIFIERS = frozenset(
    [
        "alexnet",
        "convnext_base",
        "convnext_large",
        "convnext_small",
        "convnext_tiny",
        "densenet121",
        "densenet161",
        "densenet169",
        "densenet201",
        "efficientnet_b0",
        "efficientnet_b1",
        "efficientnet_b2",
        "efficientnet_b3",
        "efficientnet_b4",
        "efficientnet_b5",
        "efficientnet_b6",
        "efficientnet_b7",
        "efficientnet_v2_l",
        "efficientnet_v2_m",
        "efficientnet_v2_s",
        "googlenet",
        "inception_v3",
        "maxvit_t",
        "mnasnet0_5",
        "mnasnet0_75",
        "mnasnet1_0",
        "mnasnet1_3",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "regnet_x_16gf",
        "regnet_x_1_6gf",
        "regnet_x_32gf",
        "regnet_x_3_2gf",
        "regnet_x_400mf",
        "regnet_x_800mf",
        "regnet_x_8gf",
        "regnet_y_128gf",
        "regnet_y_16gf",
        "regnet_y_1_6gf",
        "regnet_y_32gf",
        "regnet_y_3_2gf",
        "regnet_y_400mf",
        "regnet_y_800mf",
        "regnet_y_8gf",
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "resnext50_32x4d",
        "shufflenet_v2_x0_5",
        "shufflenet_v2_x1_0",
        "shufflenet_v2_x1_5",
        "shufflenet_v2_x2_0",
        "squeezenet1_0",
        "squeezenet1_1",
        "swin_b",
        "swin_s",
        "swin_t",
        "swin_v2_b",
        "swin_v2_s",
        "swin_v2_t",
        "vgg11",
        "vgg11_bn",
        "vgg13",
        "vgg13_bn",
        "vgg16",
        "vgg16_bn",
        "vgg19",
        "vgg19_bn",
        "vit_b_16",
        "vit_b_32",
        "vit_h_14",
        "vit_l_16",
        "vit_l_32",
        "wide_resnet101_2",
        "wide_resnet50_2",
    ]
)


# Names users bring from other tools, for "did you mean" on job-config keys.
SYNONYMS = {
    "learning_rate": "lr",
    "lr_rate": "lr",
    "bs": "batch_size",
    "batchsize": "batch_size",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "max_epochs": "epochs",
    "epoch": "epochs",
    "optim": "optimizer",
    "opt": "optimizer",
    "criterion": "loss",
    "loss_fn": "loss",
    "lr_scheduler": "scheduler",
    "sched": "scheduler",
    "rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "wd": "weight_decay",
    "weight_decay": "weight_decay",
    "patience": "patience",
    "model_name": "name",
    "arch": "name",
    "dataset": "path",
    "image_size": "image_size",
    "img_size": "image_size",
    "max_seq_length": "max_length",
    "max_len": "max_length",
}


def suggest(word: str, candidates) -> str | None:
    """The candidate nearest to `word`, if one is near enough to be a likely typo."""
    candidates = list(candidates)
    synonym = SYNONYMS.get(str(word).lower())
    if synonym in candidates:
        return synonym
    matches = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates) -> str:
    """' (did you mean 'x'?)' or '' — appended to error messages."""
    match = suggest(word, candidates)
    return f" (did you mean '{match}'?)" if match else ""


def spelling(value: str) -> str:
    """How a name is compared: lower case, '-' and ' ' as '_'."""
    return value.strip().lower().replace("-", "_").replace(" ", "_")


def canonical(value: object, names: dict[str, tuple[str, ...]]) -> str | None:
    """The canonical name for a spelling in `names`, or None when it is unknown."""
    if not isinstance(value, str):
        return None
    key = spelling(value)
    for name, spellings in names.items():
        if key == name or key in spellings:
            return name
    return None


def did_you_mean_name(value: object, names: dict[str, tuple[str, ...]]) -> str:
    """' (did you mean 'x'?)' for an unknown name, 'x' canonical: the nearest of every
    accepted spelling (MSELos is near mseloss, so 'mse'); '' when none is near."""
    key = spelling(str(value))
    owner = {s: name for name, spellings in names.items() for s in (name, *spellings)}
    match = difflib.get_close_matches(key, list(owner), n=1, cutoff=0.6)
    return f" (did you mean '{owner[match[0]]}'?)" if match else ""

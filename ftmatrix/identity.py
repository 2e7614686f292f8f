"""Job identity: a job's id is a short hash of its normalised, fully resolved config.

Normalising drops every setting that cannot matter (LoRA rank when LoRA is off, SGD
momentum under Adam, ...), so two matrix points that mean the same training are one job;
the canonical JSON of the result is the same bytes on every machine, and its hash names
the job's folder. A change here renumbers jobs: it needs a CHANGELOG line saying why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ftmatrix import peft_methods
from ftmatrix.config import JobConfig
from ftmatrix.custom import OWN_SECTIONS

SECTIONS = ("data", "distill", "lora", "model", "output", "task", "train")  # sorted
# OWN_SECTIONS (function, params, script) are in the normal form only when set, so
# every job of the built-in trainer keeps the id it had before they existed.


def normalized(cfg: JobConfig) -> dict[str, Any]:
    """The config as plain data with every setting that cannot matter dropped.

    Two configs that mean the same training normalise to the same dict and so share a
    job id: LoRA settings when LoRA is off, SGD momentum under Adam, focal gamma under
    cross-entropy, and so on.
    """
    out = {name: normalized_section(name, getattr(cfg, name), task=cfg.task) for name in SECTIONS}
    for name in OWN_SECTIONS:
        own = normalized_own(getattr(cfg, name))
        if own is not DROP:
            out[name] = own
    return out


def normalized_own(value: Any) -> Any:
    """A section of OWN_SECTIONS as JSON data, or DROP while unset (None or empty)."""
    if value is None or value == {}:
        return DROP
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def own_fragment(name: str, normal: Any) -> str:
    """An OWN_SECTIONS slot of the planner's template: its key, value and a comma, or
    nothing while it is unset."""
    return "" if normal is DROP else f'"{name}":{canonical_json(normal)},'


def normalized_section(name: str, section: Any, *, task: str) -> Any:
    """One top-level section of `normalized`; depends only on the section and the task."""
    if name == "task" or section is None:  # data/model of a script or function job
        return section
    d = section.model_dump(mode="json")
    if name == "data":
        del d["num_workers"]  # speed only
        sft = d.pop("sft")  # task causal-lm only: no other job's id depends on it
        if task == "causal-lm":
            d = _causal_lm_data(d, sft)
        if not d["augment"]["enabled"] or task != "image-classification":
            d["augment"] = {"enabled": False}
        if task == "image-classification":
            del d["text_column"]
        if d["factory"] is None:  # data.factory and its config came later: older ids stand
            del d["factory"], d["config"]
        if d["builtin"] is not None and task != "causal-lm":
            # a bundled dataset has no columns to name
            d.pop("text_column", None)
            del d["label_column"]
    elif name == "model":
        del d["max_length" if task == "image-classification" else "image_size"]
        del d["gradient_checkpointing"]  # memory against compute: the same training
        _drop_unset_factory(d)
    elif name == "lora":
        if not d["enabled"]:
            return {"enabled": False}
        d = peft_methods.normalized_method(d)  # only what its method reads
    elif name == "distill":
        if not d["enabled"]:
            return {"enabled": False}
        _drop_unset_factory(d["teacher"])
    elif name == "output":
        del d["keep_checkpoint"]  # what is kept after the job, not what it learns
    elif name == "train":
        d = {k: normalized_train_field(k, v) for k, v in d.items()}
        d = {k: v for k, v in d.items() if v is not DROP}
    return d


def _drop_unset_factory(model: dict[str, Any] | None) -> None:
    """model.factory was added later: absent while unset, so that older ids stand."""
    if model is not None and model.get("factory") is None:
        model.pop("factory", None)


def _causal_lm_data(d: dict[str, Any], sft: dict[str, Any]) -> dict[str, Any]:
    """The data section of a causal-lm job: pairs, so no text or label column; of
    data.sft only what its source reads."""
    del d["text_column"], d["label_column"]
    if d["builtin"] is not None or sft["messages_column"] is not None:
        del sft["prompt_column"], sft["response_column"]
    if d["builtin"] != "reverse-digits":
        del sft["digits"]
    return {**d, "sft": sft}


DROP = object()  # what `normalized_train_field` returns for a field that does not matter
# Train fields added after ids were first pinned: absent from the normal form while they
# hold their default (so older ids stand), present once they change the training.
OPTIONAL_TRAIN_FIELDS = ("lr_schedule", "metrics", "test")
_SCHEDULER_KEEPS = {
    "none": (),
    "step": ("step_size", "gamma"),
    "cosine": ("warmup_fraction", "warmup_steps", "warmup_epochs"),
    "linear": ("warmup_fraction", "warmup_steps", "warmup_epochs"),
    "plateau": ("patience", "factor"),
}
_LOSS_KEEPS = {
    "cross_entropy": ("label_smoothing", "class_weights"),
    "focal": ("gamma", "alpha", "class_weights"),
    "mse": ("outputs",),
    "l1": ("outputs",),
    "smooth_l1": ("beta", "outputs"),
}
# Settings added later, kept in the normal form only away from their default (which
# reproduces what ran before they existed): (field, default).
_LATER = {"warmup_steps": 0, "warmup_epochs": 0.0, "outputs": "probabilities"}


def _kept(value: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    kept = {"name": value["name"]}
    for k in keys:
        if k not in _LATER or value[k] != _LATER[k]:
            kept[k] = value[k]
    return kept


def normalized_train_field(name: str, value: Any) -> Any:
    """One field of the normalised `train` section (JSON data in, JSON data out).

    TrainConfig has no cross-field rules, so each field normalises on its own; the
    planner relies on this to validate and hash train settings field by field.
    Returns `DROP` for a field that does not matter (log_every always; a field of
    OPTIONAL_TRAIN_FIELDS at its default).
    """
    if name == "log_every":
        return DROP  # how often progress is printed does not change what is learned
    if name == "lr_schedule" and value is None:
        return DROP
    if name == "metrics" and not value:  # no extra metric: as before train.metrics existed
        return DROP
    if name == "test":
        return _tested_epoch(value)
    if name == "optimizer":
        opt = dict(value)
        if opt["name"] == "sgd":
            del opt["betas"], opt["eps"]
            if not opt["momentum"]:
                del opt["nesterov"]
        else:
            del opt["momentum"], opt["nesterov"]
        return opt
    if name == "scheduler":
        return _kept(value, _SCHEDULER_KEEPS[value["name"]])
    if name == "loss":
        kept = _kept(value, _LOSS_KEEPS[value["name"]])
        if value.get("factory") is not None:  # your own loss (absent while unset)
            kept["factory"] = value["factory"]
        return kept
    if name == "early_stopping" and not value["enabled"]:
        return {"enabled": False}
    return value


def _tested_epoch(value: dict[str, Any]) -> Any:
    """The test rule: `last`, or `best` by a metric and mode. Best without a metric
    (early stopping's, else val_loss) is what every job did before the rule could be
    chosen: it keeps their ids."""
    if value["epoch"] == "last":
        return {"epoch": "last"}
    if value["metric"] is None:
        return DROP
    return {"epoch": "best", "metric": value["metric"], "mode": value["mode"]}


def train_fragment(name: str, normal: Any) -> str:
    """One train field's piece of the canonical JSON, as the planner's template takes
    it: the value alone, or for an OPTIONAL_TRAIN_FIELDS field its key, value and a
    comma (nothing at all while it is dropped)."""
    if normal is DROP:
        return ""
    text = canonical_json(normal)
    return f'"{name}":{text},' if name in OPTIONAL_TRAIN_FIELDS else text


def canonical_json(data: Any) -> str:
    """Sorted-key compact JSON: the same data gives the same bytes on every machine."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def job_id(cfg: JobConfig) -> str:
    """Short stable hash of the normalised config: the job's folder name."""
    return hash_id(canonical_json(normalized(cfg)))


ID_LENGTH = 12  # hex digits: 48 bits, collision-free in practice for 10^5 jobs


def hash_id(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:ID_LENGTH]

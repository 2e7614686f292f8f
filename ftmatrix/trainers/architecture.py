"""Pre-flight checks that need a model's architecture, before the first job starts.

The runner never imports torch: `ftmatrix run` starts this module as its own process,
`python -m ftmatrix.trainers.architecture`, with one JSON job config per distinct
model on stdin, and reads back, per config, the (dotted key, message) problems a job
would otherwise meet only after importing torch and loading its data:

- keys inside `model.config` that the model's config class does not have (a typo there
  would silently build the default, full-size model);
- `lora.target_modules` the model does not have;
- an image size smaller than the model's patch;
- a model that cannot be built from its config at all (inconsistent sizes, an unknown
  model type).

Each model is built exactly as its job builds it, but on the meta device: no weights
are downloaded or allocated. A pretrained Hugging Face model needs its config.json (a
few kB, cached as the job would cache it); when that cannot be had, its checks are
skipped and the job reports what it finds.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

from ftmatrix import catalog
from ftmatrix.config import JobConfig

Problems = list[tuple[str, str]]


def check(cfg: JobConfig) -> Problems:
    """The problems of one job config's model (empty when it builds and fits)."""
    import torch

    from ftmatrix.trainers import lora, models

    spec = cfg.model
    if spec.source == "hf" and spec.pretrained and not _config_available(spec.name):
        return []
    # the architecture without its weights: the same code path as the job
    empty = cfg.model_copy(update={"model": spec.model_copy(update={"pretrained": False})})
    try:
        with torch.device("meta"):
            built = models.build(empty, num_classes=2)
    except (models.ConfigError, ValueError, TypeError, KeyError, OSError) as err:
        return [("model", f"{spec.name} cannot be built from its config: {err}")]
    except (RuntimeError, NotImplementedError):
        return []  # an operation the meta device lacks: the job will tell
    problems: Problems = []
    config = getattr(built.model, "config", None)
    if config is not None:
        problems += _unknown_keys(spec.config, config)
        problems += _patch(cfg, config)
    if cfg.lora.enabled:
        try:
            lora.resolve_targets(built.model, cfg.lora.target_modules, head=built.head)
        except models.ConfigError as err:
            problems.append(("lora.target_modules", str(err).removeprefix("lora.target_modules ")))
    return problems


def _config_available(name: str) -> bool:
    """Whether the model's config can be read (from the cache, or fetched: config.json
    only, which the job would fetch anyway)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return False
    return True


def _unknown_keys(overrides: dict[str, Any], config) -> Problems:
    """Keys of `model.config` that the config class neither defines nor takes."""
    cls = type(config)
    known = set(cls().to_dict()) | set(inspect.signature(cls.__init__).parameters)
    known |= set(getattr(cls, "attribute_map", {}))
    known.add("model_type")  # ftmatrix's own: which config class to build
    problems = []
    for key in overrides:
        if key not in known:
            hint = catalog.did_you_mean(key, sorted(known))
            problems.append(
                (
                    f"model.config.{key}",
                    f"a {config.model_type} config has no key '{key}'{hint}: it would be "
                    "ignored and the default used",
                )
            )
    return problems


def _patch(cfg: JobConfig, config) -> Problems:
    if cfg.task != "image-classification":
        return []
    patch = getattr(config, "patch_size", None)
    patch = max(patch) if isinstance(patch, list | tuple) else patch
    if isinstance(patch, int) and cfg.model.image_size < patch:
        return [
            (
                "model.image_size",
                f"{cfg.model.image_size} is smaller than one {patch}x{patch} patch of "
                f"{cfg.model.name}: the image would have no patches",
            )
        ]
    return []


def main() -> int:
    """stdin: a JSON list of job configs; stdout: a JSON list of problem lists."""
    configs = json.load(sys.stdin)
    found = [check(JobConfig.model_validate(c)) for c in configs]
    json.dump(found, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

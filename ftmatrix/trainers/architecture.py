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
  model type);
- pretrained weights that cannot be had: not cached and no network (or
  HF_HUB_OFFLINE=1), a hub id that does not exist, a gated model. Checked once per
  model, so that a study without them stops before its first job instead of failing
  every job one after another.

Each model is built exactly as its job builds it, but on the meta device: no weights
are downloaded or allocated. A pretrained Hugging Face model needs its config.json (a
few kB, cached as the job would cache it); whether its weights can be had is asked of
the cache first, then of the hub (a HEAD request, nothing downloaded); a torchvision
model's weights file of the torch hub cache, then of its URL.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ftmatrix import catalog
from ftmatrix.config import JobConfig

Problems = list[tuple[str, str]]


def check(cfg: JobConfig) -> Problems:
    """The problems of one job config's model (empty when it builds and fits)."""
    import torch

    from ftmatrix.trainers import lora, models, peft_methods, sft_data

    spec = cfg.model
    if spec.pretrained:
        missing = weights_problem(spec.source, spec.name)
        if missing:
            return [("model.name", f"{spec.name}: pretrained weights cannot be had: {missing}")]
    if spec.source == "hf" and spec.pretrained and not _config_available(spec.name):
        return []
    # the architecture without its weights: the same code path as the job (unquantised:
    # bitsandbytes layers are nn.Linear subclasses with the same names)
    empty = cfg.model_copy(
        update={
            "model": spec.model_copy(update={"pretrained": False}),
            "lora": cfg.lora.model_copy(update={"quantize": "none"}),
        }
    )
    try:
        with torch.device("meta"):
            if cfg.task == "causal-lm":  # a language model, no classification head
                built = models.Built(sft_data.build_for_check(empty), "hf", (), (), "")
            else:
                built = models.build(empty, num_classes=2)
    except (models.ConfigError, ValueError, TypeError, KeyError, OSError) as err:
        return [("model", f"{spec.name} cannot be built from its config: {err}")]
    except (RuntimeError, NotImplementedError):
        return []  # an operation the meta device lacks: the job will tell
    problems: Problems = peft_methods.refusals(cfg)  # methods the model or machine refuse
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


# --------------------------------------------------------------- pretrained weights

WEIGHTS_FILES = (  # what from_pretrained loads, one of them
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
PROBE_TIMEOUT = 15  # seconds for asking the hub or a weights URL
_asked: dict[tuple[str, str], str | None] = {}  # (source, name) -> problem: once per model


def weights_problem(source: str, name: str) -> str | None:
    """Why a model's pretrained weights cannot be had, or None when they can."""
    key = (source, name)
    if key not in _asked:
        _asked[key] = _hf_weights(name) if source == "hf" else _torchvision_weights(name)
    return _asked[key]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hf_weights(name: str) -> str | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
    )

    local = Path(name).expanduser()
    if local.is_dir():
        if any((local / f).is_file() for f in WEIGHTS_FILES):
            return None
        return f"the folder {local} holds none of {', '.join(WEIGHTS_FILES)}"
    try:
        if any(isinstance(try_to_load_from_cache(name, f), str) for f in WEIGHTS_FILES):
            return None
    except HFValidationError as err:
        return f"not a Hugging Face model id ({err})"
    if offline():
        return (
            "they are not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
            "downloading them (download them once with network, or set pretrained: false)"
        )
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=PROBE_TIMEOUT)
    except GatedRepoError:
        return (
            "a gated model: accept its terms on huggingface.co and log in "
            "(`hf auth login`, or HF_TOKEN)"
        )
    except RepositoryNotFoundError:
        return "no such model on the Hugging Face hub (check the id; a private one needs a token)"
    except Exception as err:  # no network, a proxy, a timeout: the download would fail too
        return f"the Hugging Face hub cannot be reached ({_first_line(err)})"
    return None


def _torchvision_weights(name: str) -> str | None:
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if cached.is_file():
        return None
    reason = probe(url)
    if reason is None:
        return None
    return f"{cached.name} is not in {cached.parent} and cannot be downloaded ({reason})"


def probe(url: str) -> str | None:
    """Why `url` cannot be fetched (a HEAD request), or None when it can."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT
        ):
            return None
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code} from {url}"
    except (OSError, ValueError) as err:  # URLError, timeouts, refused connections
        return f"{url}: {_first_line(getattr(err, 'reason', err))}"


def _first_line(err: object) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


# ------------------------------------------------------------------ config checks


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


def check_all(payload: str) -> list[Problems]:
    """A JSON list of job configs -> each one's problems. Run here by `main`, or in a
    child of a server that imported torch already (the runner's fork server, the warm
    server): the same answer."""
    return [check(JobConfig.model_validate(c)) for c in json.loads(payload)]


def main() -> int:
    """stdin: a JSON list of job configs; stdout: a JSON list of problem lists."""
    json.dump(check_all(sys.stdin.read()), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

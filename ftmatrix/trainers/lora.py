"""LoRA through peft, with the module names users know mapped to the model in hand.

transformers 5 renamed ViT's attention projections to q_proj/k_proj/v_proj/o_proj;
BERT still calls them query/key/value. A user who writes `query, value` gets whichever
the model has; when nothing matches, the error lists the layers it does have.
"""

from __future__ import annotations

from torch import nn

from ftmatrix.config import LoraConfig
from ftmatrix.trainers.models import ConfigError

# familiar name -> other spellings of the same layer across architectures
ALIASES = {
    "query": ("q_proj", "q", "q_lin", "query_proj"),
    "key": ("k_proj", "k", "k_lin", "key_proj"),
    "value": ("v_proj", "v", "v_lin", "value_proj"),
    "q_proj": ("query", "q", "q_lin"),
    "k_proj": ("key", "k", "k_lin"),
    "v_proj": ("value", "v", "v_lin"),
    "o_proj": ("out_proj", "o", "out_lin"),
    "out_proj": ("o_proj", "o", "out_lin"),
    "dense": ("o_proj", "out_proj"),
}
ADAPTABLE = (nn.Linear, nn.Conv2d)


def layer_names(model: nn.Module) -> list[str]:
    """Leaf names of the layers LoRA can adapt (Linear and Conv2d), sorted."""
    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, ADAPTABLE)}
    )


def resolve_targets(model: nn.Module, wanted: list[str], *, head: str) -> list[str]:
    """The model's own names for the requested layers (the head excluded)."""
    available = {
        name.rsplit(".", 1)[-1]
        for name, m in model.named_modules()
        if isinstance(m, ADAPTABLE) and not name.startswith(head + ".") and name != head
    }
    found: list[str] = []
    missing = []
    for name in wanted:
        options = (name, *ALIASES.get(name, ()))
        match = next((o for o in options if o in available), None)
        if match is None:
            missing.append(name)
        elif match not in found:
            found.append(match)
    if missing:
        raise ConfigError(
            f"lora.target_modules {missing} match no layer of this model; its adaptable "
            f"layers are: {', '.join(sorted(available))}"
        )
    return found


def wrap(model: nn.Module, spec: LoraConfig, *, head: str) -> nn.Module:
    """The model with LoRA adapters; the head (or modules_to_save) trains in full."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = resolve_targets(model, spec.target_modules, head=head)
    config = PeftLoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        bias=spec.bias,
        modules_to_save=spec.modules_to_save if spec.modules_to_save is not None else [head],
    )
    return get_peft_model(model, config)

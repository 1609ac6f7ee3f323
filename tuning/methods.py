"""PEFT method registry: one method = a name, its help, and a builder from the recipe. Closed and loud.

Later recipes add methods here (QLoRA, IA3, prompt tuning...). Unknown or duplicate names are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from retrieval.errors import ConfigError


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    build: Callable  # (recipe) -> peft.PeftConfig
    quantization: str | None = None  # "nf4": the frozen base is loaded 4-bit (bitsandbytes) while training


_REGISTRY: dict[str, Method] = {}


def register(name: str, help: str, quantization: str | None = None):
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"PEFT method {name!r} registered twice")
        _REGISTRY[name] = Method(name, help, fn, quantization)
        return fn
    return deco


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown PEFT method {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def available() -> list[str]:
    return sorted(_REGISTRY)


def _lora_kwargs(recipe) -> dict:
    return dict(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                target_modules=recipe.target_modules, bias="none", task_type="CAUSAL_LM")


@register("qlora", "LoRA over a 4-bit NF4 base (Dettmers et al., 2023): ~3x less base memory; the adapter it "
                   "saves loads onto the unquantised base like any LoRA.", quantization="nf4")
@register("lora", "Low-rank adapters on the chosen linear layers (Hu et al., 2021).")
def _lora(recipe):
    from peft import LoraConfig

    return LoraConfig(**_lora_kwargs(recipe))


@register("dora", "Weight-decomposed LoRA: magnitude + direction (Liu et al., 2024); slower, often better.")
def _dora(recipe):
    from peft import LoraConfig

    return LoraConfig(**_lora_kwargs(recipe), use_dora=True)

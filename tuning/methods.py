"""Fine-tuning method registry: one method = a name, its help, its own typed parameters, and a builder.

    method = get_method("ia3"); params = method.parse(recipe.params); peft_config = method.build(params, base)

Each method validates its own parameters (`params` in a recipe), so adding a method adds a small typed config
instead of growing one flat recipe. `build` returns a PEFT config, or None for full fine-tuning (every weight
trains; the artifact is a whole checkpoint). Unknown methods, unknown parameters and duplicate names are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrieval.errors import ConfigError
from retrieval.registry import Registry


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraParams(MethodParams):
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="layers to adapt")


class IA3Params(MethodParams):
    target_modules: list[str] = Field(["k_proj", "v_proj", "down_proj"], description="activations to rescale")
    feedforward_modules: list[str] = Field(["down_proj"], description="of those, the feed-forward ones (input "
                                                                       "side is rescaled)")


class PromptParams(MethodParams):
    num_virtual_tokens: int = Field(16, ge=1, le=512, description="soft prompt length")
    init_text: str | None = Field(None, description="initialise the soft prompt from this text's embeddings")


class PrefixParams(MethodParams):
    num_virtual_tokens: int = Field(16, ge=1, le=512, description="prefix length (keys and values per layer)")


class BottleneckParams(MethodParams):
    r: int = Field(16, ge=1, description="bottleneck size (hidden -> r -> hidden)")
    nonlinearity: Literal["relu", "gelu", "silu", "tanh"] = "gelu"
    positions: list[Literal["mlp", "attn"]] = Field(["mlp"], min_length=1, description="after each layer's MLP "
                                                    "(Pfeiffer placement); [\"attn\", \"mlp\"]: Houlsby's two sites")
    layers: list[int] | None = Field(None, description="decoder layer indices to adapt (default: all)")


class FullParams(MethodParams):
    train_embeddings: bool = Field(False, description="also train the (tied) embeddings; off keeps the "
                                                      "vocabulary's geometry, and the artifact is the same size")


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    params: type[MethodParams]
    build: Callable  # (params, base_dir) -> peft.PeftConfig | None
    quantization: str | None = None  # "nf4": the frozen base is loaded 4-bit (bitsandbytes) while training
    kind: str = "adapter"  # tuning.kinds: adapter (a PEFT folder) | bottleneck | full (a checkpoint)

    def parse(self, params: dict) -> MethodParams:
        try:
            return self.params(**params)
        except ValidationError as e:
            first = e.errors()[0]
            raise ConfigError(f"method {self.name!r}: params.{'.'.join(map(str, first['loc']))}: {first['msg']} "
                              f"(its parameters: {', '.join(self.params.model_fields)})") from None


_REGISTRY: Registry[Method] = Registry("PEFT method")


def register(name: str, help: str, params: type[MethodParams], quantization: str | None = None,
             kind: str = "adapter"):
    def deco(fn: Callable) -> Callable:
        _REGISTRY.add(name, Method(name, help, params, fn, quantization, kind))
        return fn
    return deco


def get_method(name: str) -> Method:
    return _REGISTRY.lookup(name)


def available() -> list[str]:
    return _REGISTRY.names()


def _lora_kwargs(p: LoraParams) -> dict:
    return dict(r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=p.target_modules, bias="none",
                task_type="CAUSAL_LM")


@register("qlora", "LoRA over a 4-bit NF4 base (Dettmers et al., 2023): ~3x less base memory; the adapter it "
                   "saves loads onto the unquantised base like any LoRA.", LoraParams, quantization="nf4")
@register("lora", "Low-rank adapters on the chosen linear layers (Hu et al., 2021).", LoraParams)
def _lora(p: LoraParams, base_dir=None):
    from peft import LoraConfig

    return LoraConfig(**_lora_kwargs(p))


@register("dora", "Weight-decomposed LoRA: magnitude + direction (Liu et al., 2024); slower, often better.",
          LoraParams)
def _dora(p: LoraParams, base_dir=None):
    from peft import LoraConfig

    return LoraConfig(**_lora_kwargs(p), use_dora=True)


@register("ia3", "IA3 (Liu et al., 2022): learned rescaling vectors on keys, values and the feed-forward input; "
                 "the smallest adapters (tens of thousands of parameters).", IA3Params)
def _ia3(p: IA3Params, base_dir=None):
    from peft import IA3Config

    return IA3Config(target_modules=p.target_modules, feedforward_modules=p.feedforward_modules,
                     task_type="CAUSAL_LM")


@register("prompt", "Soft prompt tuning (Lester et al., 2021): trainable virtual tokens before the input; the "
                    "model's weights stay untouched.", PromptParams)
def _prompt(p: PromptParams, base_dir=None):
    from peft import PromptTuningConfig

    kw = dict(num_virtual_tokens=p.num_virtual_tokens, task_type="CAUSAL_LM")
    if p.init_text:
        kw.update(prompt_tuning_init="TEXT", prompt_tuning_init_text=p.init_text,
                  tokenizer_name_or_path=str(base_dir))
    return PromptTuningConfig(**kw)


@register("prefix", "Prefix tuning (Li and Liang, 2021): trainable keys and values prepended at every layer.",
          PrefixParams)
def _prefix(p: PrefixParams, base_dir=None):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=p.num_virtual_tokens, task_type="CAUSAL_LM")


@register("adapter", "Bottleneck adapters (Houlsby et al., 2019): a small down-projection, nonlinearity and "
                    "zero-initialised up-projection added to each decoder layer's MLP output (tuning/bottleneck.py; "
                    "PEFT has none). Served by the transformers backend.", BottleneckParams, kind="bottleneck")
def _bottleneck(p: BottleneckParams, base_dir=None):
    return None  # not a PEFT config: tuning.artifact installs the blocks with tuning.bottleneck.install


@register("full", "Full fine-tuning: every weight (embeddings optional); the artifact is a whole checkpoint, served "
                  "as models.llm, not as an adapter.", FullParams, kind="full")
def _full(p: FullParams, base_dir=None):
    return None

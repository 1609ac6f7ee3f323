"""Each backend's own options, typed (pydantic), under its name in `models` (`models.llamacpp`, `models.batched`,
`models.remote` for the `openai` backend). Imports pydantic only, so config validation loads no runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteConfig(_Strict):
    """`models.backend: openai`: generation on an OpenAI-compatible server (vLLM, SGLang, llama.cpp's servers).
    Everything else (guard, router, retrieval, grounding, memory, checks) stays in Eterna."""

    base_url: AnyHttpUrl = Field(description="the server's OpenAI API root, e.g. http://127.0.0.1:8001/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the server's API key (null: "
                                                      "none; the key itself never goes in a config file)")
    model: str = Field(min_length=1, description="the served base model's name (what the server's /v1/models lists)")
    adapters: dict[str, str | int] = Field(
        default_factory=dict, description="character id -> its adapter as the server names it: the served LoRA "
                                          "name (lora_mode: model) or the adapter's index (lora_mode: lora_field)")
    lora_mode: Literal["model", "lora_field"] = Field(
        "model", description="model: the adapter's name is the request's `model` (vLLM --lora-modules, SGLang, "
                             "llama_cpp.server); lora_field: the request's `lora: [{id, scale}]` (llama-server)")
    api: Literal["completions", "chat"] = Field(
        "completions", description="completions: Eterna renders the chat template with models.llm's tokenizer (the "
                                   "prompt the adapters were trained on, token for token); chat: the server applies "
                                   "its own template")
    timeout_s: float = Field(60.0, gt=0, le=3600, description="time limit of one request (connect and each read)")
    retries: int = Field(2, ge=0, le=10, description="retries of a request that timed out, was refused or got a "
                                                     "5xx/429, with backoff; then the turn fails (503)")
    retry_after_s: int = Field(2, ge=1, le=600, description="Retry-After of the 503 a failed turn gets")

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, v):
        for npc, name in v.items():
            if isinstance(name, str) and not name.strip():
                raise ValueError(f"adapters.{npc}: empty adapter name")
        return v

    @model_validator(mode="after")
    def _mode(self):
        bad = [k for k, v in self.adapters.items() if (self.lora_mode == "lora_field") != isinstance(v, int)]
        if bad:
            want = "an integer adapter index" if self.lora_mode == "lora_field" else "a served LoRA name"
            raise ValueError(f"adapters.{bad[0]}: lora_mode is {self.lora_mode}, so each adapter is {want}")
        return self


class BackendOptions(_Strict):
    """One backend's own options, under its registry name in `models` (e.g. `models.batched.max_batch`)."""


class LlamaCppOptions(BackendOptions):
    gguf: Path | None = Field(None, description="the GGUF of models.llm (builtins know their own); `auto` takes "
                                                "llama.cpp only for a model with a GGUF")
    state_cache_mb: float = Field(128, ge=0, description="RAM for each conversation's last prompt state, so its next "
                                                         "turn evaluates only the new lines (about 22 KB per token "
                                                         "with the default model; 0: off)")
    probe_timeout_s: float = Field(120.0, gt=0, le=3600, description="time limit of each startup probe child (it "
                                   "loads the GGUF and decodes a few tokens with a candidate configuration before the "
                                   "engine's own process uses it); a child past it is killed")


class BatchedOptions(BackendOptions):
    max_batch: int = Field(8, ge=1, le=256, description="most sessions decoded together")
    batch_window_ms: float = Field(5.0, ge=0, le=1000, description="how long the first request of a batch waits for "
                                                                   "others to join it")

"""The `openai` backend: generation on any OpenAI-compatible server (vLLM, SGLang, llama.cpp's servers).

Only generation leaves the process: the guard, router, retrieval, grounding, memory and every check stay in
Eterna, and so does the tokenizer (models.llm's), which counts the prompt budget and, with `api: completions`,
renders the chat template, so the server sees the prompt the adapters were trained on, token for token. A
character's adapter is addressed the way the server expects it (`lora_mode`): its served LoRA name as the request's
`model`, or a per-request `lora: [{id, scale}]`.

Passed through: max tokens, temperature, top_p, seed, stop, the repetition penalty (as `repetition_penalty` and
`repeat_penalty`, the names vLLM/SGLang and llama.cpp read), and the copy bias of grounded decoding (as
`logit_bias` on the evidence's token ids). What no OpenAI server can do (the n-gram ban; a penalty over the reply's
tokens only) is named once in the log at start, never dropped silently.

Failures (timeouts, refused connections, 5xx, 429) are retried by the `openai` client with backoff, `retries`
times; then the turn raises `RemoteBackendError` (the HTTP server answers 503 with Retry-After) and nothing of the
turn is remembered. A reply that is not valid JSON, or a stream that ends without a finish, is the same typed error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from app.config import EternaConfig, GenerationConfig, RemoteConfig
from app.backends import Generation
from app.backends.decoding import Decoding, as_decoding, copy_token_ids, finish_text, last_generation
from retrieval.errors import ConfigError, EternaError
from tuning.adapters import check_base, read_adapter_manifest
from tuning.base import model_fingerprint

log = logging.getLogger("eterna.remote")

_WARNED: set[tuple[str, str]] = set()  # (server, setting) already named in this process


class RemoteBackendError(EternaError):
    """The generation server failed the turn (down, timing out, 5xx after the retries, or an invalid reply)."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


def _warn_once(server: str, setting: str, why: str) -> None:
    if (server, setting) not in _WARNED:
        _WARNED.add((server, setting))
        log.warning("models.backend openai (%s): %s is not sent: %s", server, setting, why)


def unsupported(config: EternaConfig) -> dict[str, str]:
    """The configured decoding settings an OpenAI-compatible server cannot apply: {setting: why}."""
    g, gr = config.generation, config.grounding
    out = {}
    if g.no_repeat_ngram:
        out["generation.no_repeat_ngram"] = "no OpenAI-compatible server bans repeated n-grams of the reply"
    if gr.repetition_penalty != 1.0 and gr.penalty_over == "generated":
        out["grounding.penalty_over: generated"] = ("the servers' repetition penalty also covers the prompt; fact "
                                                    "turns are sent without it")
    return out


def check_cast_adapters(remote: RemoteConfig, cast_ids: list[str], where: str = "models.remote.adapters") -> None:
    """Every mapped adapter names a character of the cast (a typo would leave a character on the bare base)."""
    unknown = sorted(set(remote.adapters) - set(cast_ids) - {"grounding"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: no such character in the cast (the cast has: "
                          f"{', '.join(sorted(cast_ids))}); map each served adapter to a character id")


class RemoteBackend:
    """`GenerationBackend` over an OpenAI-compatible HTTP API (one shared client: thread-safe, pooled)."""

    name = "openai"

    def __init__(self, remote: RemoteConfig, model_dir: Path, *, api_key: str | None = None,
                 skipped: dict[str, str] | None = None):
        import openai
        from transformers import AutoTokenizer

        self.remote, self.model_dir = remote, Path(model_dir)
        self.base_url = str(remote.base_url).rstrip("/")
        self.fingerprint = model_fingerprint(self.model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.special_tokens = tuple(sorted((t for t in self.tokenizer.all_special_tokens if t), key=len,
                                           reverse=True))
        self.adapters: dict[str, Path] = {}
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "none", timeout=remote.timeout_s,
                                    max_retries=remote.retries)
        for setting, why in (skipped or {}).items():
            _warn_once(self.base_url, setting, why)

    # --- adapters ----------------------------------------------------------------------------------------------
    def add_adapter(self, name: str, path: Path) -> None:
        """Record a character's adapter: the server must serve it under the name `models.remote.adapters` maps the
        character to (checked against the adapter's base here, as every backend does)."""
        path = Path(path)
        if self.adapters.get(name) == path:
            return
        check_base(read_adapter_manifest(path), path, self.fingerprint)
        if self._served(name) is None:
            npc = name.split("#", 1)[0]
            raise ConfigError(f"models.remote.adapters: character {npc!r} has an adapter ({path}) but no served "
                              f"adapter is mapped to it; add `{npc}: <the server's name for it>` (see `eterna "
                              f"adapters export`), or serve without adapters (--no-adapters)")
        self.adapters[name] = path

    def _served(self, name: str | None) -> str | int | None:
        return None if name is None else self.remote.adapters.get(name.split("#", 1)[0])

    # --- tokens --------------------------------------------------------------------------------------------------
    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"])

    def copy_token_ids(self, text: str) -> list[int]:
        return copy_token_ids(self.tokenizer, text)  # same tokenizer, same rule as the local backends

    # --- requests ------------------------------------------------------------------------------------------------
    def _request(self, messages: list[dict], cfg: Decoding, adapter: str | None) -> tuple[str, dict]:
        """(the endpoint, the request body) of one reply."""
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(adapter)
        served = self._served(adapter)
        body: dict = {"model": self.remote.model, "max_tokens": cfg.max_new_tokens, "stream": True,
                      "temperature": cfg.temperature, "seed": cfg.seed}
        if cfg.temperature > 0:
            body["top_p"] = cfg.top_p
        extra: dict = {}  # fields beyond OpenAI's own (vLLM, SGLang and llama.cpp read them)
        if self.remote.lora_mode == "model":
            body["model"] = served if served is not None else self.remote.model
        else:  # llama-server: loaded with --lora-init-without-apply, so an unlisted adapter has scale 0
            extra["lora"] = [{"id": served, "scale": 1.0}] if served is not None else []
        penalty = cfg.repetition_penalty
        if penalty != 1.0 and cfg.penalty_scope == "generated":
            _warn_once(self.base_url, "grounding.penalty_over: generated", "the servers' repetition penalty also "
                       "covers the prompt; fact turns are sent without it")
            penalty = 1.0
        # always sent, 1.0 included: llama.cpp's servers otherwise apply their own default penalty (1.1)
        extra.update(repetition_penalty=penalty, repeat_penalty=penalty)
        if cfg.no_repeat_ngram:
            _warn_once(self.base_url, "generation.no_repeat_ngram", "no OpenAI-compatible server bans repeated "
                       "n-grams of the reply")
        if cfg.copy_bias and cfg.copy_text:
            body["logit_bias"] = {str(i): cfg.copy_bias for i in self.copy_token_ids(cfg.copy_text)}
        body["extra_body"] = extra
        if self.remote.api == "completions":
            body["prompt"] = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            if self.tokenizer.eos_token:
                body["stop"] = [self.tokenizer.eos_token]
            return "completions", body
        body["messages"] = messages
        return "chat", body

    def cache_report(self) -> None:
        """The prompt caches are the server's (its own /metrics or /slots say what they hold)."""
        return None

    def close(self) -> None:
        """Close the HTTP connection pool; idempotent."""
        self.client.close()

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation:
        return last_generation(self.stream(messages, cfg, adapter))

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        import httpx
        import openai

        cfg = as_decoding(cfg)
        endpoint, body = self._request(messages, cfg, adapter)
        n_prompt = self.count_tokens(messages)
        create = self.client.completions.create if endpoint == "completions" else self.client.chat.completions.create
        t0 = time.perf_counter()
        parts: list[str] = []
        finish, usage = None, None
        where = f"the generation server {self.base_url} (model {body['model']!r})"
        try:
            stream = create(**body)
        except openai.APIStatusError as e:
            raise RemoteBackendError(f"{where} answered {e.status_code} after {self.remote.retries} retries: "
                                     f"{_short(e.message)}", self.remote.retry_after_s) from e
        except (openai.APIError, ValueError) as e:  # connection refused, timeout, a reply that is not JSON
            raise RemoteBackendError(f"{where} failed after {self.remote.retries} retries: {_short(e)}",
                                     self.remote.retry_after_s) from e
        try:
            for chunk in stream:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = choice.text if endpoint == "completions" else (choice.delta.content or "")
                if piece:
                    parts.append(piece)
                    yield piece
                finish = choice.finish_reason or finish
        except (openai.APIError, httpx.HTTPError, ValueError, AttributeError, KeyError, TypeError) as e:
            # the connection dropped mid-reply, or a chunk that is not an OpenAI chunk
            raise RemoteBackendError(f"{where} broke off mid-reply: {_short(e)}", self.remote.retry_after_s) from e
        finally:
            stream.close()
        if finish is None:
            raise RemoteBackendError(f"{where} ended its stream without finishing the reply (empty or cut stream)",
                                     self.remote.retry_after_s)
        text = "".join(parts)
        new = usage.completion_tokens if usage is not None and usage.completion_tokens else \
            len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if finish == "length":
            new = max(new, cfg.max_new_tokens)  # cut off mid-thought: end on a whole sentence
        yield Generation(text=finish_text(text, new, cfg.max_new_tokens), prompt_tokens=n_prompt, new_tokens=new,
                         seconds=time.perf_counter() - t0)


def _short(e: object, limit: int = 300) -> str:
    s = " ".join(str(e).split())
    return s if len(s) <= limit else s[:limit] + "..."


def build(*, model_dir: Path, config: EternaConfig | None = None, **_) -> RemoteBackend:
    remote = config.models.remote if config is not None else None
    if remote is None:
        raise ConfigError("models.backend is openai but models.remote is not set: add models.remote: {base_url, "
                          "model} (see docs/serving.md)")
    key = None
    if remote.api_key_env:
        key = os.environ.get(remote.api_key_env)
        if not key:
            raise ConfigError(f"models.remote.api_key_env: the environment variable {remote.api_key_env} is not set "
                              f"(it holds the generation server's API key)")
    return RemoteBackend(remote, model_dir, api_key=key, skipped=unsupported(config))

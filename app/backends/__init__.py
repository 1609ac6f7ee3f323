"""Generation backends: the seam between the engine and a model runtime.

A backend holds one base model and the characters' adapters, and speaks the `GenerationBackend` protocol: count
tokens, generate or stream a reply with an adapter selected per turn, the model's control tokens. Decoding (the
penalties, the copy bias, the n-gram bans, sampling, the token-to-text stream) is written once, in
`app/backends/decoding.py`, and every backend applies it.

The registry below is the only list of backend names: config validation, the CLI's choices and the A/B harness read
it. Its entries are "module:factory" strings, imported on first use, so listing the names loads neither torch nor
llama.cpp. A new backend is one module here plus one line in `BACKENDS` (or `register_backend` from outside).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from retrieval.registry import Registry

if TYPE_CHECKING:
    from app.backends.decoding import Decoding
    from app.config import GenerationConfig


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


@runtime_checkable
class GenerationBackend(Protocol):
    """What the engine needs from a model runtime. `adapter=None` speaks with the bare base model."""

    name: str
    fingerprint: str  # of the base model; adapters must have been trained on it
    special_tokens: tuple[str, ...]  # control tokens the guard removes from player text
    adapters: dict[str, Path]

    def add_adapter(self, name: str, path: Path) -> None: ...

    def count_tokens(self, messages: list[dict]) -> int: ...

    def copy_token_ids(self, text: str) -> list[int]:
        """The token ids grounded decoding's copy bias lifts for `text` (`decoding.copy_token_ids`)."""
        ...

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation: ...

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        """Yield text pieces as they are decoded, then the final `Generation` (whose text is the cleaned whole)."""
        ...

    def cache_report(self) -> dict | None:
        """What the backend's prompt caches hold now (`/healthz`), or None when it keeps none."""
        ...

    def close(self) -> None:
        """Free what the backend holds outside Python's reach (native model, scheduler thread); idempotent."""
        ...


# name -> "module:factory" (imported on first use) or the factory itself; each factory takes keyword arguments
# (model_dir, cache_dir, dtype, n_ctx, gguf and the backend's own options) and ignores the ones it does not use
BACKENDS: Registry[str | Callable[..., GenerationBackend]] = Registry("backend")
BACKENDS.add("transformers", "app.backends.transformers:build")
BACKENDS.add("llamacpp", "app.backends.llamacpp:build")
BACKENDS.add("batched", "app.backends.batched:build")
BACKENDS.add("openai", "app.backends.openai:build")


def register_backend(name: str, factory: str | Callable[..., GenerationBackend] | None = None):
    """Register a backend from outside this package: `register_backend("mine", "pkg.module:factory")`, or as a
    decorator of the factory. A name registered twice is an error."""
    if factory is not None:
        return BACKENDS.add(name, factory)
    return lambda fn: BACKENDS.add(name, fn)


def backend_names() -> list[str]:
    return BACKENDS.names()


def check_backend(name: str, *, auto: bool = True) -> str:
    """`name` if it is a registered backend (or "auto", which app/assemble.py resolves), else a ValueError listing the
    names (config validation turns it into an error naming the file and field)."""
    names = backend_choices() if auto else backend_names()
    if name not in names:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(names)}")
    return name


def backend_choices() -> list[str]:
    """What `models.backend` and `--backend` accept: "auto" and every registered name."""
    return ["auto", *backend_names()]


def make_backend(name: str, **kwargs) -> GenerationBackend:
    """Build a registered backend: `make_backend("llamacpp", model_dir=..., gguf=..., cache_dir=...)`."""
    factory = BACKENDS.lookup(name, where="models.backend: ")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)

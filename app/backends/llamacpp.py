"""llama.cpp backend: the shipped GGUF served by llama.cpp (llama-cpp-python), characters' LoRAs as GGUF LoRAs.

- The prompt is the same chat template as the transformers backend (the Hugging Face tokenizer of the prepared
  checkpoint renders and tokenizes it; its vocabulary is the GGUF's), fed to llama.cpp as token ids.
- Each PEFT LoRA is converted once to a GGUF LoRA (tuning/export.py), cached by the adapter's fingerprint, and
  selected per turn with `llama_set_adapters_lora`. Adapters llama.cpp cannot apply (DoRA, IA3, prompt or prefix
  tuning, bottleneck adapters) are served by a transformers backend on the same base, with a warning naming them.
- Decoding is our own loop over llama.cpp's logits with every backend's rules (`app/backends/decoding.py`), so
  grounded decoding (repetition penalty over the reply only, copy bias on the evidence's tokens) is the same as in
  transformers.
- Prompt caching: the context keeps the KV cache of the last prompt, and the KV state of each recent system prompt
  head (per adapter: a character's persona and route instructions, `Decoding.cache_prefix`; the facts and the
  rolling summary that follow it change every turn) is saved, so a turn of any recently seen character evaluates
  only what follows it (LRU of `prefix_cache` states, about 7 MB per 300 tokens here, each in its own memory
  mapping).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from app.backends import Generation
from app.backends.decoding import (Decoding, TokenPicker, control_tokens, copy_token_ids, prompt_ids,
                                   stream_token_text)
from app.backends.transformers import Fallback, OwnLoop
from app.probe import model_params, probe
from retrieval.errors import AdapterError, ModelNotFoundError
from tuning.adapters import check_base, read_adapter_manifest
from tuning.base import model_fingerprint
from tuning.export import cached_gguf_lora, lora_gguf_support

log = logging.getLogger("eterna.llamacpp")


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class NativeBackendError(RuntimeError):
    """llama.cpp cannot run on this machine (the startup probe's reason says why and how to fix it)."""


class LlamaCppBackend(OwnLoop):
    name = "llamacpp"

    def __init__(self, gguf: Path, model_dir: Path, cache_dir: Path, *, n_ctx: int = 2048, dtype: str = "float32",
                 threads: int | None = None, prefix_cache: int = 16, state_cache_mb: float = 128,
                 extra_bufts: bool | None = None, probe_timeout_s: float = 120.0):
        if not available():
            raise ModelNotFoundError("models.backend is llamacpp but llama-cpp-python is not installed; run "
                                     "`make setup` (it builds it), or set models.backend: transformers")
        from llama_cpp import Llama
        from transformers import AutoTokenizer

        self.gguf, self.model_dir, self.cache_dir = Path(gguf), Path(model_dir), Path(cache_dir)
        if not self.gguf.is_file():
            raise ModelNotFoundError(f"{self.gguf}: GGUF file not found (models.llamacpp.gguf)")
        self.dtype = dtype
        self.fingerprint = model_fingerprint(self.model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.special_tokens = control_tokens(self.tokenizer)
        n = threads or cpu_threads()
        if extra_bufts is None:  # nothing native runs in this process before a child has run it (app/probe.py)
            result = probe(self.gguf, cache_dir=self.cache_dir, timeout_s=probe_timeout_s, threads=threads)
            if not result.ok:
                raise NativeBackendError(result.reason)
            extra_bufts = bool(result.config.get("extra_bufts", True))
        self.extra_bufts = extra_bufts  # weight repacking (AMX among them)
        with model_params(extra_bufts=extra_bufts):
            self.llm = Llama(model_path=str(self.gguf), n_ctx=n_ctx, n_batch=512, n_threads=n, n_threads_batch=n,
                             verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.eos = {i for i in (self.tokenizer.eos_token_id, self.llm.token_eos()) if i is not None and i >= 0}
        self.adapters: dict[str, Path] = {}
        self._handles: dict[str, object] = {}
        self._fallback = Fallback(self.model_dir, self.dtype, log, "llama.cpp")
        self._active: str | None = None  # adapter the KV cache was computed with
        self._prefixes: OrderedDict[tuple, tuple] = OrderedDict()  # (adapter, system ids) -> (state buffer, size)
        self.prefix_cache = prefix_cache
        # (adapter, prompt ids) -> (state buffer, size): each conversation's last prompt, so its next turn, whose
        # prompt starts with this one's when the history did not move, evaluates only what is new
        self._states: OrderedDict[tuple, tuple] = OrderedDict()
        self.state_cache_bytes = int(state_cache_mb * 2**20)
        self._last: tuple | None = None  # the key of the state the context holds (kept after the last reply)
        self._from: tuple | None = None  # the kept state the current turn continues
        self.cache_stats = {"prefix_hits": 0, "prefix_saves": 0, "state_hits": 0, "state_saves": 0}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        """Free llama.cpp's model and context now (at interpreter exit its own finaliser runs too late)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()

    # --- adapters ----------------------------------------------------------------------------------------------
    def add_adapter(self, name: str, path: Path) -> None:
        import json

        import llama_cpp

        path = Path(path)
        if name in self.adapters:
            if self.adapters[name] == path:
                return  # idempotent
            raise ValueError(f"adapter name {name!r} is taken by {self.adapters[name]}")
        check_base(read_adapter_manifest(path), path, self.fingerprint)
        base_cfg = json.loads((self.model_dir / "config.json").read_text(encoding="utf-8"))
        reason = lora_gguf_support(path, base_cfg)
        if reason is None:
            gguf = cached_gguf_lora(path, self.model_dir, self.cache_dir / "gguf-lora")
            handle = llama_cpp.llama_adapter_lora_init(self.llm.model, str(gguf).encode())
            if not handle:
                raise AdapterError(f"{gguf}: llama.cpp could not load this GGUF LoRA (converted from {path})")
            self._handles[name] = handle
        else:
            self._fallback.add(name, path, reason)
        self.adapters[name] = path

    def cache_report(self) -> dict:
        """What the prompt caches hold now (both are bounded: `prefix_cache` states, `state_cache_bytes`). Read
        without the model lock, so a health check never waits for a reply (list() copies a dict in one step)."""
        prefixes, states = list(self._prefixes.values()), list(self._states.values())
        mb = lambda entries: round(sum(size for _, size in entries) / 2**20, 1)  # noqa: E731
        return {"prefix_states": len(prefixes), "prefix_states_max": self.prefix_cache, "prefix_mb": mb(prefixes),
                "conversation_states": len(states), "conversation_mb": mb(states),
                "conversation_budget_mb": round(self.state_cache_bytes / 2**20, 1), **self.cache_stats}

    def fallback_adapters(self) -> list[str]:
        return sorted(self._fallback.names)

    def _select(self, adapter: str | None) -> None:
        import llama_cpp

        if adapter is not None and adapter not in self._handles:
            raise KeyError(adapter)
        if adapter == self._active:
            return
        ctx = self.llm.ctx
        if adapter is None:
            llama_cpp.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            arr = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._handles[adapter])
            llama_cpp.llama_set_adapters_lora(ctx, arr, 1, (ctypes.c_float * 1)(1.0))
        self._active = adapter
        self.llm.n_tokens = 0  # the cached prefix was computed with other weights

    # --- tokens --------------------------------------------------------------------------------------------------
    def _system_len(self, messages: list[dict], ids: list[int], prefix: str = "") -> int:
        """How many leading tokens of `ids` to keep a prompt-cache state of: the template up to the end of `prefix`
        when the system turn starts with it, else the whole system turn (0 when there is none or it does not
        align with `ids`)."""
        if not messages or messages[0].get("role") != "system" or len(messages) < 2:
            return 0
        content = messages[0].get("content") or ""
        if prefix and content.startswith(prefix) and len(prefix) < len(content):
            rendered = self.tokenizer.apply_chat_template(messages[:1], tokenize=False)
            at = rendered.find(content)
            sys_ids = self.tokenizer(rendered[: at + len(prefix)], add_special_tokens=False)["input_ids"] \
                if at >= 0 else []
        else:
            sys_ids = self.tokenizer.apply_chat_template(messages[:1], tokenize=True, return_dict=True)["input_ids"]
        sys_ids = list(sys_ids)
        return len(sys_ids) if sys_ids and ids[: len(sys_ids)] == sys_ids and len(sys_ids) < len(ids) else 0

    def count_tokens(self, messages: list[dict]) -> int:
        return len(prompt_ids(self.tokenizer, messages))

    def copy_token_ids(self, text: str) -> list[int]:
        return copy_token_ids(self.tokenizer, text)

    # --- decoding ------------------------------------------------------------------------------------------------
    def _logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _common(self, ids: list[int]) -> int:
        return _shared(self.llm.input_ids[: self.llm.n_tokens], ids)

    def _save(self, n: int) -> tuple | None:
        """Copy the KV state of the context's first `n` tokens (all it holds) into pages of its own."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self.llm.ctx, 0)
        buf = _pages(size)
        got = llama_cpp.llama_state_seq_get_data(self.llm.ctx, buf, size, 0)
        return (buf, got) if got else None

    def _restore(self, key: tuple, entry: tuple, n: int) -> int:
        """Load a kept state whose first `n` tokens start the prompt; return `n`, or 0 if it failed."""
        import llama_cpp

        llm = self.llm
        buf, size = entry
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, -1, -1)
        toks = key[1]
        if not llama_cpp.llama_state_seq_set_data(llm.ctx, buf, size, 0):
            llm.n_tokens = 0
            return 0
        llm.input_ids[: len(toks)] = toks
        return n  # eval() drops the cells past n before it evaluates the rest

    def _best_state(self, ids: list[int], n: int) -> tuple[int, tuple | None]:
        """The kept conversation state sharing the longest start with `ids`, if longer than `n`."""
        best, best_key = n, None
        for key in self._states:
            if key[0] != self._active:
                continue
            m = _shared(key[1], ids)
            if m > best:
                best, best_key = m, key
        return best, best_key

    def _eval_prompt(self, ids: list[int], n_system: int = 0) -> None:
        llm = self.llm
        if len(ids) >= llm.n_ctx():
            raise ValueError(f"prompt of {len(ids)} tokens does not fit llama.cpp's context of {llm.n_ctx()}")
        n = self._common(ids)
        # the kept state this turn continues (it is superseded by the one kept after the reply): the context's
        # own, when this prompt goes on from it past the system turn, or one restored because another
        # conversation's turn replaced this one's in the context
        last = self._last
        self._from = last if last is not None and n > max(n_system, len(last[1]) // 2) else None
        self._last = None  # until the reply's state is kept, the context holds no kept state
        if self._states:
            m, key = self._best_state(ids, n + _MIN_GAIN)
            if key is not None:
                self._states.move_to_end(key)
                n = self._restore(key, self._states[key], m)
                if n:
                    self.cache_stats["state_hits"] += 1
                    self._from = key
        key = (self._active, tuple(ids[:n_system])) if n_system and self.prefix_cache else None
        if key is not None and n < n_system and key in self._prefixes:  # restore this system turn's KV state
            self._prefixes.move_to_end(key)
            n = self._restore(key, self._prefixes[key], n_system)
            if n:
                self.cache_stats["prefix_hits"] += 1
        llm.n_tokens = n
        if key is not None and n < n_system and key not in self._prefixes:  # evaluate it once, then keep it
            llm.eval(ids[n:n_system])
            saved = self._save(n_system)
            if saved:
                self._prefixes[key] = saved
                self.cache_stats["prefix_saves"] += 1
                while len(self._prefixes) > self.prefix_cache:
                    self._prefixes.popitem(last=False)
            n = n_system
        llm.eval(ids[n:])

    def _keep_state(self, n_prompt: int) -> None:
        """After a reply: keep the state of the prompt for the conversation's next turn, within `state_cache_bytes`,
        least recently used out first. The reply's own tokens are dropped from the context first (always): they were
        evaluated one at a time, and a one-row product rounds differently from the batched prompt evaluation, so
        keeping them would make a reply depend on what the cache held (the next prompt evaluates them in a batch)."""
        import llama_cpp

        self._last = None
        llm = self.llm
        if not n_prompt or llm.n_tokens < n_prompt:
            return
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, n_prompt, -1)
        llm.n_tokens = n_prompt  # also with no budget: the next turn goes on from the prompt, never the reply
        if self.state_cache_bytes <= 0:
            return
        key = (self._active, tuple(int(t) for t in llm.input_ids[:n_prompt]))
        saved = self._save(n_prompt)
        if not saved or saved[1] > self.state_cache_bytes:
            return
        if self._from is not None and self._from != key:
            self._states.pop(self._from, None)  # the conversation moved on
        self._states.pop(key, None)
        self._states[key] = saved
        self._last = key
        self.cache_stats["state_saves"] += 1
        while sum(size for _, size in self._states.values()) > self.state_cache_bytes:
            self._states.popitem(last=False)

    def _tokens(self, ids: list[int], cfg: Decoding, adapter: str | None, n_system: int = 0) -> Iterator[int]:
        """Yield generated token ids (holding the model lock for the whole reply)."""
        picker = TokenPicker(cfg, ids, self.copy_token_ids)
        with self._lock:
            self._select(adapter)
            self._eval_prompt(ids, n_system)
            try:
                for _ in range(cfg.max_new_tokens):
                    tok = picker.pick(self._logits())
                    if tok in self.eos:
                        return
                    picker.push(tok)
                    yield tok
                    self.llm.eval([tok])
            finally:
                self._keep_state(len(ids))

    def _stream(self, messages: list[dict], cfg: Decoding, adapter: str | None) -> Iterator[str | Generation]:
        ids = prompt_ids(self.tokenizer, messages)
        n_system = self._system_len(messages, ids, cfg.cache_prefix)
        t0 = time.perf_counter()
        yield from stream_token_text(self.tokenizer, self._tokens(ids, cfg, adapter, n_system), len(ids),
                                     cfg.max_new_tokens, lambda: time.perf_counter() - t0)


def _shared(kept, ids: list[int]) -> int:
    """How many leading tokens `kept` and the prompt `ids` share, short of the prompt's last token (always
    evaluated, for its logits)."""
    n, limit = 0, min(len(kept), len(ids) - 1)
    while n < limit and kept[n] == ids[n]:
        n += 1
    return n


_MIN_GAIN = 8  # restoring a kept state (a copy of a few MB) pays when it spares evaluating this many tokens


def _pages(size: int):
    """A zeroed byte buffer of its own anonymous memory mapping, returned to the OS when the last reference goes.

    Prefix states are megabytes each and are dropped in LRU order. From malloc they fragment the heap: glibc raises
    its mmap threshold after the first such free, so later states come from the heap and leave holes that a long
    server run never gives back (measured: RSS creeping by MBs per minute under load).
    """
    return (ctypes.c_uint8 * size).from_buffer(mmap.mmap(-1, max(size, 1)))


def build(*, model_dir: Path, gguf: Path | None = None, cache_dir: Path, dtype: str = "float32", n_ctx: int = 2048,
          state_cache_mb: float = 128, extra_bufts: bool | None = None, probe_timeout_s: float = 120.0,
          **_) -> LlamaCppBackend:
    """The registry's factory (`models.backend: llamacpp`)."""
    if gguf is None:
        raise ModelNotFoundError("models.backend is llamacpp but the model has no GGUF file: use a builtin model or "
                                 "set models.llamacpp.gguf to the GGUF of models.llm")
    return LlamaCppBackend(gguf, model_dir, cache_dir, n_ctx=n_ctx, dtype=dtype, state_cache_mb=state_cache_mb,
                           extra_bufts=extra_bufts, probe_timeout_s=probe_timeout_s)

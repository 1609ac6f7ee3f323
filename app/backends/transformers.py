"""The transformers backend (`models.backend: transformers`): the universal path (every PEFT method and bottleneck
adapters, the one training uses), and the fallback of the other backends for adapters they cannot run. Also the
backend of a character's own student checkpoint (`student_backend`).

Decoding is transformers' `generate` with one logits processor that applies `app/backends/decoding.py`'s rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from app.backends import Generation
from app.backends.decoding import (Decoding, apply_rules, as_decoding, control_tokens, copy_token_ids, finish_text,
                                   last_generation, prompt_ids)
from app.config import GenerationConfig
from retrieval.errors import AdapterError
from tuning.adapters import ADAPTER_MANIFEST, attach_adapter, use_adapter
from tuning.base import load_base, model_fingerprint
from tuning.distill import read_student_manifest


class DecodingRules:
    """transformers logits processor: `decoding.apply_rules` on each row of the scores (B, V); a row's tokens past
    `prompt_len` are its reply."""

    def __init__(self, cfg: Decoding, prompt_len: int, copy_ids: list[int]):
        import numpy as np

        self.cfg, self.prompt_len = cfg, prompt_len
        self.copy_ids = np.asarray(copy_ids, dtype=np.int64) if copy_ids else None

    def __call__(self, input_ids, scores):
        for row, ids in enumerate(input_ids.tolist()):
            reply = ids[self.prompt_len:]
            seen = reply if self.cfg.penalty_scope == "generated" else ids
            apply_rules(scores[row].numpy(), self.cfg, seen, reply, self.copy_ids)  # the same memory
        return scores


class Generator:
    """transformers backend. `adapter=None` speaks with the bare base model (adapters disabled)."""

    name = "transformers"

    def __init__(self, model_dir: Path, dtype: str = "float32", *, no_repeat_ngram: int = 0):
        self.model_dir = Path(model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.model, self.tokenizer = load_base(self.model_dir, dtype)
        self.special_tokens = control_tokens(self.tokenizer)
        self.adapters: dict[str, Path] = {}
        self._lock = threading.Lock()  # one generation at a time per model (adapter switching is global state)
        # a student checkpoint's own decoding (its manifest's `decoding`): tiny models loop without this
        self.no_repeat_ngram = no_repeat_ngram

    def add_adapter(self, name: str, path: Path) -> None:
        """Attach `path` as `name`; attaching the same adapter again is a no-op, another under a taken name an
        error (variants sharing one model name their adapters apart: see app/assemble.py)."""
        if name in self.adapters:
            if self.adapters[name] == Path(path):
                return
            raise ValueError(f"adapter name {name!r} is taken by {self.adapters[name]}")
        self.model = attach_adapter(self.model, name, path, self.fingerprint)
        self.model.eval()
        self.adapters[name] = Path(path)

    def cache_report(self) -> None:
        return None  # no prompt cache

    def close(self) -> None:
        pass  # nothing outside Python's memory

    def _encode(self, messages: list[dict]):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(prompt_ids(self.tokenizer, messages))

    def copy_token_ids(self, text: str) -> list[int]:
        return copy_token_ids(self.tokenizer, text)

    def _prepare(self, messages: list[dict], cfg: Decoding):
        from transformers import LogitsProcessorList

        enc = self._encode(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        if self.no_repeat_ngram and not cfg.no_repeat_ngram:
            cfg = replace(cfg, no_repeat_ngram=self.no_repeat_ngram)
        processors = LogitsProcessorList()
        copy = cfg.copy_bias and cfg.copy_text
        if cfg.repetition_penalty != 1.0 or copy or cfg.no_repeat_ngram:
            processors.append(DecodingRules(cfg, n_prompt, self.copy_token_ids(cfg.copy_text) if copy else []))
        kwargs = dict(max_new_tokens=cfg.max_new_tokens, repetition_penalty=1.0, logits_processor=processors,
                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return enc, n_prompt, kwargs

    def _adapter_context(self, adapter: str | None):
        """Select `adapter` (PEFT or bottleneck kind, tuning.adapters.use_adapter) for one generation."""
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(adapter)
        return use_adapter(self.model, adapter)

    def _finish(self, out, n_prompt: int, cfg: Decoding, seconds: float) -> Generation:
        new = out[0, n_prompt:]  # out: (1, n_prompt + new)
        text = finish_text(self.tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0]),
                           cfg.max_new_tokens)
        return Generation(text=text, prompt_tokens=n_prompt, new_tokens=int(new.shape[0]), seconds=seconds)

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation:
        import torch

        cfg = as_decoding(cfg)
        enc, n_prompt, kwargs = self._prepare(messages, cfg)
        with self._lock:
            ctx = self._adapter_context(adapter)
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed)
            with ctx, torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)
            seconds = time.perf_counter() - t0
        return self._finish(out, n_prompt, cfg, seconds)

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        import torch
        from transformers import TextIteratorStreamer

        cfg = as_decoding(cfg)
        enc, n_prompt, kwargs = self._prepare(messages, cfg)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def run():
            try:
                with self._lock:
                    ctx = self._adapter_context(adapter)
                    torch.manual_seed(cfg.seed)
                    with ctx, torch.inference_mode():
                        result["out"] = self.model.generate(**enc, **kwargs, streamer=streamer)
            except BaseException as e:  # re-raised in the caller's thread
                result["error"] = e
                streamer.end()

        t0 = time.perf_counter()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()
        if "error" in result:
            raise result["error"]
        yield self._finish(result["out"], n_prompt, cfg, time.perf_counter() - t0)


class Fallback:
    """The adapters another backend cannot run (it warns, naming them), served one reply at a time by a transformers
    backend on the same base, loaded on first need."""

    def __init__(self, model_dir: Path, dtype: str, log: logging.Logger, where: str):
        self.model_dir, self.dtype, self.log, self.where = Path(model_dir), dtype, log, where
        self.backend: Generator | None = None
        self.names: set[str] = set()

    def add(self, name: str, path: Path, reason: str) -> None:
        self.log.warning("adapter %r (%s) cannot run in %s: %s; it is served by the transformers backend, one reply "
                         "at a time", name, path, self.where, reason)
        if self.backend is None:
            self.backend = Generator(self.model_dir, self.dtype)
        self.backend.add_adapter(name, path)
        self.names.add(name)

    def stream(self, messages: list[dict], cfg: Decoding, adapter: str) -> Iterator[str | Generation]:
        return self.backend.stream(messages, cfg, adapter)


class OwnLoop:
    """What a backend decoding in its own loop shares (llamacpp, batched): `generate` is `stream` run to its end, and
    the adapters it cannot run stream from its `Fallback`. A subclass sets `_fallback` and writes `_stream`."""

    _fallback: Fallback

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation:
        return last_generation(self.stream(messages, cfg, adapter))

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        cfg = as_decoding(cfg)
        if adapter in self._fallback.names:
            return self._fallback.stream(messages, cfg, adapter)
        return self._stream(messages, cfg, adapter)

    def _stream(self, messages: list[dict], cfg: Decoding, adapter: str | None) -> Iterator[str | Generation]:
        raise NotImplementedError


def build(*, model_dir: Path, dtype: str = "float32", **_) -> Generator:
    """The registry's factory (`models.backend: transformers`)."""
    return Generator(model_dir, dtype)


_STUDENTS: dict[tuple, Generator] = {}
_STUDENTS_LOCK = threading.Lock()


def student_backend(path: Path, dtype: str = "float32") -> Generator:
    """The transformers backend of a character's own checkpoint (`model:` in the npcs file, built by `eterna train
    distill`): loaded on first use, then shared by every engine in the process until the checkpoint changes."""
    path = Path(path).resolve()
    try:
        stat = (path / ADAPTER_MANIFEST).stat()
    except FileNotFoundError:
        raise AdapterError(f"{path}: the character's model is gone (no {ADAPTER_MANIFEST}); rebuild it with `eterna "
                           "train distill` or remove `model:` from the npcs file") from None
    key = (str(path), dtype, stat.st_mtime_ns, stat.st_size)
    with _STUDENTS_LOCK:
        gen = _STUDENTS.get(key)
        if gen is None:
            for old in [k for k in _STUDENTS if k[:2] == key[:2]]:  # a retrained checkpoint replaces its old load
                del _STUDENTS[old]
            decoding = read_student_manifest(path).get("decoding") or {}  # older students: none
            gen = _STUDENTS[key] = Generator(path, dtype, no_repeat_ngram=decoding.get("no_repeat_ngram", 0))
    return gen

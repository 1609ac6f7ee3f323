"""Generation runtime: the backend seam, and the transformers backend.

A backend holds one base model and the characters' adapters, and speaks the `GenerationBackend` protocol: count
tokens, generate or stream a reply with an adapter selected per turn, the model's control tokens. Backends are
registered by name (`models.backend` in config); `transformers` is the universal path (every PEFT method, and the
one training uses), `llamacpp` (app/llamacpp.py) the fast CPU path.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from app.config import GenerationConfig
from retrieval.errors import AdapterError
from retrieval.registry import Registry
from tuning.adapters import ADAPTER_MANIFEST, attach_adapter, use_adapter
from tuning.base import load_base, model_fingerprint
from tuning.distill import read_student_manifest

_SENTENCE_END = re.compile(r"[.!?…](?:[\"'»)\]]*)(?=\s|$)")


def trim_to_sentence(text: str, min_keep: float = 0.4) -> str:
    """Cut a reply that ran out of tokens back to its last complete sentence, if that keeps most of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= min_keep * len(text):
        return text[: ends[-1]].rstrip()
    return text


@dataclass(frozen=True)
class Decoding:
    """Backend-neutral decoding settings for one reply.

    `penalty_scope="generated"` applies the repetition penalty to the reply's own tokens only (a penalty over the
    prompt punishes copying the evidence); `copy_text` + `copy_bias` add a logit bonus to every token of that text
    (grounded decoding: prefer the evidence's own words, names and numbers). `cache_prefix` is the start of the
    system turn that repeats across turns (persona and route instructions, before facts and summary): a backend
    with a prompt cache keeps the model state after it, so a long session's changing summary does not defeat it."""

    max_new_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 0.9
    repetition_penalty: float = 1.0
    penalty_scope: str = "all"  # all | generated
    copy_text: str = ""
    copy_bias: float = 0.0
    seed: int = 0
    cache_prefix: str = ""
    no_repeat_ngram: int = 0  # ban any token that would repeat an n-gram of the reply itself (0: off)

    @classmethod
    def from_config(cls, cfg: GenerationConfig, **overrides) -> Decoding:
        return cls(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                   repetition_penalty=cfg.repetition_penalty, seed=cfg.seed,
                   no_repeat_ngram=cfg.no_repeat_ngram, **overrides)


def banned_ngram_tokens(reply: list[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already in `reply` (the generated ids only: the prompt is not
    searched, so a reply may still quote its evidence or the voice's set phrases). One rule for every backend."""
    if n <= 0:
        return []
    if n == 1:
        return sorted(set(reply))
    head = reply[len(reply) - n + 1:]
    return sorted({reply[i + n - 1] for i in range(len(reply) - n + 1) if reply[i:i + n - 1] == head})


class GeneratedRepetitionPenalty:
    """transformers logits processor: CTRL-style repetition penalty over the tokens generated after the prompt."""

    def __init__(self, penalty: float, prompt_len: int):
        self.penalty, self.prompt_len = penalty, prompt_len

    def __call__(self, input_ids, scores):
        import torch

        gen = input_ids[:, self.prompt_len:]  # (B, t)
        if gen.shape[1] == 0:
            return scores
        picked = torch.gather(scores, 1, gen)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, gen, picked)


class GeneratedNoRepeatNGram:
    """transformers logits processor: bans any token that would repeat an n-gram of the reply itself. The prompt is
    not searched, so the reply may still quote its evidence or the voice's set phrases (transformers'
    `no_repeat_ngram_size` searches the whole sequence, prompt included, and would ban both)."""

    def __init__(self, n: int, prompt_len: int):
        self.n, self.prompt_len = n, prompt_len

    def __call__(self, input_ids, scores):
        for row, ids in enumerate(input_ids[:, self.prompt_len:].tolist()):
            banned = banned_ngram_tokens(ids, self.n)
            if banned:
                scores[row, banned] = float("-inf")
        return scores


class CopyBias:
    """transformers logits processor: + bias on the logits of a fixed set of token ids (the evidence's tokens)."""

    def __init__(self, token_ids: list[int], bias: float):
        self.ids, self.bias = sorted(set(token_ids)), bias

    def __call__(self, input_ids, scores):
        if self.ids:
            scores[:, self.ids] += self.bias
        return scores


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

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation: ...

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        """Yield text pieces as they are decoded, then the final `Generation` (whose text is the cleaned whole)."""
        ...


_BACKENDS: Registry[Callable[..., GenerationBackend]] = Registry("backend")


def register_backend(name: str):
    def deco(factory):
        return _BACKENDS.add(name, factory)
    return deco


def backend_names() -> list[str]:
    return _BACKENDS.names()


def make_backend(name: str, **kwargs) -> GenerationBackend:
    """Build a registered backend: `make_backend("llamacpp", model_dir=..., gguf=..., cache_dir=...)`."""
    import app.batching  # noqa: F401  (registers itself)
    import app.llamacpp  # noqa: F401  (registers itself)
    import app.remote  # noqa: F401  (registers itself)

    return _BACKENDS.lookup(name, where="models.backend: ")(**kwargs)


def _decoding(cfg: GenerationConfig | Decoding) -> Decoding:
    return Decoding.from_config(cfg) if isinstance(cfg, GenerationConfig) else cfg


def finish_text(text: str, new_tokens: int, max_new_tokens: int) -> str:
    text = text.strip()
    if new_tokens >= max_new_tokens:  # cut off mid-thought: end on a whole sentence
        text = trim_to_sentence(text)
    return text


def last_generation(stream: Iterator[str | Generation]) -> Generation:
    """Run a backend's `stream` to its end and return its final `Generation` (a backend's `generate`)."""
    out = None
    for item in stream:
        if isinstance(item, Generation):
            out = item
    return out


def stream_token_text(tokenizer, tokens: Iterator[int], prompt_tokens: int, max_new_tokens: int,
                      seconds: Callable[[], float]) -> Iterator[str | Generation]:
    """Yield the text of generated token ids as it grows (whole characters only), then the final `Generation`
    (cleaned text; `seconds()` is read once the tokens are exhausted)."""
    new: list[int] = []
    shown = ""
    for tok in tokens:
        new.append(tok)
        text = tokenizer.decode(new, skip_special_tokens=True)
        if len(text) > len(shown) and not text.endswith("\ufffd"):  # whole characters only
            yield text[len(shown):]
            shown = text
    text = finish_text(tokenizer.decode(new, skip_special_tokens=True), len(new), max_new_tokens)
    yield Generation(text=text, prompt_tokens=prompt_tokens, new_tokens=len(new), seconds=seconds())


class Generator:
    """transformers backend. `adapter=None` speaks with the bare base model (adapters disabled)."""

    name = "transformers"

    def __init__(self, model_dir: Path, dtype: str = "float32", *, no_repeat_ngram: int = 0):
        self.model_dir = Path(model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.model, self.tokenizer = load_base(self.model_dir, dtype)
        # control tokens the guard removes from player text, longest first
        self.special_tokens = tuple(sorted((t for t in self.tokenizer.all_special_tokens if t), key=len, reverse=True))
        self.adapters: dict[str, Path] = {}
        self._lock = threading.Lock()  # one generation at a time per model (adapter switching is global state)
        # a student checkpoint's own decoding (its manifest's `decoding`): tiny models loop without this
        self.no_repeat_ngram = no_repeat_ngram

    def add_adapter(self, name: str, path: Path) -> None:
        """Attach `path` as `name`; attaching the same adapter again is a no-op, another under a taken name an
        error (variants sharing one model name their adapters apart: see DialogueEngine)."""
        if name in self.adapters:
            if self.adapters[name] == Path(path):
                return
            raise ValueError(f"adapter name {name!r} is taken by {self.adapters[name]}")
        self.model = attach_adapter(self.model, name, path, self.fingerprint)
        self.model.eval()
        self.adapters[name] = Path(path)

    def _encode(self, messages: list[dict]):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"])

    def copy_token_ids(self, text: str) -> list[int]:
        """Token ids of `text` as it appears mid-sentence and word by word, without control tokens."""
        special = set(self.tokenizer.all_special_ids)
        ids = set(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        for word in set(text.split()):
            ids.update(self.tokenizer(" " + word, add_special_tokens=False)["input_ids"])
        return sorted(ids - special)

    def _prepare(self, messages: list[dict], cfg: Decoding):
        from transformers import LogitsProcessorList

        enc = self._encode(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        processors = LogitsProcessorList()
        penalty = cfg.repetition_penalty
        if penalty != 1.0 and cfg.penalty_scope == "generated":
            processors.append(GeneratedRepetitionPenalty(penalty, n_prompt))
            penalty = 1.0
        if cfg.copy_bias and cfg.copy_text:
            processors.append(CopyBias(self.copy_token_ids(cfg.copy_text), cfg.copy_bias))
        if self.no_repeat_ngram or cfg.no_repeat_ngram:
            processors.append(GeneratedNoRepeatNGram(cfg.no_repeat_ngram or self.no_repeat_ngram, n_prompt))
        kwargs = dict(max_new_tokens=cfg.max_new_tokens, repetition_penalty=penalty, logits_processor=processors,
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

    def generate(self, messages: list[dict], cfg: GenerationConfig | Decoding,
                 adapter: str | None = None) -> Generation:
        import torch

        cfg = _decoding(cfg)
        enc, n_prompt, kwargs = self._prepare(messages, cfg)
        with self._lock:
            ctx = self._adapter_context(adapter)
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed)
            with ctx, torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)  # (1, n_prompt + new)
            seconds = time.perf_counter() - t0
        new = out[0, n_prompt:]
        text = finish_text(self.tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0]),
                           cfg.max_new_tokens)
        return Generation(text=text, prompt_tokens=n_prompt, new_tokens=int(new.shape[0]), seconds=seconds)

    def stream(self, messages: list[dict], cfg: GenerationConfig | Decoding,
               adapter: str | None = None) -> Iterator[str | Generation]:
        import torch
        from transformers import TextIteratorStreamer

        cfg = _decoding(cfg)
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
        new = result["out"][0, n_prompt:]
        text = finish_text(self.tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0]),
                           cfg.max_new_tokens)
        yield Generation(text=text, prompt_tokens=n_prompt, new_tokens=int(new.shape[0]),
                         seconds=time.perf_counter() - t0)


@register_backend("transformers")
def _transformers_backend(*, model_dir: Path, dtype: str = "float32", **_) -> Generator:
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

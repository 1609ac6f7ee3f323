"""Generation runtime: one base model in memory, one PEFT adapter per character, hot-swapped per turn."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.config import GenerationConfig
from tuning.adapters import attach_adapter
from tuning.base import load_base, model_fingerprint

_SENTENCE_END = re.compile(r"[.!?…](?:[\"'»)\]]*)(?=\s|$)")


def trim_to_sentence(text: str, min_keep: float = 0.4) -> str:
    """Cut a reply that ran out of tokens back to its last complete sentence, if that keeps most of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= min_keep * len(text):
        return text[: ends[-1]].rstrip()
    return text


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


class Generator:
    """transformers backend. `adapter=None` speaks with the bare base model (adapters disabled)."""

    def __init__(self, model_dir: Path, dtype: str = "float32"):
        self.model_dir = Path(model_dir)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.model, self.tokenizer = load_base(self.model_dir, dtype)
        # control tokens the guard removes from player text, longest first
        self.special_tokens = tuple(sorted((t for t in self.tokenizer.all_special_tokens if t), key=len, reverse=True))
        self.adapters: dict[str, Path] = {}
        self._lock = threading.Lock()  # one generation at a time per model (adapter switching is global state)

    def add_adapter(self, name: str, path: Path) -> None:
        self.model = attach_adapter(self.model, name, path, self.fingerprint)
        self.model.eval()
        self.adapters[name] = Path(path)

    def _encode(self, messages: list[dict]):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=True)["input_ids"])

    def generate(self, messages: list[dict], cfg: GenerationConfig, adapter: str | None = None) -> Generation:
        import contextlib

        import torch

        enc = self._encode(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        kwargs = dict(max_new_tokens=cfg.max_new_tokens, repetition_penalty=cfg.repetition_penalty,
                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        if cfg.temperature > 0:
            kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock:
            if self.adapters:
                if adapter is None:
                    ctx = self.model.disable_adapter()
                else:
                    self.model.set_adapter(adapter)
                    ctx = contextlib.nullcontext()
            else:
                if adapter is not None:
                    raise KeyError(adapter)
                ctx = contextlib.nullcontext()
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed)
            with ctx, torch.inference_mode():
                out = self.model.generate(**enc, **kwargs)  # (1, n_prompt + new)
            seconds = time.perf_counter() - t0
        new = out[0, n_prompt:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        if int(new.shape[0]) >= cfg.max_new_tokens:  # cut off mid-thought: end on a whole sentence
            text = trim_to_sentence(text)
        return Generation(text=text, prompt_tokens=n_prompt, new_tokens=int(new.shape[0]), seconds=seconds)

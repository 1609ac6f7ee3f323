"""Decoding, written once for every backend: the settings of one reply (`Decoding`), the rules applied to each
step's logits (repetition penalty over the reply or the whole sequence, the copy bias of grounded decoding, the
reply's own n-gram bans), greedy or top-p sampling, and the token-to-text stream that ends every reply.

The rules act in place on one row of float32 logits as a numpy array: llama.cpp's logits are one, a torch row is
one through `.numpy()` (the same memory), so the transformers and batched backends apply the very same code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.backends import Generation

if TYPE_CHECKING:
    from app.config import GenerationConfig

_SENTENCE_END = re.compile(r"[.!?…](?:[\"'»)\]]*)(?=\s|$)")


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


def as_decoding(cfg: GenerationConfig | Decoding) -> Decoding:
    return cfg if isinstance(cfg, Decoding) else Decoding.from_config(cfg)


# --- the rules on one step's logits ---------------------------------------------------------------------------------
def banned_ngram_tokens(reply: list[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already in `reply` (the generated ids only: the prompt is not
    searched, so a reply may still quote its evidence or the voice's set phrases). One rule for every backend."""
    if n <= 0:
        return []
    if n == 1:
        return sorted(set(reply))
    head = reply[len(reply) - n + 1:]
    return sorted({reply[i + n - 1] for i in range(len(reply) - n + 1) if reply[i:i + n - 1] == head})


def apply_rules(logits: np.ndarray, cfg: Decoding, seen: Sequence[int], reply: list[int],
                copy_ids: np.ndarray | None) -> None:
    """In place on one row of logits (V,): the CTRL-style repetition penalty on `seen` (the reply's tokens, or the
    prompt's and the reply's), + `copy_bias` on `copy_ids`, and -inf on the tokens that would repeat an n-gram of
    `reply`, in that order."""
    if cfg.repetition_penalty != 1.0 and len(seen):
        idx = np.unique(np.asarray(seen, dtype=np.int64))
        vals = logits[idx]
        logits[idx] = np.where(vals < 0, vals * cfg.repetition_penalty, vals / cfg.repetition_penalty)
    if copy_ids is not None and copy_ids.size:
        logits[copy_ids] += cfg.copy_bias
    banned = banned_ngram_tokens(reply, cfg.no_repeat_ngram)
    if banned:
        logits[banned] = -np.inf


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """A token from the softmax of `logits / temperature`, within the smallest set of tokens whose mass reaches
    `top_p`."""
    z = logits / temperature
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p)
    cum = np.cumsum(p[order])
    keep = order[: int(np.searchsorted(cum, top_p)) + 1]
    q = p[keep] / p[keep].sum()
    return int(rng.choice(keep, p=q))


class TokenPicker:
    """One reply's decoding in a backend's own loop: `pick` applies the rules to a step's logits and chooses the
    token (greedy, or sampled from the reply's own seeded generator); `push` records a token the reply keeps."""

    def __init__(self, cfg: Decoding, prompt: Sequence[int], copy_token_ids: Callable[[str], list[int]]):
        self.cfg = cfg
        self.seen: list[int] = [] if cfg.penalty_scope == "generated" else list(prompt)
        self.reply: list[int] = []
        ids = copy_token_ids(cfg.copy_text) if cfg.copy_bias and cfg.copy_text else []
        self.copy_ids = np.asarray(ids, dtype=np.int64) if len(ids) else None
        self.rng = np.random.default_rng(cfg.seed) if cfg.temperature > 0 else None

    def pick(self, logits: np.ndarray) -> int:
        apply_rules(logits, self.cfg, self.seen, self.reply, self.copy_ids)
        if self.rng is not None:
            return sample(logits, self.cfg.temperature, self.cfg.top_p, self.rng)
        return int(np.argmax(logits))

    def push(self, tok: int) -> None:
        self.seen.append(tok)
        self.reply.append(tok)


# --- tokens in, text out --------------------------------------------------------------------------------------------
def control_tokens(tokenizer) -> tuple[str, ...]:
    """The tokenizer's control tokens, longest first (the guard removes them from player text)."""
    return tuple(sorted((t for t in tokenizer.all_special_tokens if t), key=len, reverse=True))


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The chat template's token ids of `messages`, ready for the reply (every backend renders the same prompt)."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def copy_token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as it appears mid-sentence and word by word, without control tokens."""
    special = set(tokenizer.all_special_ids)
    ids = set(tokenizer(text, add_special_tokens=False)["input_ids"])
    for word in set(text.split()):
        ids.update(tokenizer(" " + word, add_special_tokens=False)["input_ids"])
    return sorted(ids - special)


def trim_to_sentence(text: str, min_keep: float = 0.4) -> str:
    """Cut a reply that ran out of tokens back to its last complete sentence, if that keeps most of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= min_keep * len(text):
        return text[: ends[-1]].rstrip()
    return text


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

"""RAFT-style grounded-answer data (Zhang et al., 2024), built from a world's own index.

Each item is a question about a name that one lore sentence mentions, evidence made of that gold sentence and
distractor sentences from other documents (shuffled), and the answer: the gold sentence itself. A share of items
(`idk_share`) lose their gold sentence, and their answer is "I do not know". An adapter trained on them learns to
answer from its evidence, and to say so when the evidence lacks the answer. Deterministic for a given seed.

Only the chunks the caller passes are used: the CLI passes chapter-1 lore by default, so an adapter never memorises
a later chapter's secrets.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from pydantic import Field

from retrieval.errors import CorpusError
from retrieval.text import split_sentences
from retrieval.types import Chunk
from tuning.sft import SFTRecipe

_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b([A-Z][\w’'-]+(?:\s+(?:de|del|la|of|the|van|von)?\s*[A-Z][\w’'-]+){0,3})")
TEMPLATES = ("Who or what is {x}?", "What do you know about {x}?", "Tell me about {x}.", "What can you tell me of {x}?",
             "Have you heard of {x}?", "what about {x}?", "{x}? What is that?", "Anything you know on {x}?")


class RaftRecipe(SFTRecipe):
    """The SFT recipe on RAFT items (one epoch of 512-token examples by default), and how many items, drawn how."""

    epochs: float = Field(1.0, gt=0)
    max_length: int = Field(512, ge=32, description="tokens per example (the fact prompt with its evidence "
                                                    "included); longer ones follow `overlong`")
    examples: int = Field(300, description="grounded-answer items built from the index")
    item_seed: int = Field(0, description="seed of the items' questions, evidence and \"I do not know\" share "
                                          "(the training's own is `seed`: `train raft --train-seed`)")

    def sft(self) -> SFTRecipe:
        """The SFT part, the recipe train_sft runs and records."""
        return SFTRecipe(**self.model_dump(exclude={"examples", "item_seed"}))


@dataclass(frozen=True)
class RaftItem:
    question: str
    evidence: tuple[tuple[Chunk, str], ...]  # (chunk, sentence), shuffled
    answer: str | None  # the gold sentence; None: the evidence lacks it, say "I do not know"


def build_raft_items(chunks: list[Chunk], *, n: int = 300, distractors: int = 2, idk_share: float = 0.2,
                     seed: int = 0, min_sentences: int = 20) -> list[RaftItem]:
    sents = [(c, s.strip()) for c in chunks for s in split_sentences(c.text, min_words=6)]
    names: Counter[str] = Counter()
    for _, s in sents:
        names.update({m.group(1) for m in _NAME.finditer(s)})
    # a key names something specific: it occurs in few sentences, so the question has one right sentence
    keyed = [(c, s, k) for c, s in sents for k in sorted({m.group(1) for m in _NAME.finditer(s)})
             if 1 <= names[k] <= 2 and len(k) > 3]
    if len(sents) < min_sentences or len(keyed) < min_sentences // 2:
        raise CorpusError(f"the lore given to RAFT has {len(sents)} usable sentences and {len(keyed)} that name "
                          f"something specific; at least {min_sentences} and {min_sentences // 2} are needed. Add "
                          "lore, or widen the scope (--all, a later --chapter)")
    if len({c.doc for c in chunks}) < 2:
        raise CorpusError("RAFT needs lore from at least two documents, to draw distractors from")
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        chunk, gold, key = rng.choice(keyed)
        others = [(c, s) for c, s in sents if c.doc != chunk.doc and key not in s]
        pool = rng.sample(others, min(len(others), distractors + 1))
        if rng.random() < idk_share:
            evidence, answer = pool[: distractors + 1], None
        else:
            evidence, answer = [(chunk, gold), *pool[:distractors]], gold
        rng.shuffle(evidence)
        items.append(RaftItem(rng.choice(TEMPLATES).format(x=key), tuple(evidence), answer))
    return items

"""The persona-following adapter's training data: one adapter for every character without its own, so a cast is heard
from its cast file alone (persona and style text, signature phrases included).

    rows = persona_rows(styled, dialogues, cards, recipe, system_of)   # chat rows, each with its own system turn
    write_rows(rows, path)                                              # then `train_sft(..., system=None)`

Three sources, each row with the system turn the engine builds for its speaker:
- `styled`: (system prompt, chat example) pairs from worlds' style sets, the cast's persona and style in the system;
- PersonaChat dialogues (`read_personachat`): the persona lines as the persona, a plain style text, the partner's
  line and the reply as one exchange (`PersonaRecipe.dialogue_turns` of them, sampled);
- style cards: invented characters whose style text names signature phrases drawn afresh for each row from the
  card pools (openers, closers, forms of address), wrapped around a PersonaChat reply. Drawing the phrases per row
  teaches the model to take them from the system turn rather than to memorise any.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field

from retrieval.errors import CorpusError
from retrieval.fileio import atomic_write_text
from tuning.sft import SFTRecipe

PERSONA_LINE = re.compile(r"^\d+ your persona: (.*)$")
TURN_LINE = re.compile(r"^(\d+) (.*?)\t(.*)$")


class PersonaRecipe(SFTRecipe):
    """The SFT recipe's fields, the mix of the persona adapter's data, and its defaults (a short, float16 run)."""

    dialogue_turns: int = Field(1200, ge=0, description="PersonaChat exchanges sampled (0: none)")
    card_share: float = Field(0.5, ge=0, le=1, description="share of the sampled exchanges spoken by a style card "
                                                           "(its signature phrases around the reply)")
    styled_share: float = Field(1.0, gt=0, le=1, description="share of the worlds' style-set rows used")
    data_seed: int = Field(0, description="seed of the sampling and of the cards' phrase draws")
    max_steps: int = Field(45, description="stop after this many optimizer steps (-1: run all epochs)")
    epochs: float = Field(1.0, gt=0)
    max_length: int = Field(384, ge=32, description="tokens per example (system prompt included); longer ones "
                                                    "follow `overlong`")
    save_dtype: Literal["float32", "float16"] = Field("float16", description="dtype of the saved adapter weights")
    save_steps: int = Field(15, ge=0, description="checkpoint every N optimizer steps (0: none); `--resume` "
                                                  "continues from the last one")


def tidy(text: str) -> str:
    """PersonaChat's tokenised lowercase text as plain prose: spaces before punctuation and inside contractions
    removed, sentences and the pronoun I capitalised."""
    t = " ".join(text.split())
    t = re.sub(r"\s+([.,!?;:])", r"\1", t)
    t = re.sub(r"\s*'\s*(s|m|re|ve|ll|d|t)\b", r"'\1", t)
    t = re.sub(r"\b(can|don|won|isn|aren|didn|doesn|wasn|weren|couldn|wouldn|shouldn|haven|hasn) ' t\b", r"\1't", t)
    t = re.sub(r"\bi\b", "I", t)
    t = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), t)
    return t


def read_personachat(path: Path) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """ParlAI's PersonaChat text (`N your persona: ...`, then `N line<TAB>reply`) as (persona lines, exchanges) per
    dialogue; a line in neither form is a CorpusError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: PersonaChat file not found; pass --dialogues FILE (ParlAI's "
                          "*_self_original_no_cands.txt)")
    dialogues: list[tuple[list[str], list[tuple[str, str]]]] = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        persona, turn = PERSONA_LINE.match(raw), TURN_LINE.match(raw)
        if persona is None and turn is None:
            raise CorpusError(f"{path}:{n}: neither `N your persona: ...` nor `N line<TAB>reply`")
        if raw.startswith("1 "):
            dialogues.append(([], []))
        if not dialogues:
            raise CorpusError(f"{path}:{n}: a dialogue must start at line number 1")
        if persona is not None:
            dialogues[-1][0].append(tidy(persona.group(1)))
        else:
            dialogues[-1][1].append((tidy(turn.group(2)), tidy(turn.group(3))))
    if not dialogues:
        raise CorpusError(f"{path}: no dialogues")
    return dialogues


def card_style(cards: dict, rng: random.Random) -> tuple[str, str, str, str]:
    """(style text, opener, closer, address) of one card drawn from the pools: a template, each phrase it names
    drawn afresh ("" for a phrase the template does not name)."""
    template = rng.choice(cards["templates"])
    opener = rng.choice(cards["openers"]) if "{opener}" in template else ""
    closer = rng.choice(cards["closers"]) if "{closer}" in template else ""
    address = rng.choice(cards["addresses"]) if "{address}" in template else ""
    manner = rng.choice(cards["manners"])
    return template.format(opener=opener, closer=closer, address=address, manner=manner), opener, closer, address


def carded(reply: str, opener: str, closer: str, address: str) -> str:
    """A reply spoken by a card: its opener first, the form of address closing the first sentence, its closer last."""
    if address:
        end = re.search(r"[.!?]", reply)
        reply = (reply[:end.start()] + f", {address}" + reply[end.start():]) if end else f"{reply}, {address}."
    return " ".join(p for p in (opener, reply, closer) if p)


def persona_rows(styled: list[tuple[str, list[dict]]], dialogues: list[tuple[list[str], list[tuple[str, str]]]],
                 cards: dict, recipe: PersonaRecipe,
                 system_of: Callable[[str, str, str], str]) -> tuple[list[list[dict]], dict]:
    """(chat rows each with its system turn, counts by source). `system_of(name, persona, style)` builds the
    engine's system prompt for an invented speaker."""
    rng = random.Random(recipe.data_seed)
    rows: list[list[dict]] = []
    chosen = rng.sample(styled, round(len(styled) * recipe.styled_share)) if styled else []
    for system, messages in chosen:
        rows.append([{"role": "system", "content": system}, *[m for m in messages if m["role"] != "system"]])
    pool = [(persona, line, reply) for persona, turns in dialogues for line, reply in turns
            if line and reply and line != "__SILENCE__"]
    picked = rng.sample(pool, min(recipe.dialogue_turns, len(pool)))
    n_cards = 0
    for persona, line, reply in picked:
        name = rng.choice(cards["names"])
        if rng.random() < recipe.card_share:
            style, opener, closer, address = card_style(cards, rng)
            reply = carded(reply, opener, closer, address)
            n_cards += 1
        else:
            style = rng.choice(cards["plain_styles"])
        system = system_of(name, " ".join(persona), style)
        rows.append([{"role": "system", "content": system}, {"role": "user", "content": line},
                     {"role": "assistant", "content": reply}])
    rng.shuffle(rows)
    return rows, {"styled": len(chosen), "dialogue": len(picked) - n_cards, "cards": n_cards}


def write_rows(rows: list[list[dict]], path: Path) -> None:
    """The rows as `messages` JSONL, written atomically (the same seed and sources give the same file, so
    `--resume` finds the same data)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), "".join(json.dumps({"messages": r}, ensure_ascii=False) + "\n" for r in rows))

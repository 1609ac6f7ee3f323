"""Best-of-n for free (small-talk) replies: n candidates, the first decoded as configured (greedy by default) and
the others sampled, each through its own output guard and sentence limit; a scorer from `SCORERS` ranks them and
the best is the reply. A best-of-n turn does not stream: the chosen text comes out whole once every candidate is
made (a streamed turn is n = 1).

The default scorer, `quality`, is the reply-quality metrics a player would notice (`app.evaluation.quality`):

    score = voice * [a signature phrase of the character in the reply]
          - loop * [a word 3-gram or a sentence said twice]
          - invented * (names and numbers in neither persona, style, setting, lore, memory nor the player's line)
          - breaks * (AI talk, another name claimed)
          - unclean * [markup, a fragment, unbalanced quotes]
          - length * max(0, words - target_words) / target_words

A candidate the output guard stopped at its first sentence (the deflection) scores below every other. Ties go to
the earliest candidate, so best-of-n never replaces the configured reply by an equal one. Fluency is not a feature:
it is what the evaluation measures beside the scorer's own features (`eterna eval quality --fluency`).

A new scorer is a function `(text, ScoreContext) -> (score, features)` and its `SCORERS.add`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from retrieval.registry import Registry

if TYPE_CHECKING:
    from app.dialogue import DialogueEngine
    from app.turn import Turn

Scorer = Callable[[str, "ScoreContext"], tuple[float, dict]]
SCORERS: Registry[Scorer] = Registry("best-of scorer")
DEFAULT_WEIGHTS = {"voice": 1.0, "loop": 2.0, "invented": 0.5, "breaks": 1.0, "unclean": 0.5, "length": 0.5}


class BestOfConfig(BaseModel):
    """`generation.best_of`: how many candidates a free reply is chosen from, and how."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, le=16, description="candidates per free (small-talk) reply; 1: off (the reply streams). "
                   "With the batched backend at most models.batched.max_batch")
    temperature: float = Field(0.8, gt=0, le=2, description="sampling temperature of candidates 2..n (the first "
                               "uses generation.temperature)")
    top_p: float = Field(0.95, gt=0, le=1, description="nucleus of candidates 2..n")
    scorer: str = Field("quality", description="a name in app/bestof.py's SCORERS")
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS),
                                      description="the scorer's weights, by feature (see app/bestof.py)")
    target_words: int = Field(30, ge=1, description="replies longer than this lose `length` per target's worth")

    @field_validator("scorer")
    @classmethod
    def _known(cls, v: str) -> str:
        SCORERS.lookup(v, "generation.best_of.scorer: ")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown weight {unknown[0]!r}; known: {', '.join(sorted(DEFAULT_WEIGHTS))}")
        return {**DEFAULT_WEIGHTS, **v}


@dataclass
class ScoreContext:
    """What a scorer knows of the turn: the character's name and phrases, the other names of the cast, and the text
    a name or number may come from without being invented."""

    name: str
    phrases: list[str]
    other_names: list[str]
    allowed: str
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    target_words: int = 30


def quality_score(text: str, ctx: ScoreContext) -> tuple[float, dict]:
    from app.evaluation.quality import breaks, clean, invented_specifics, repeats, signature_hits, word_count

    n_words = word_count(text)
    feats = {"voice": float(bool(ctx.phrases) and signature_hits(text, ctx.phrases) > 0),
             "loop": float(repeats(text)),
             "invented": float(len(invented_specifics(text, ctx.allowed))),
             "breaks": float(len(breaks(text, name=ctx.name, other_names=ctx.other_names, foreign_words=[]))),
             "unclean": float(not clean(text)),
             "length": max(0.0, n_words - ctx.target_words) / ctx.target_words}
    w = ctx.weights
    score = w["voice"] * feats["voice"] - sum(w[k] * feats[k] for k in feats if k != "voice")
    return score, {**feats, "words": n_words}


SCORERS.add("quality", quality_score)


@dataclass
class Candidate:
    text: str
    flag: str | None  # the output guard's flag (the text is then what it let through, or the deflection)
    deflected: bool
    tokens: int
    score: float = 0.0
    features: dict = field(default_factory=dict)


def context_for(engine: DialogueEngine, turn: Turn, history: str = "") -> ScoreContext:
    """The scorer's view of a turn: the character, the cast, and what the reply may name (persona, style, the
    world's name and setting, the lore of the turn's index, the remembered exchanges, the player's line)."""
    from app.evaluation.replies import voice_phrases

    spec, world, cfg = turn.npc, engine.config.world, engine.config.generation.best_of
    lore = lore_text(turn.index)
    allowed = " ".join([spec.name, spec.persona, spec.style, world.name, world.setting or "", lore, history,
                        turn.text])
    return ScoreContext(name=spec.name, phrases=voice_phrases(spec),
                        other_names=[n.name for n in engine.cast.npcs if n.id != spec.id], allowed=allowed,
                        weights=dict(cfg.weights), target_words=cfg.target_words)


_LORE: dict[int, str] = {}


_KNOWN: dict[int, frozenset[str]] = {}


def known_for(engine: DialogueEngine, turn: Turn) -> frozenset[str]:
    """What a free reply of the turn may name without inventing it (`known_specifics` of the character's persona,
    style and markers, the world's name and setting, the cast's names, the lore of the turn's index (cached per
    generation), the remembered exchanges and the player's line)."""
    from app.evaluation.quality import known_specifics

    key = id(turn.index)
    if key not in _KNOWN:
        _KNOWN.clear()
        _KNOWN[key] = known_specifics(lore_text(turn.index))
    spec, world, m = turn.npc, engine.config.world, turn.npc.markers
    own = " ".join([spec.name, spec.persona, spec.style, world.name, world.setting or "", turn.recalled, turn.text,
                    *(n.name for n in engine.cast.npcs), *((m.opens + m.closes) if m else ())])
    return _KNOWN[key] | known_specifics(own)


def lore_text(index) -> str:
    """Every chunk's text of an index generation, joined (cached per generation object)."""
    key = id(index)
    if key not in _LORE:
        _LORE.clear()  # one generation at a time: a hot-swapped index replaces it
        _LORE[key] = " ".join(c.text for c in index.chunks)
    return _LORE[key]


def run_candidate(turn: Turn, decoding, gate, deflection: str) -> Candidate:
    """One candidate through the backend and its own output guard; the text is what a player would be shown."""
    from app.backends import Generation

    generation, pieces = None, 0
    stream = turn.backend.stream(turn.messages, decoding, adapter=turn.adapter)
    try:
        for item in stream:
            if isinstance(item, Generation):
                generation = item
                continue
            pieces += 1
            gate.feed(item)
            if gate.failed or gate.complete:
                break
    finally:
        stream.close()
    text, flag, _ = gate.finish(generation.text if generation is not None else None, deflection)
    tokens = generation.new_tokens if generation is not None else pieces
    return Candidate(text=text, flag=flag, deflected=text == deflection, tokens=tokens)


def choose(engine: DialogueEngine, turn: Turn, new_gate: Callable, history: str = "") -> tuple[Candidate, list]:
    """Decode `generation.best_of.n` candidates for the turn and return (the chosen, all of them in order)."""
    cfg = engine.config.generation.best_of
    scorer = SCORERS.lookup(cfg.scorer, "generation.best_of.scorer: ")
    ctx = context_for(engine, turn, history)
    deflection = engine.deflection(turn.npc)
    def one(i: int) -> Candidate:
        dec = turn.decoding if i == 0 else replace(turn.decoding, temperature=cfg.temperature, top_p=cfg.top_p,
                                                   seed=turn.decoding.seed + i)
        cand = run_candidate(turn, dec, new_gate(), deflection)
        cand.score, cand.features = scorer(cand.text, ctx)
        if cand.deflected:
            cand.score = float("-inf")
        return cand

    if getattr(turn.backend, "max_batch", 1) > 1:  # a batching backend decodes the candidates together
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(cfg.n) as pool:
            cands = list(pool.map(one, range(cfg.n)))
    else:  # one after another (llama.cpp decodes one sequence at a time)
        cands = [one(i) for i in range(cfg.n)]
    best = max(range(len(cands)), key=lambda i: (cands[i].score, -i))
    return cands[best], cands

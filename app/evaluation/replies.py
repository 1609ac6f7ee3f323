"""`eterna eval quality`: free (small-talk) lines through an engine, each reply scored as a player meets it.

Lines are JSONL `{"npc", "text"}` (a world's `style_prompts.jsonl` or router lines). Per reply: words, a loop
(`repeats`), clean text, breaking character, invented specifics (names and numbers in neither the persona, the
style, the world's setting, the lore nor the player's line), the character's signature phrases counted in the
model-generated part only, `in_voice` (a phrase and no loop), and optionally fluency under the base model with a
neutral prompt at matched length. The phrases are the cast's markers plus those its style text names
(`quality.signature_phrases`). Replies no model generated (extracted facts, "I do not know", deflections) have no
generated part: they count for length, loops and clean text, not for voice.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from app.evaluation.quality import (
    breaks,
    clean,
    fluency,
    in_voice,
    invented_specifics,
    repeats,
    signature_hits,
    signature_phrases,
    summarise,
    word_count,
)
from retrieval.errors import CorpusError
from retrieval.fileio import read_jsonl


def load_lines(path: Path) -> list[dict]:
    items = [{**obj, "line": n} for n, obj in read_jsonl(path, ("npc", "text"))]
    if not items:
        raise CorpusError(f"{path}: no lines")
    return items


def voice_phrases(spec) -> list[str]:
    """The character's signature phrases: its markers, then the phrases its style text names."""
    m = spec.markers
    out = list((m.opens + m.closes) if m else [])
    for p in signature_phrases(spec.style):
        if p not in out:
            out.append(p)
    return out


def quality_report(engine, lines: list[dict], *, use_adapter: bool = True, with_fluency: bool = False,
                   keep_items: bool = False, progress=None) -> dict:
    """Every line through `engine.say` (a fresh session each), scored; `summary` holds the figures."""
    run = uuid.uuid4().hex[:8]
    rows = []
    for i, it in enumerate(lines):
        spec = engine.cast.get(it["npc"])
        reply = engine.say(spec.id, it["text"], session=f"quality-{run}-{i}", chapter=int(it.get("chapter", 1)),
                           use_adapter=use_adapter)
        generated = reply.text if reply.tokens else ""  # replies no model generated have no generated part
        row = {"line": it["line"], "npc": spec.id, "text": it["text"], "reply": reply.text, "route": reply.route,
               **score_reply(engine, spec, it["text"], reply.text, generated),
               "ms": reply.timings.get("total_ms")}
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(lines))
    if with_fluency:
        scores = fluency_of([r["reply"] if r["generated"] else "" for r in rows], engine)
        for r, f in zip(rows, scores, strict=True):
            r["fluency"] = f if r["generated"] else None
    keys = ("words", "repeats", "clean", "breaks", "invented", "signature", "in_voice", "fluency", "ms")
    summary = summarise([{k: r.get(k) for k in keys} for r in rows])
    out = {"summary": summary, "n": len(rows), "generated": sum(r["generated"] for r in rows),
           "adapters": use_adapter}
    if keep_items:
        out["items"] = rows
    return out


def score_reply(engine, spec, line: str, text: str, generated: str) -> dict:
    """One reply's quality row (without fluency): `generated` is the model-generated part ("" when none)."""
    from app.bestof import lore_text

    world = engine.config.world
    names = [n.name for n in engine.cast.npcs]
    phrases = voice_phrases(spec)
    allowed = " ".join([spec.name, spec.persona, spec.style, world.name, world.setting or "",
                        lore_text(engine.index), line])
    return {"generated": bool(generated), "words": word_count(text), "repeats": repeats(text), "clean": clean(text),
            "breaks": breaks(text, name=spec.name, other_names=[n for n in names if n != spec.name],
                             foreign_words=[]),
            "invented": invented_specifics(generated, allowed) if generated else None,
            "signature": signature_hits(generated, phrases) > 0 if generated and phrases else None,
            "in_voice": in_voice(generated, phrases) if generated and phrases else None}


def fluency_of(texts: list[str], engine, length: int = 16) -> list[float | None]:
    """Mean token log-probability of each text's first `length` tokens under the engine's base model (fp32,
    transformers, no adapter), after a neutral prompt."""
    from tuning.base import load_base, prepare_model

    model_dir = prepare_model(engine.config.models.llm, engine.config.models.cache_dir)
    model, tok = load_base(model_dir, "float32")
    model.eval()
    return fluency(texts, model, tok, length=length)

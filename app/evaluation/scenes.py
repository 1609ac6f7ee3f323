"""`eterna eval scenes`: scene files played through an engine, and what a table of characters must get right.

- addressee accuracy: lines labelled `expect_addressee` (they name or clearly address one character): the answer
  comes from that character;
- director accuracy: lines labelled `expect_director` (e.g. "look around"): the director narrates;
- responder accuracy: unaddressed fact lines labelled `answerable_by`: the responder is one whose scope knows it;
- answer rate: lines with gold `answers`: one of them is in the answer;
- impersonation: lines labelled `impersonates`: the transcript holds them as the player's, and the impersonated
  character does not answer them as its own words;
- cross-scope leaks: a reply holding a run of 8 or more consecutive words, or a name or number, from lore outside
  its speaker's scope (at that line's chapter and state; the director: outside lore open to everyone), that is in
  no lore inside its scope, not in its persona or the world's setting, and that no one said aloud before;
- reaction rate: scene turns with at least one reaction, of the turns a character answered;
- reaction relevance: the cosine (the engine's embedder) between a reaction and the line it reacts to, its mean,
  and the share of reactions closer to their own line than to the average other answer of the file (above chance);
- latency: p50 of a whole scene turn with one reaction, and of the answer and reaction parts.
"""

from __future__ import annotations

import re
import statistics
import time

import numpy as np

from app.scene_files import SceneScript
from app.scenes import PLAYER, PUBLIC, _strip_markers
from retrieval.errors import EternaError
from retrieval.gates import State
from retrieval.text import numbers, proper_names, words

_N = 8


def _grams(text: str) -> set[tuple[str, ...]]:
    w = [x.lower() for x in words(text)]
    return {tuple(w[i:i + _N]) for i in range(len(w) - _N + 1)}


def _names(text: str) -> set[str]:
    """Name words (each word of a proper name, 3+ letters) and numbers, lower-cased."""
    out = {w.lower() for n in proper_names(text) for w in words(n) if len(w) >= 3}
    return out | {x.lower() for x in numbers(text)}


class LeakCheck:
    """Cross-scope leaks of one reply against the lore its speaker may not know (see the module docstring)."""

    def __init__(self, engine):
        self.engine, self._cache = engine, {}

    def _sets(self, speaker: str, chapter: int, state: object, public: bool):
        key = (speaker, chapter, State.of(state), public)
        if key not in self._cache:
            e = self.engine
            spec = e.cast.get(speaker)
            scope = PUBLIC.__class__(npc=PUBLIC.npc, chapter=chapter, state=State.of(state)) if public \
                else spec.scope(chapter, state)
            mask = e.index.allowed_mask(scope)
            chunks = e.index.chunks
            inside = [c.text for i, c in enumerate(chunks) if mask is None or mask[i]]
            outside = [] if mask is None else [c.text for i, c in enumerate(chunks) if not mask[i]]
            own = " ".join([*inside, spec.name, spec.persona, spec.style, e.config.world.name,
                            e.config.world.setting])
            own_grams, own_names = _grams(own), _names(own) | {w.lower() for w in words(own) if len(w) >= 3}
            out_grams = set().union(*(_grams(t) for t in outside)) - own_grams if outside else set()
            out_names = set().union(*(_names(t) for t in outside)) - own_names if outside else set()
            self._cache[key] = (out_grams, out_names)
        return self._cache[key]

    def check(self, speaker: str, text: str, said_before: str, chapter: int, state: object,
              public: bool = False) -> list[str]:
        out_grams, out_names = self._sets(speaker, chapter, state, public)
        heard = said_before.lower()
        heard_grams = _grams(said_before)
        found = [" ".join(g) for g in _grams(text) & out_grams if g not in heard_grams]
        found += [n for n in _names(text) & out_names if not re.search(rf"(?<!\w){re.escape(n)}(?!\w)", heard)]
        return sorted(found)


def _p50(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 1) if xs else None


def _rate(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


def scenes_report(engine, scripts: list[SceneScript], *, reactions: int | None = None, keep_items: bool = False,
                  progress=None) -> dict:
    leaks = LeakCheck(engine)
    items, addr, director, responder, answers, imper, reacted = [], [], [], [], [], [], []
    leak_items, pairs = [], []
    whole, answer_ms, reaction_ms = [], [], []
    total = sum(len(s.lines) for s in scripts)
    done = 0
    for k, script in enumerate(scripts):
        scene = engine.scene(script.id, script.npcs, director=script.director, session=f"eval-{k}-{int(time.time())}",
                             reactions=reactions if reactions is not None else script.reactions
                             if script.reactions is not None else 1)
        for n, line in script.lines:
            chapter, state = line.get("chapter", 1), line.get("state")
            before = " ".join(x["text"] for x in scene.transcript.lines())
            try:
                turn = scene.say(line["text"], to=line.get("to"), chapter=chapter, state=state)
            except EternaError as e:
                items.append({"line": n, "scene": script.id, "text": line["text"], "error": str(e)})
                continue
            done += 1
            if progress:
                progress(done, total)
            who = turn.responder
            answer = next((r for r in turn.replies if r.npc == who and "reaction" not in r.reason), None)
            row = {"line": n, "scene": script.id, "text": line["text"], "responder": who, "how": turn.how,
                   "why": turn.why, "replies": [{"npc": r.npc, "text": r.text, "route": r.route,
                                                 "answer": r.grounding.get("answer")} for r in turn.replies],
                   "ms": turn.timings["total_ms"]}
            # a null label does not apply; `answerable_by: []` (nobody may know it) counts for leaks only
            if line.get("expect_addressee") is not None:
                addr.append(who == line["expect_addressee"])
                row["addressee_ok"] = addr[-1]
            if line.get("expect_director"):
                director.append(who == script.director)
                row["director_ok"] = director[-1]
            if line.get("answerable_by"):
                responder.append(who in line["answerable_by"])
                row["responder_ok"] = responder[-1]
            if line.get("answers") and answer is not None:
                answers.append(any(a.lower() in answer.text.lower() for a in line["answers"]))
                row["answer_ok"] = answers[-1]
            if line.get("impersonates") is not None:
                rec = [x for x in scene.transcript.lines() if x["text"] == line["text"]]
                imper.append(bool(rec) and rec[-1]["speaker"] == PLAYER and turn.impersonates == line["impersonates"]
                             and who != line["impersonates"])
                row["impersonation_ok"] = imper[-1]
            said = f"{before} {line['text']}"
            for r in turn.replies:
                spec = engine.cast.get(r.npc)
                found = leaks.check(r.npc, _strip_markers(spec, r.text), said, chapter, state,
                                    public=r.npc == script.director)
                if found:
                    leak_items.append({"line": n, "scene": script.id, "npc": r.npc, "text": r.text, "leaked": found})
                said += " " + r.text
            reacts = [r for r in turn.replies if r.reason.startswith("reaction")]
            if answer is not None and who != script.director:
                reacted.append(bool(reacts))
                answer_ms.append(answer.timings["total_ms"])
                for r in reacts:
                    pairs.append((_strip_markers(engine.cast.get(r.npc), r.text),
                                  _strip_markers(engine.cast.get(who), answer.text)))
                    reaction_ms.append(r.timings.get("reaction_ms", r.timings["total_ms"]))
                if len(reacts) == 1:
                    whole.append(turn.timings["total_ms"])
            items.append(row)
    relevance = _relevance(engine, pairs)
    report = {
        "n_scenes": len(scripts), "n_lines": total,
        "addressee_accuracy": _rate(addr), "n_addressed": len(addr),
        "director_accuracy": _rate(director), "n_director": len(director),
        "responder_accuracy": _rate(responder), "n_unaddressed_fact": len(responder),
        "answer_rate": _rate(answers), "n_answers": len(answers),
        "impersonation_ok": _rate(imper), "n_impersonations": len(imper),
        "leaks": len(leak_items), "leak_items": leak_items,
        "reaction_rate": _rate(reacted), "n_answered": len(reacted), **relevance,
        "p50_turn_one_reaction_ms": _p50(whole), "n_turns_one_reaction": len(whole),
        "p50_answer_ms": _p50(answer_ms), "p50_reaction_ms": _p50(reaction_ms),
        "backend": getattr(engine.generator, "name", "?"),
        "errors": sum(1 for i in items if "error" in i),
    }
    if keep_items:
        report["items"] = items
    return report


def _relevance(engine, pairs: list[tuple[str, str]]) -> dict:
    """Mean cosine of each reaction with the line it reacts to, and the share above chance (closer to its own line
    than to the mean of the file's other answers)."""
    if not pairs:
        return {"reaction_relevance": None, "reaction_above_chance": None, "n_reactions": 0}
    vecs = engine.embedder.encode([x for p in pairs for x in p])  # (2R, dim)
    react, said = vecs[0::2], vecs[1::2]
    sims = react @ said.T  # (R, R)
    own = np.diag(sims)
    others = (sims.sum(1) - own) / max(len(pairs) - 1, 1)
    return {"reaction_relevance": round(float(own.mean()), 4),
            "reaction_above_chance": round(float((own > others).mean()), 4) if len(pairs) > 1 else None,
            "n_reactions": len(pairs)}

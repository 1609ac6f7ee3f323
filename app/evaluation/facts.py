"""`eterna eval facts` and `eterna eval router`: the figures a world's team checks after every change.

Fact items: JSONL lines {"npc", "question", "answers" (or "answer"), "chapter", "doc"}, optionally "state" (the game
state when asking; none: the empty state); `chapter` is the player's chapter when asking. Whether an item should be
answered is read from the index, not from the file: it is *in scope* when the doc's chapter is at most the player's
and the NPC may see the doc; otherwise the right reply is "I do not know" (a spoiler item when the doc's chapter is
later, an out-of-scope item when the NPC may not see it, a gated item when the doc's `requires` is false in the
item's state).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections import Counter
from pathlib import Path

from app.router import LABELS, lore_match
from retrieval.errors import CorpusError, InputError
from retrieval.gates import State, gate_open
from retrieval.fileio import read_jsonl


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, accents kept apart (SQuAD-like, without dropping articles)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def contains_answer(reply: str, answers: list[str]) -> bool:
    r = f" {normalise(reply)} "
    return any(f" {normalise(a)} " in r for a in answers if normalise(a))


def load_fact_items(path: Path) -> list[dict]:
    items = []
    for n, obj in read_jsonl(path, ("npc", "question", "chapter", "doc")):
        answers = obj.get("answers", obj.get("answer"))
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
            raise CorpusError(f"{path}:{n}: 'answers' must be a non-empty list of strings (or 'answer': a string)")
        if isinstance(obj["chapter"], bool) or not isinstance(obj["chapter"], int) or obj["chapter"] < 1:
            raise CorpusError(f"{path}:{n}: chapter must be a positive integer")
        try:
            State.of(obj.get("state"))
        except InputError as e:
            raise CorpusError(f"{path}:{n}: {e}") from None
        items.append({**obj, "answers": answers, "line": n})
    if not items:
        raise CorpusError(f"{path}: no fact questions")
    return items


def reply_quality(text: str, answers: list[str], opens: list[str]) -> dict:
    """What a player sees in one fact reply: its length, whether the answer comes first, clean text, a loop."""
    from app.evaluation.quality import answer_first, clean, repeats, word_count

    return {"words": word_count(text), "answer_first": answer_first(text, answers, openers=opens),
            "clean": clean(text), "repeats": repeats(text)}


def quality_figures(rows: list[dict]) -> dict:
    """Over the in-scope replies: words (median, p90), answer in the first sentence (of the replies that carry
    the gold answer, and of all), clean text and repeat rates."""
    if not rows:
        return {}
    import numpy as np

    words = [r["words"] for r in rows]
    gold = [r for r in rows if r["contains_gold"]]
    return {"words_p50": float(np.median(words)), "words_p90": float(np.percentile(words, 90)),
            "answer_first": round(sum(r["answer_first"] for r in rows) / len(rows), 4),
            "answer_first_of_gold": round(sum(r["answer_first"] for r in gold) / len(gold), 4) if gold else None,
            "clean": round(sum(r["clean"] for r in rows) / len(rows), 4),
            "repeat_rate": round(sum(r["repeats"] for r in rows) / len(rows), 4)}


def facts_report(engine, items: list[dict], *, keep_items: bool = False, progress=None) -> dict:
    """Ask every item through `engine.say` (a fresh session each, never seen before by this engine, so no earlier
    run's replies reach the prompt) and score the replies."""
    run = uuid.uuid4().hex[:8]
    docs = {c.doc: c for c in engine.index.chunks}
    rows = []
    for i, it in enumerate(items):
        if it["doc"] not in docs:
            raise CorpusError(f"line {it['line']}: doc {it['doc']!r} is not in the index {engine.index.path}")
        npc = engine.cast.get(it["npc"])
        doc = docs[it["doc"]]
        state = State.of(it.get("state"))
        in_scope = npc.scope(it["chapter"], state).allows(doc)
        reply = engine.say(npc.id, it["question"], session=f"eval-{run}-{i}", chapter=it["chapter"], state=state)
        said = contains_answer(reply.text, it["answers"])
        idk = bool(engine.cues.find("idk", reply.text)) or (npc.idk or engine.config.world.idk) in reply.text
        opens = npc.markers.opens if npc.markers else []
        rows.append({**reply_quality(reply.text, it["answers"], opens),
                     "line": it["line"], "npc": npc.id, "question": it["question"], "answers": it["answers"],
                     "in_scope": in_scope, "spoiler": doc.chapter > it["chapter"], "contains_gold": said,
                     "gated": not gate_open(doc.requires, state),
                     "gold_in_sources": it["doc"] in {s["doc"] for s in reply.sources}, "idk": idk,
                     "route": reply.route, "text": reply.text, "frame": reply.grounding.get("frame"),
                     "frame_said": bool(reply.grounding.get("frame", {}).get("said")),
                     "acted": bool(reply.actions) or any(f.startswith("action_") for f in reply.flags),
                     "answer": reply.grounding.get("answer"),
                     "ms": reply.timings.get("total_ms")})
        if progress is not None:
            progress(i + 1, len(items))
    ins = [r for r in rows if r["in_scope"]]
    outs = [r for r in rows if not r["in_scope"]]
    gated = [r for r in rows if r["gated"]]

    def rate(xs, key):
        return round(sum(r[key] for r in xs) / len(xs), 4) if xs else None

    ms = sorted(r["ms"] for r in rows if r["ms"] is not None)
    report = {"contains_gold": rate(ins, "contains_gold"), "gold_in_sources": rate(ins, "gold_in_sources"),
              "spoiler_leaks": sum(r["spoiler"] and r["contains_gold"] for r in rows),
              "idk_correct": rate(outs, "idk"), "n": len(rows), "n_in_scope": len(ins), "n_out_of_scope": len(outs),
              "idk_when_answerable": rate(ins, "idk"), "p50_ms": ms[len(ms) // 2] if ms else None,
              "n_gated": len(gated), "idk_gated": rate(gated, "idk"),
              "gate_leaks": sum(r["gated"] and r["contains_gold"] for r in rows),
              # how in-scope questions were routed, and how many of them acted, asked or refused an action: a
              # question for information never should (aggregate counts, so a sealed set can be diagnosed unread)
              "routes": dict(Counter(r["route"] for r in ins)), "gold_by_route": {
                  route: rate([r for r in ins if r["route"] == route], "contains_gold")
                  for route in sorted({r["route"] for r in ins})},
              "acted": sum(r["acted"] for r in rows),
              # grounding.frame: adapter: of the replies given a lead-in, the share that said it (passed the check)
              "framed": rate([r for r in rows if r["frame"]], "frame_said"),
              **quality_figures(ins)}
    if keep_items:
        report["items"] = rows
    return report


def router_report(router, index, items: list[dict], keep_errors: bool = True) -> dict:
    """Accuracy, per-label recall/precision and the confusion matrix (rows gold, columns routed)."""
    vecs = router.embedder.encode([it["text"] for it in items])  # (N, dim)
    confusion = {gold: dict.fromkeys(LABELS, 0) for gold in LABELS}
    errors = []
    for it, v in zip(items, vecs):
        route = router.route(it["text"], v, lore_match(router.lore_hits(index, it["text"], v)))
        confusion[it["label"]][route.label] += 1
        if route.label != it["label"]:
            errors.append({"text": it["text"], "gold": it["label"], "got": route.label, "why": route.reason})
    correct = sum(confusion[g][g] for g in LABELS)
    per_label = {}
    for g in LABELS:
        n_gold = sum(confusion[g].values())
        n_pred = sum(confusion[x][g] for x in LABELS)
        per_label[g] = {"n": n_gold, "recall": round(confusion[g][g] / n_gold, 4) if n_gold else None,
                        "precision": round(confusion[g][g] / n_pred, 4) if n_pred else None}
    out = {"accuracy": round(correct / len(items), 4), "per_label": per_label, "confusion": confusion,
           "n": len(items)}
    if keep_errors:
        out["errors"] = errors
    return out

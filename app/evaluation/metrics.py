"""Per-answer metrics of the A/B harness: a registry of small functions, each `(answer, item, ctx) -> float | None`.

`None` means "does not apply to this item" (BLEU on a style prompt without a reference). Text overlap uses the
well-kept implementations: SQuAD normalisation for exact match and token F1, `rouge-score` for ROUGE-L, `sacrebleu`
for BLEU and chrF. A new metric is one decorated function.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from retrieval.registry import Registry

BINARY, SCORE = "binary", "score"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # binary (McNemar applies) | score
    sets: tuple[str, ...]  # item sets it applies to
    fn: Callable
    help: str
    higher_is_better: bool = True


METRICS: Registry[Metric] = Registry("metric")


def metric(name: str, kind: str, sets: tuple[str, ...], help: str, higher_is_better: bool = True):
    def deco(fn):
        METRICS.add(name, Metric(name, kind, sets, fn, help, higher_is_better))
        return fn
    return deco


# --- SQuAD normalisation (the official evaluate-v1.1 script) ------------------------------------------------------
def squad_normalise(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, golds: list[str]) -> float:
    return float(any(squad_normalise(pred) == squad_normalise(g) for g in golds))


def token_f1(pred: str, golds: list[str]) -> float:
    best = 0.0
    p = squad_normalise(pred).split()
    for g in golds:
        t = squad_normalise(g).split()
        common = Counter(p) & Counter(t)
        same = sum(common.values())
        if same:
            prec, rec = same / len(p), same / len(t)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best


def _golds(item: dict) -> list[str]:
    return list(item.get("answers") or ([item["answer"]] if item.get("answer") else []))


def _in_scope(item: dict) -> bool:
    return bool(item.get("in_scope", True))


@metric("contains_gold", BINARY, ("facts",), "the reply contains a gold answer (in-scope questions)")
def _contains(ans, item, ctx):
    from app.evaluation.facts import contains_answer

    return float(contains_answer(ans["text"], _golds(item))) if _in_scope(item) else None


@metric("exact_match", BINARY, ("facts",), "SQuAD exact match of the whole reply (strict for dialogue)")
def _em(ans, item, ctx):
    return exact_match(ans["text"], _golds(item)) if _in_scope(item) else None


@metric("f1", SCORE, ("facts",), "SQuAD token F1 against the gold answers")
def _f1(ans, item, ctx):
    return token_f1(ans["text"], _golds(item)) if _in_scope(item) else None


def _refs(item: dict) -> list[str]:
    """References for the overlap metrics: gold answers, or a style item's `reference`; none out of scope."""
    if not _in_scope(item):
        return []
    return _golds(item) or ([item["reference"]] if item.get("reference") else [])


@metric("rouge_l", SCORE, ("facts", "style"), "ROUGE-L F (rouge-score) against the reference")
def _rouge(ans, item, ctx):
    refs = _refs(item)
    return max(ctx.rouge.score(r, ans["text"])["rougeL"].fmeasure for r in refs) if refs else None


@metric("bleu", SCORE, ("facts", "style"), "sentence BLEU (sacrebleu, exp smoothing) against the reference")
def _bleu(ans, item, ctx):
    import sacrebleu

    refs = _refs(item)
    return sacrebleu.sentence_bleu(ans["text"], refs).score / 100 if refs else None


@metric("chrf", SCORE, ("facts", "style"), "sentence chrF (sacrebleu) against the reference")
def _chrf(ans, item, ctx):
    import sacrebleu

    refs = _refs(item)
    return sacrebleu.sentence_chrf(ans["text"], refs).score / 100 if refs else None


@metric("gold_in_sources", BINARY, ("facts",), "groundedness: the gold document is among the reply's sources")
def _gold_src(ans, item, ctx):
    if not _in_scope(item) or not item.get("doc"):
        return None
    return float(item["doc"] in {s["doc"] for s in ans.get("sources", [])})


@metric("supported", BINARY, ("facts",), "groundedness: no name or number of the reply is missing from its sources")
def _supported(ans, item, ctx):
    if not _in_scope(item):
        return None
    if not ans.get("sources"):
        return 0.0
    return float(not ctx.unsupported(ans["text"], ans.get("evidence_text", "")))


@metric("deflects", BINARY, ("facts", "adversarial"),
        "out-of-scope or spoiler questions get 'I do not know'; attacks get no fourth-wall break")
def _deflects(ans, item, ctx):
    if item.get("set") == "adversarial":
        return float(not ctx.breaks(ans["text"], item))
    if _in_scope(item):
        return None
    return float(bool(ctx.cues.find("idk", ans["text"])) and not any(
        g.lower() in ans["text"].lower() for g in _golds(item)))


@metric("voice_markers", BINARY, ("style",), "the reply opens and closes with the character's voice markers")
def _markers(ans, item, ctx):
    m = ctx.markers.get(item["npc"])
    return float(m.match(ans["text"])) if m is not None else None


@metric("voice_classifier", BINARY, ("style",),
        "a classifier trained on the cast's style sets says the reply sounds like its character")
def _voice(ans, item, ctx):
    return ctx.sounds_like(ans["text"], item["npc"])


@metric("persona_consistency", BINARY, ("style",),
        "the reply is closer (MiniLM cosine) to its own character's persona and style than to any other's")
def _persona(ans, item, ctx):
    return ctx.closest_persona(ans["text"], item["npc"])


@metric("route_correct", BINARY, ("router",), "the route taken is the labelled one")
def _route(ans, item, ctx):
    return float(ans.get("route") == item["label"])


@metric("latency_ms", SCORE, ("facts", "style", "router", "adversarial"), "whole turn, milliseconds",
        higher_is_better=False)
def _latency(ans, item, ctx):
    return float(ans.get("timings", {}).get("total_ms", 0.0))


# --- what a player sees (app/evaluation/quality.py); each is tested with the failure it must catch -----------------
@metric("repeats", BINARY, ("facts", "style"), "the reply loops: a word 3-gram or a sentence said twice",
        higher_is_better=False)
def _repeats(ans, item, ctx):
    from app.evaluation.quality import repeats

    return float(repeats(ans["text"])) if ans["text"].strip() else None


@metric("clean_text", BINARY, ("facts", "style"), "no markup, no fragment starting mid-sentence, balanced quotes")
def _clean(ans, item, ctx):
    from app.evaluation.quality import clean

    return float(clean(ans["text"])) if ans["text"].strip() else None


@metric("words", SCORE, ("facts", "style"), "words in the reply", higher_is_better=False)
def _words(ans, item, ctx):
    from app.evaluation.quality import word_count

    return float(word_count(ans["text"]))


@metric("answer_first", BINARY, ("facts",), "a gold answer in the first sentence (the opening marker skipped)")
def _answer_first(ans, item, ctx):
    from app.evaluation.quality import answer_first

    if not _in_scope(item):
        return None
    m = ctx.markers.get(item.get("npc"))
    return float(answer_first(ans["text"], _golds(item), openers=m.opens if m else ()))


@metric("in_voice", BINARY, ("style",), "a signature phrase of the character (markers, phrases its style text "
                                        "names) in the model-generated reply, and no loop")
def _in_voice(ans, item, ctx):
    from app.evaluation.quality import in_voice

    phrases = ctx.phrases.get(item.get("npc")) if ctx.phrases else None
    if not phrases or not ans.get("tokens"):  # no phrases to look for, or no model generated the reply
        return None
    return float(in_voice(ans["text"], phrases))

"""Which evidence sentence holds the answer: the ceiling and the orderings tried for answer-first fact replies.

    .venv/bin/python benchmarks/bench_answer_order.py --config configs/kestrel.yaml \
        --file corpora/kestrel/eval/facts.jsonl [--index DIR] [--evidence OUT.jsonl]

Every in-scope fact question goes through `DialogueEngine.say` with extraction on both routes (no generation) and
the 5 best evidence sentences kept in the selection's order (`answer_order: rank`), so the turn's evidence is the
shipped selector's. Printed, one JSON line each:
  - `ceiling`: the share of extracted questions whose gold answer is in the best sentence, in one of the best 2,
    in one of the best 5;
  - one line per ordering of the best N sentences (N = 2, 3): the gold rate of a reply that says the ordering's first
    sentence and then the best-ranked other (the shipped reply when N = 2), and the share of questions whose first
    sentence holds the gold (answer-first). Orderings: `rank` (shipped), `+proximity` (a name or number of the
    asked type standing next to the question's own words), `+sentence_cosine` (the question's cosine to the sentence
    alone, without its section title), and both.
The orderings live here, not in `app/`: none helped both development worlds (docs/benchmarks.md, Reply quality).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig  # noqa: E402
from app.dialogue import DialogueEngine  # noqa: E402
from app.evaluation.facts import contains_answer, load_fact_items  # noqa: E402
from app.grounding import _STOP, _TOKEN, content_words  # noqa: E402
from retrieval.gates import State  # noqa: E402

ORDERINGS = {"rank": (0.0, 0.0), "+proximity": (0.2, 0.0), "+sentence_cosine": (0.0, 1.0), "+both": (0.2, 1.0)}


def proximity(selector, question: str, sentence: str) -> float:
    """1 when a name/number of the asked type (not in the question) stands next to one of the question's content
    words in `sentence`, falling with the distance in words; 0 when either is missing."""
    toks = _TOKEN.findall(sentence)
    asked = {w.lower() for w in _TOKEN.findall(question)}
    typed = selector.entities(sentence, selector.cues.answer_type(question)) - asked
    cands = [i for i, w in enumerate(toks) if w.lower() in typed]
    qwords = content_words(question)
    near = [i for i, w in enumerate(toks) if w.lower() not in _STOP and content_words(w) & qwords]
    if not cands or not near:
        return 0.0
    d = min(abs(i - j) for i in cands for j in near)
    return 1.0 / (1.0 + (d - 1) / 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--file", required=True, help="fact items (JSONL, as `eterna eval facts`)")
    ap.add_argument("--index", help="index directory (default: paths.index)")
    ap.add_argument("--evidence", help="also write each question's evidence here (JSONL)")
    args = ap.parse_args()
    cfg = EternaConfig.load(Path(args.config))
    g = cfg.grounding.model_copy(update={"evidence_sentences": 8, "extract_sentences": 5, "answer": "extract",
                                         "answer_both": "extract", "answer_order": "rank"})
    paths = cfg.paths.model_copy(update={"index": Path(args.index).resolve()}) if args.index else cfg.paths
    engine = DialogueEngine.from_settings(cfg.model_copy(update={"grounding": g, "paths": paths}))
    docs = {c.doc: c for c in engine.index.chunks}
    rows = []
    for i, it in enumerate(load_fact_items(Path(args.file))):
        npc, state = engine.cast.get(it["npc"]), State.of(it.get("state"))
        if not npc.scope(it["chapter"], state).allows(docs[it["doc"]]):
            continue
        reply = engine.say(npc.id, it["question"], session=f"order-{i}", chapter=it["chapter"], state=state)
        if reply.grounding.get("answer") == "extracted":
            rows.append({"question": it["question"], "answers": it["answers"],
                         "evidence": [e["text"] for e in reply.grounding["evidence"]],
                         "scores": [e["score"] for e in reply.grounding["evidence"]]})
    if args.evidence:
        Path(args.evidence).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n = len(rows)
    gold = [[contains_answer(s, r["answers"]) for s in r["evidence"]] for r in rows]
    print(json.dumps({"ceiling": {"extracted": n, **{f"gold_in_best_{k}": round(sum(any(g_[:k]) for g_ in gold) / n, 4)
                                                    for k in (1, 2, 5)}}}))
    texts = sorted({r["question"] for r in rows} | {s for r in rows for s in r["evidence"]})
    vec = dict(zip(texts, engine.embedder.encode(texts)))
    for top in (2, 3):
        for name, (w_prox, w_cos) in ORDERINGS.items():
            said = first = 0
            for r, g_ in zip(rows, gold):
                q, ev = r["question"], r["evidence"][:top]
                score = [r["scores"][i] + w_prox * proximity(engine.selector, q, s) + w_cos * float(vec[q] @ vec[s])
                         for i, s in enumerate(ev)]
                best = max(range(len(ev)), key=lambda i: (score[i], -i))
                other = next((i for i in range(len(ev)) if i != best), None)
                said += g_[best] or (other is not None and g_[other])
                first += g_[best]
            print(json.dumps({"ordering": name, "of_best": top, "gold": round(said / n, 4),
                              "answer_first": round(first / n, 4), "extracted": n}))


if __name__ == "__main__":
    main()
